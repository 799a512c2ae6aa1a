"""Scores by their definitions: the oracles the shipped score maths is tested against.

The sweep and ``scorers/score_cli.py`` compute every score one way (``scorers.metrics`` for IS
and class coverage, ``scorers.reference`` for FID, KID, MMD, 1-NN, precision, recall, density
and coverage against the cached real side). These are the same scores written the plain way
(as torch-fidelity keeps its references under ``tests/``), plus the ``prdc`` package itself.
"""
from __future__ import annotations

import numpy as np
from scipy import linalg

from scorers.arrays import feature_pair, row_blocks, sq_dists, sq_norms
from scorers.two_sample import median_pairwise_distance, offdiag_mean, poly_kernel_inplace

KID_GRAM_MAX_ELEMS = 1 << 27


def frechet_distance(feats_a, feats_b) -> float:
    """FID as pytorch-fid writes it: Gaussians fitted with ``np.cov``, ``scipy.linalg.sqrtm``
    of the covariance product (with its 1e-6 diagonal offset if that is not finite)."""
    a, b = feature_pair(feats_a, feats_b, "feats_a", "feats_b", min_rows=2)
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    s1, s2 = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def prdc(real, fake, k: int) -> dict:
    """Precision, recall, density and coverage from the ``prdc`` package (Naeem et al.)."""
    from prdc import compute_prdc

    return compute_prdc(real_features=np.asarray(real), fake_features=np.asarray(fake),
                        nearest_k=k)


def mmd2_unbiased(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    """Unbiased MMD^2 from full kernel matrices (diagonals of k_xx, k_yy excluded)."""
    return float(offdiag_mean(k_xx) + offdiag_mean(k_yy) - 2.0 * k_xy.mean())


def _poly_kernel(x: np.ndarray, y: np.ndarray, gamma: float, coef0: float, degree) -> np.ndarray:
    """(gamma x.y + coef0)^degree for all row pairs (x @ y.T is one BLAS call, syrk if y is x)."""
    return poly_kernel_inplace(x @ y.T, gamma, coef0, degree)


def kid_use_gram(n: int, m: int, size: int, subsets: int) -> bool:
    """Full kernel matrices are cheaper ((n+m)^2 vs 4 subsets size^2 multiply-adds) and fit."""
    fits = n * n + m * m + n * m <= KID_GRAM_MAX_ELEMS
    return fits and (n + m) ** 2 <= 4 * subsets * size * size


def kernel_inception_distance(feats_a, feats_b, subsets: int = 100, subset_size: int = 1000,
                              degree: int = 3, gamma: float | None = None, coef0: float = 1.0,
                              seed: int = 0) -> tuple[float, float]:
    """KID: unbiased MMD^2 with k(x, y) = (gamma x.y + coef0)^degree; returns (mean, std).

    Each of ``subsets`` rounds draws min(subset_size, N, M) rows without replacement
    from each set (``np.random.default_rng(seed)``); std is over rounds with ddof=0
    (torch-fidelity's ``np.std``). ``gamma`` defaults to 1/D.

    If a round takes all rows of both sets, all rounds agree: computed once (std 0). Else
    the kernel matrices over the full sets are computed once and indexed per round, unless
    per-round ones are cheaper or the full ones exceed ``KID_GRAM_MAX_ELEMS`` entries.
    """
    a, b = feature_pair(feats_a, feats_b, "feats_a", "feats_b", min_rows=2)
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"need subsets >= 1 and subset_size >= 2; got subsets={subsets}, "
                         f"subset_size={subset_size}")
    (n, d), m = a.shape, b.shape[0]
    size = min(int(subset_size), n, m)
    gamma = 1.0 / d if gamma is None else float(gamma)

    def kern(x, y):
        return _poly_kernel(x, y, gamma, coef0, degree)

    if size == n and size == m:
        return mmd2_unbiased(kern(a, a), kern(b, b), kern(a, b)), 0.0
    gram = kid_use_gram(n, m, size, int(subsets))
    if gram:
        k_aa, k_bb, k_ab = kern(a, a), kern(b, b), kern(a, b)
    rng = np.random.default_rng(seed)
    mmds = np.empty(int(subsets))
    for i in range(int(subsets)):
        ix = rng.choice(n, size, replace=False)
        iy = rng.choice(m, size, replace=False)
        if gram:  # sorted: same sums in another order, with cache-friendly gathers
            ix, iy = np.sort(ix), np.sort(iy)
            mmds[i] = mmd2_unbiased(k_aa[np.ix_(ix, ix)], k_bb[np.ix_(iy, iy)],
                                     k_ab[np.ix_(ix, iy)])
        else:
            x, y = a[ix], b[iy]
            mmds[i] = mmd2_unbiased(kern(x, x), kern(y, y), kern(x, y))
    return float(mmds.mean()), float(mmds.std(ddof=0))


