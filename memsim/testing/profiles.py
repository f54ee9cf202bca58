"""The hypothesis profile for slow scorers, registered (never loaded) by name.

``memsim-slow``: no deadline (a scorer that takes seconds on a small log is not a bug
here), no ``too_slow`` health check, and no explain phase (it replays the failing example
under a line tracer, which costs minutes on pandas code); the example budget stays
hypothesis' default, the budget that memsim's own bug-finding tests use. Select it with
``pytest --hypothesis-profile=memsim-slow`` or ``settings.load_profile("memsim-slow")``.
This module imports hypothesis only when called.
"""

from __future__ import annotations

__all__ = ["SLOW_PROFILE", "register_profiles"]

SLOW_PROFILE = "memsim-slow"


def register_profiles() -> None:
    """Register ``memsim-slow`` with hypothesis (idempotent; the current profile is unchanged)."""
    from hypothesis import HealthCheck, Phase, settings

    settings.register_profile(
        SLOW_PROFILE,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
        phases=[p for p in Phase if p is not Phase.explain],
        print_blob=True,
    )
