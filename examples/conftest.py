"""The lab's tests run under memsim's profile for slow scorers (no deadline)."""

from hypothesis import settings

from memsim.testing import SLOW_PROFILE  # first use registers the profile

settings.load_profile(SLOW_PROFILE)
