"""Ridge regression baseline with its penalty chosen inside the training rows.

In: a training design ``X`` (n, p) and targets ``Y`` (n, k). Out: a
:class:`Ridge` whose penalty, per target, minimises generalised
cross-validation (GCV) over a fixed grid, computed from the spectrum of the
centred training design (an eigendecomposition of its Gram matrix). GCV uses
the training rows only, so scoring the fitted model on held-out rows stays
honest (nested by construction). Plain numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Ridge", "ALPHAS"]

ALPHAS = np.logspace(-3, 4, 29)  # fixed in advance; features are block-scaled to unit variance


def _one_blas_thread():
    """Limit BLAS to one thread when threadpoolctl is installed.

    Results then do not depend on the thread count, and on a shared 2-core
    machine a threaded SVD of the design was 100 times slower than one thread.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it BLAS keeps its default
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


@dataclass
class Ridge:
    """Fitted ridge: ``predict(X) = (X - x_mean) @ coef + y_mean``."""

    x_mean: np.ndarray  # (p,)
    y_mean: np.ndarray  # (k,)
    coef: np.ndarray  # (p, k)
    alpha: np.ndarray  # (k,) chosen penalties

    @classmethod
    def fit(cls, X: np.ndarray, Y: np.ndarray, alphas: np.ndarray = ALPHAS) -> Ridge:
        with _one_blas_thread():
            return cls._fit(X, Y, alphas)

    @classmethod
    def _fit(cls, X: np.ndarray, Y: np.ndarray, alphas: np.ndarray) -> Ridge:
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y, dtype=np.float64).reshape(len(X), -1)
        xm, ym = X.mean(0), Y.mean(0)
        Xc, Yc = X - xm, Y - ym
        # eigen-decompose the smaller Gram matrix: one GEMM + eigh, far cheaper than an SVD
        if Xc.shape[1] <= Xc.shape[0]:
            lam, V = np.linalg.eigh(Xc.T @ Xc)
            keep = lam > lam.max() * 1e-12
            lam, V = lam[keep], V[:, keep]
            s = np.sqrt(lam)
            Vt = V.T
            UtY = (Vt @ (Xc.T @ Yc)) / s[:, None]
        else:
            lam, U = np.linalg.eigh(Xc @ Xc.T)
            keep = lam > lam.max() * 1e-12
            lam, U = lam[keep], U[:, keep]
            s = np.sqrt(lam)
            Vt = (U.T @ Xc) / s[:, None]
            UtY = U.T @ Yc
        n = len(X)
        resid_perp = (Yc**2).sum(0) - (UtY**2).sum(0)  # part of Y outside the span of X
        best = np.zeros(Y.shape[1])
        best_gcv = np.full(Y.shape[1], np.inf)
        for a in alphas:
            shrink = s**2 / (s**2 + a)  # (r,)
            rss = (((1 - shrink)[:, None] * UtY) ** 2).sum(0) + resid_perp
            dof = shrink.sum()
            gcv = rss / n / (1 - dof / n) ** 2
            better = gcv < best_gcv
            best[better], best_gcv[better] = a, gcv[better]
        coef = np.empty((X.shape[1], Y.shape[1]))
        for k, a in enumerate(best):
            coef[:, k] = Vt.T @ ((s / (s**2 + a)) * UtY[:, k])
        return cls(xm, ym, coef, best)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, dtype=np.float64) - self.x_mean) @ self.coef + self.y_mean

    def state(self) -> dict:
        return {k: getattr(self, k).tolist() for k in ("x_mean", "y_mean", "coef", "alpha")}

    @classmethod
    def from_state(cls, s: dict) -> Ridge:
        return cls(
            *(np.asarray(s[k], dtype=np.float64) for k in ("x_mean", "y_mean", "coef", "alpha"))
        )
