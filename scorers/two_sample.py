"""Kernel helpers of the two-sample scores (numpy only): ``scorers.reference`` computes KID,
MMD and 1-NN with them; the definitions they are tested against are in ``tests/oracles.py``.

Plain arrays, float64 (``scorers.arrays``).
"""
from __future__ import annotations

import numpy as np

from scorers.arrays import row_blocks, sq_dists

_MEDIAN_MAX_POINTS = 4000  # ~8M pairs; beyond this the median is estimated on a subsample


def offdiag_mean(k: np.ndarray) -> float:
    """Mean of a square kernel matrix over its off-diagonal entries (pairs i != j)."""
    n = k.shape[0]
    return (k.sum() - np.trace(k)) / (n * (n - 1))


def poly_kernel_inplace(k: np.ndarray, gamma: float, coef0: float, degree) -> np.ndarray:
    """(gamma k + coef0)^degree of inner products ``k``, in place in row blocks; small
    integer powers by repeated multiplication (several times faster than ``pow``)."""
    small_int = float(degree).is_integer() and 1 <= degree <= 8
    for lo, hi in row_blocks(k.shape[0], k.shape[1]):
        blk = k[lo:hi]
        blk *= gamma
        blk += coef0
        if small_int:
            base = blk.copy()
            for _ in range(int(degree) - 1):
                blk *= base
        else:
            blk **= degree
    return k


def median_pairwise_distance(z: np.ndarray, seed: int = 0) -> float:
    """Median Euclidean distance over distinct pairs of rows (of a fixed-seed subset of
    ``_MEDIAN_MAX_POINTS`` rows when there are more): the Gaussian kernel's usual bandwidth."""
    if z.shape[0] > _MEDIAN_MAX_POINTS:
        z = z[np.random.default_rng(seed).choice(z.shape[0], _MEDIAN_MAX_POINTS, replace=False)]
    iu = np.triu_indices(z.shape[0], k=1)
    return float(np.median(np.sqrt(sq_dists(z, z)[iu])))
