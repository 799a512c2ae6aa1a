"""FID against a fixed real reference set, with the real side computed once.

Every trial of a sweep is scored against the same real reference images, so their Gaussian
fit and a factor of its covariance never change. :func:`reference_stats` computes them once
(a scorer actor keeps them for its lifetime); :func:`frechet_distance_to_reference` then does
only the sample side's work. The value equals ``metrics.frechet_distance(real, fake)``
(tested to round-off), which stays the definition.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy import linalg

from scorers import metrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReferenceStats:
    """The real side of FID: features, mean, centred rows / sqrt(n-1), and a factor F of the
    covariance (S = F F^T) when it has full rank (None otherwise, or when n <= D)."""

    feats: np.ndarray
    mu: np.ndarray
    centred: np.ndarray
    trace: float
    factor: np.ndarray | None


def reference_stats(real_feats) -> ReferenceStats:
    """Precompute the real side of FID for :func:`frechet_distance_to_reference`."""
    x = metrics._as_matrix(real_feats, "real_feats", min_rows=2)
    mu = x.mean(axis=0)
    centred = (x - mu) / np.sqrt(x.shape[0] - 1)
    factor = None
    if x.shape[0] > x.shape[1]:
        cov = centred.T @ centred
        try:
            factor = linalg.cholesky(cov, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            factor = None
        # A pivot at round-off level means a singular covariance (e.g. a constant or repeated
        # feature): leave it to the general path, which handles rank deficiency explicitly.
        if factor is not None and (np.diagonal(factor) ** 2).min() <= (
                x.shape[1] * np.finfo(float).eps * np.diagonal(cov).max()):
            factor = None
    return ReferenceStats(feats=x, mu=mu, centred=centred,
                          trace=float(np.einsum("ij,ij->", centred, centred)), factor=factor)


def frechet_distance_to_reference(ref: ReferenceStats, fake_feats) -> float:
    """``metrics.frechet_distance(ref.feats, fake_feats)``, reusing the real side.

    With fewer rows than dimensions on either side, tr sqrt(S_a S_b) is the sum of the
    singular values of A B^T (as in ``frechet_distance``). Otherwise, with S_a = F F^T, it is
    the sum of sqrt(eigvalsh(G^T G)) for G = B F (B^T B = S_b; G^T G = F^T S_b F is similar to
    S_a S_b). Anything unusual (singular or non-finite) goes the general way."""
    b = metrics._as_matrix(fake_feats, "fake_feats", min_rows=2)
    if b.shape[1] != ref.feats.shape[1]:
        raise ValueError(f"fake_feats have {b.shape[1]} features but the reference has "
                         f"{ref.feats.shape[1]}; expected features of the same scorer")
    mu = b.mean(axis=0)
    bc = (b - mu) / np.sqrt(b.shape[0] - 1)
    diff = ref.mu - mu
    base = float(diff @ diff + ref.trace + np.einsum("ij,ij->", bc, bc))
    d = b.shape[1]
    t = np.nan
    if min(ref.feats.shape[0], b.shape[0]) < d:
        try:
            t = np.linalg.svd(ref.centred @ bc.T, compute_uv=False).sum()
        except np.linalg.LinAlgError:
            pass
    elif ref.factor is not None:
        g = bc @ ref.factor
        ev = np.linalg.eigvalsh(g.T @ g)
        if ev.min(initial=0.0) >= -metrics._FID_NEG_TOL * max(1.0, ev.max(initial=0.0)):
            t = np.sqrt(np.clip(ev, 0.0, None)).sum()
    if not np.isfinite(t):
        return metrics.frechet_distance(ref.feats, b)
    return base - 2.0 * float(t)
