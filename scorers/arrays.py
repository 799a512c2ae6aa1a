"""Input checks and blocked distance helpers shared by the score maths.

Every score function takes plain arrays, computes in float64 and raises ``ValueError``
naming the expected shape or values; these helpers hold those checks in one place.
Distance and kernel matrices are built in row blocks of about ``BLOCK_ELEMS`` entries, so
a few thousand points per set fit in memory.
"""
from __future__ import annotations

import numpy as np

ROW_SUM_TOL = 1e-3
BLOCK_ELEMS = 1 << 22  # ~32 MiB of float64 per distance block


def as_matrix(x, name: str, min_rows: int = 1) -> np.ndarray:
    """Validate a 2-D finite array with at least ``min_rows`` rows; return float64."""
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (N, D); got ndim={arr.ndim} "
                         f"with shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape}); expected (N, D) with N, D >= 1")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must be numeric; got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf values; all entries must be finite")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name} has too few samples: {arr.shape[0]} rows, need at least {min_rows}")
    return arr


def feature_pair(a, b, name_a: str, name_b: str, min_rows: int = 2):
    """Two validated feature sets (N, D) and (M, D) with the same D."""
    a = as_matrix(a, name_a, min_rows)
    b = as_matrix(b, name_b, min_rows)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {name_a} has D={a.shape[1]}, "
                         f"{name_b} has D={b.shape[1]}; both must be (N, D) with the same D")
    return a, b


def check_probs(probs, name: str = "probs") -> np.ndarray:
    """Validated class probabilities (N, C): non-negative rows summing to 1."""
    p = as_matrix(probs, name)
    if (p < 0).any():
        raise ValueError(f"{name} must be non-negative probabilities; min value is {p.min():.3g}")
    sums = p.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1.0)))
    if abs(sums[worst] - 1.0) > ROW_SUM_TOL:
        raise ValueError(f"{name} rows must sum to 1 (within {ROW_SUM_TOL}); row {worst} sums to "
                         f"{sums[worst]:.6g} (pass softmax probabilities, not logits)")
    return p


def row_blocks(n_rows: int, n_cols: int):
    """(start, stop) row ranges of about ``BLOCK_ELEMS`` entries of an n_rows x n_cols matrix."""
    step = max(1, BLOCK_ELEMS // max(1, n_cols))
    for start in range(0, n_rows, step):
        yield start, min(n_rows, start + step)


def sq_norms(x: np.ndarray) -> np.ndarray:
    """Squared Euclidean norm of each row."""
    return np.einsum("ij,ij->i", x, x)


def sq_dists_from_gram(gram: np.ndarray, x_sq: np.ndarray, y_sq: np.ndarray) -> np.ndarray:
    """Squared distances |x|^2 + |y|^2 - 2 x.y from inner products, clipped at 0 against
    round-off (so identical points are exactly 0 apart)."""
    return np.maximum(x_sq[:, None] + y_sq[None, :] - 2.0 * gram, 0.0)


def sq_dists(x: np.ndarray, y: np.ndarray, y_sq: np.ndarray | None = None) -> np.ndarray:
    """Squared Euclidean distances via the BLAS expansion (see :func:`sq_dists_from_gram`)."""
    return sq_dists_from_gram(x @ y.T, sq_norms(x), sq_norms(y) if y_sq is None else y_sq)