def _gaussian_kernel_sum(x: np.ndarray, y: np.ndarray | None, sigma: float) -> float:
    """Sum of exp(-|x_i - y_j|^2 / (2 sigma^2)) over all pairs, in row blocks. With
    ``y=None``: over pairs i != j of x, from the upper triangle only (doubled)."""
    sym = y is None
    y = x if sym else y
    y_sq = sq_norms(y)
    total = 0.0
    for lo, hi in row_blocks(x.shape[0], y.shape[0]):
        c = lo if sym else 0
        k = np.exp(-sq_dists(x[lo:hi], y[c:], y_sq[c:]) / (2.0 * sigma * sigma))
        if sym:  # diagonal block: strict upper triangle only
            k[:, : hi - lo] = np.triu(k[:, : hi - lo], 1)
        total += (2.0 if sym else 1.0) * k.sum()
    return total


def kernel_mmd(feats_a, feats_b, sigma: float | None = None) -> float:
    """Unbiased squared MMD with Gaussian kernel k(x, y) = exp(-|x - y|^2 / (2 sigma^2)).

    ``sigma`` defaults to the median heuristic: the median Euclidean distance over
    distinct pairs of the pooled set (above 4000 pooled points, over a fixed-seed
    random subset of 4000, which keeps memory bounded). Kernel sums are computed
    in row blocks, so a few thousand points per set fit comfortably.
    """
    a, b = feature_pair(feats_a, feats_b, "feats_a", "feats_b", min_rows=2)
    if sigma is None:
        sigma = median_pairwise_distance(np.concatenate([a, b]))
        if sigma <= 0:
            raise ValueError("kernel_mmd: median pairwise distance is 0 (mostly duplicate points); "
                             "pass sigma > 0 explicitly")
    elif not np.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a positive finite number; got {sigma!r}")
    n, m = a.shape[0], b.shape[0]
    xx = _gaussian_kernel_sum(a, None, sigma) / (n * (n - 1))
    yy = _gaussian_kernel_sum(b, None, sigma) / (m * (m - 1))
    xy = _gaussian_kernel_sum(a, b, sigma) / (n * m)
    return float(xx + yy - 2.0 * xy)


def nn1_accuracy(real_feats, fake_feats) -> dict:
    """Leave-one-out 1-NN two-sample test; returns accuracy, real_accuracy, fake_accuracy.

    Real and fake points are pooled; each point is labelled with the label of its
    nearest OTHER point (Euclidean). Ties go to the lowest pooled index (real
    rows come first). 0.5 is ideal; 1.0 means the sets are fully separable.
    """
    r, f = feature_pair(real_feats, fake_feats, "real_feats", "fake_feats", min_rows=2)
    z = np.concatenate([r, f])
    is_real = np.zeros(z.shape[0], dtype=bool)
    is_real[: r.shape[0]] = True
    n = z.shape[0]
    z_sq = sq_norms(z)
    best, nearest = np.full(n, np.inf), np.zeros(n, dtype=np.intp)

    def offer(at, dist, idx):  # strict <: on ties the lower index, offered earlier, stays
        upd = dist < best[at]
        best[at][upd], nearest[at][upd] = dist[upd], idx[upd]

    for lo, hi in row_blocks(n, n):  # pairs (row block, columns >= lo), offered both ways
        d = sq_dists(z[lo:hi], z[lo:], z_sq[lo:])
        rows = np.arange(hi - lo)
        d[rows, rows] = np.inf
        j = np.argmin(d, axis=1)
        offer(slice(lo, hi), d[rows, j], j + lo)
        if hi < n:
            i = np.argmin(d[:, hi - lo:], axis=0)
            offer(slice(hi, n), d[i, np.arange(hi - lo, n - lo)], i + lo)
    correct = is_real[nearest] == is_real
    return {
        "accuracy": float(correct.mean()),
        "real_accuracy": float(correct[is_real].mean()),
        "fake_accuracy": float(correct[~is_real].mean()),
    }
