"""Scores against a fixed real reference set, with the real side computed once.

Every trial of a sweep is scored against the same real reference images, so everything
that depends on them alone never changes: the Gaussian fit of FID and a factor of its
covariance, KID's real-real kernel terms for its random subsets, MMD's bandwidth and
real-real kernel mean, and each real point's nearest real neighbour for 1-NN.
:func:`reference_stats` computes them once (a scorer actor keeps them for its lifetime);
:func:`frechet_distance_to_reference` and :func:`two_sample_to_reference` then do only the
sample side's work, and the latter builds the real-sample and sample-sample inner products
once for KID, MMD and 1-NN together instead of once per metric.

The scores, what they mean, which way is better (their definitions, which these values equal
to round-off, are the oracles in ``tests/oracles.py``):

* FID (lower is better, 0 = same Gaussian; Heusel et al. 2017, pytorch-fid's conventions).
* KID (lower, ~0 = same distribution, can be slightly negative as it is unbiased): unbiased
  MMD^2 with the cubic polynomial kernel over 100 random subsets of 1,000 (Binkowski et al.
  2018; torch-fidelity's conventions).
* MMD (lower, ~0 = same): unbiased MMD^2 with a Gaussian kernel (Gretton et al. 2012; Xu et
  al. 2018). Its bandwidth is the median pairwise distance of the *reference* set, not of
  the pooled sets, so every trial of a sweep is measured with the same kernel.
* 1-NN (0.5 is ideal; 1.0 = separable): leave-one-out 1-nearest-neighbour two-sample
  accuracy (Lopez-Paz & Oquab 2017); well below 0.5 on the fake side hints at copies.
* precision / recall (higher is better; Kynkaanniemi et al. 2019, k = 3): the share of
  samples inside some real point's k-NN ball, and of real points inside some sample's.
* density / coverage (Naeem et al. 2020, k = 5): how many real k-NN balls hold a sample on
  average, over k (about 1 for a faithful generator, unbounded); the share of real points
  whose ball holds a sample. ``knn_coverage``: "coverage" alone names class coverage.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

from scorers import bootstrap, two_sample
from scorers.arrays import as_matrix, row_blocks, sq_dists_from_gram, sq_norms

KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
KID_SEED = 0
KID_DEGREE, KID_COEF0 = 3, 1.0  # gamma = 1 / D, as torch-fidelity
MAX_GRAM_ELEMS = 1 << 27  # ~1 GiB of float64 inner products: n = m = 8,192
# Precision and recall with k = 3 (Kynkaanniemi et al. 2019), density and coverage with k = 5
# (Naeem et al. 2020): each set's k-NN radii, as the prdc package computes them.
PR_K, DC_K = 3, 5
KS = (PR_K, DC_K)


def kid_subsets(n: int) -> int:
    """KID rounds for n samples: with n <= subset size every round draws all n rows of both
    sets, i.e. the same pairs in another order, so one round gives the value of 100."""
    return 1 if n <= KID_SUBSET_SIZE else KID_SUBSETS


@dataclass(frozen=True)
class ReferenceStats:
    """The real side of every score against the reference features ``feats`` (n, D).

    FID: mean, centred rows / sqrt(n-1), trace and a factor F of the covariance (S = F F^T)
    when it has full rank (None otherwise, or when n <= D). MMD: bandwidth and the mean
    real-real kernel value. 1-NN: squared distance from each real point to its nearest other
    real point. KID, for samples of the same size n: each round's sorted real and sample
    row indices (``kid_ix``/``kid_iy``, None when a round takes all rows) and real-real term.
    """

    feats: np.ndarray
    mu: np.ndarray
    centred: np.ndarray
    trace: float
    factor: np.ndarray | None
    sq_norms: np.ndarray
    mmd_sigma: float
    mmd_xx: float
    nn_sq_dist: np.ndarray
    knn_sq_radius: dict  # k -> squared distance of each real point to its k-th other point
    kid_ix: np.ndarray | None
    kid_iy: np.ndarray | None
    kid_xx: np.ndarray

    def sample_feats(self, fake_feats) -> np.ndarray:
        """``fake_feats`` checked against the reference: a 2-D finite array, same width."""
        b = as_matrix(fake_feats, "fake_feats", min_rows=2)
        if b.shape[1] != self.feats.shape[1]:
            raise ValueError(f"fake_feats have {b.shape[1]} features but the reference has "
                             f"{self.feats.shape[1]}; expected features of the same scorer")
        return b


def _covariance_factor(centred: np.ndarray) -> np.ndarray | None:
    if centred.shape[0] <= centred.shape[1]:
        return None
    cov = centred.T @ centred
    try:
        factor = linalg.cholesky(cov, lower=True, check_finite=False)
    except np.linalg.LinAlgError:
        return None
    # A pivot at round-off level means a singular covariance (e.g. a constant or repeated
    # feature): leave it to the general path, which handles rank deficiency explicitly.
    if (np.diagonal(factor) ** 2).min() <= (
            centred.shape[1] * np.finfo(float).eps * np.diagonal(cov).max()):
        return None
    return factor


def _within_set_pass(gram: np.ndarray, sq: np.ndarray, sigma: float, dim: int):
    """One pass over the inner products ``gram`` (n x n) of a set with itself (row norms
    ``sq``, features of dimension ``dim``): each point's squared distance to its nearest
    other point and to its k-th nearest for k in ``KS``, and the sum of the Gaussian kernel
    at ``sigma`` over pairs i != j. Turns ``gram`` into KID's polynomial kernel matrix in
    place, block by block, once its distances are read."""
    n = gram.shape[0]
    if n <= max(KS):
        raise ValueError(f"{n} feature rows: precision, recall, density and coverage need "
                         f"more than {max(KS)} per set")
    nearest, kernel_sum = np.empty(n), 0.0
    radius = {k: np.empty(n) for k in KS}
    for lo, hi in row_blocks(n, n):
        dist = sq_dists_from_gram(gram[lo:hi], sq[lo:hi], sq)
        dist[np.arange(hi - lo), np.arange(lo, hi)] = np.inf  # pairs i != j only
        smallest = np.sort(np.partition(dist, max(KS) - 1, axis=1)[:, :max(KS)], axis=1)
        nearest[lo:hi] = smallest[:, 0]
        for k in KS:
            radius[k][lo:hi] = smallest[:, k - 1]
        kernel_sum += np.exp(-dist / (2.0 * sigma * sigma)).sum()
        two_sample.poly_kernel_inplace(gram[lo:hi], 1.0 / dim, KID_COEF0, KID_DEGREE)
    return nearest, kernel_sum, radius


def _kid_rounds(n: int, gram: np.ndarray):
    """The rounds ``kernel_inception_distance(real, sample)`` draws for n samples (same
    generator calls), with the real-real term of each from the real kernel matrix."""
    subsets, size = kid_subsets(n), min(KID_SUBSET_SIZE, n)
    if size == n:
        return None, None, np.array([two_sample.offdiag_mean(gram)])
    rng = np.random.default_rng(KID_SEED)
    ix, iy = np.empty((subsets, size), np.intp), np.empty((subsets, size), np.intp)
    for i in range(subsets):
        ix[i] = np.sort(rng.choice(n, size, replace=False))
        iy[i] = np.sort(rng.choice(n, size, replace=False))
    xx = np.array([two_sample.offdiag_mean(gram[np.ix_(r, r)]) for r in ix])
    return ix, iy, xx


def reference_stats(real_feats) -> ReferenceStats:
    """Precompute the real side of FID, KID, MMD and 1-NN against ``real_feats`` (n >= 2, D)."""
    x = as_matrix(real_feats, "real_feats", min_rows=2)
    n, d = x.shape
    mu = x.mean(axis=0)
    centred = (x - mu) / np.sqrt(n - 1)
    sigma = two_sample.median_pairwise_distance(x)
    if sigma <= 0:
        raise ValueError("reference features: median pairwise distance is 0 (mostly duplicate "
                         "points); the reference set must hold distinct images")
    x_sq = sq_norms(x)
    gram = x @ x.T  # one syrk; becomes KID's kernel matrix in _within_set_pass
    nn, xx_sum, radius = _within_set_pass(gram, x_sq, sigma, d)
    kid_ix, kid_iy, kid_xx = _kid_rounds(n, gram)
    return ReferenceStats(feats=x, mu=mu, centred=centred,
                          trace=float(np.einsum("ij,ij->", centred, centred)),
                          factor=_covariance_factor(centred), sq_norms=x_sq, mmd_sigma=sigma,
                          mmd_xx=xx_sum / (n * (n - 1)), nn_sq_dist=nn,
                          knn_sq_radius=radius, kid_ix=kid_ix,
                          kid_iy=kid_iy, kid_xx=kid_xx)


def two_sample_to_reference(ref: ReferenceStats, fake_feats,
                            resamples: np.ndarray | None = None) -> dict[str, float]:
    """KID, MMD, 1-NN, precision, recall, density and coverage of ``fake_feats`` (n, D)
    against the reference of n points, reusing its side.

    Returns ``kid_mean``, ``kid_std`` (``kid_subsets(n)`` rounds of ``KID_SUBSET_SIZE``, seed
    ``KID_SEED``), ``mmd`` (at ``ref.mmd_sigma``), ``nn1_acc``/``nn1_real``/``nn1_fake``,
    ``precision``, ``recall``, ``density`` and ``knn_coverage``. Both inner-product matrices
    (n x n) are held at once: 400 MB at n = 5000, the most a score takes (``check_ns``).
    With ``resamples`` (``scorers.bootstrap.resample_counts``), also the 95% bootstrap
    interval over the samples of KID and coverage (``kid_lo``, ``kid_hi``,
    ``knn_coverage_lo``, ``knn_coverage_hi``), from the matrices computed here.
    """
    b = ref.sample_feats(fake_feats)
    a = ref.feats
    (n, d), m = a.shape, b.shape[0]
    if m != n:
        raise ValueError(f"{m} sample features against a reference of {n}: the scores against "
                         f"the reference compare sets of the same size")
    if n * m + m * m > MAX_GRAM_ELEMS:
        raise ValueError(f"n = {n} is more than the scores against a reference take; at most "
                         f"{int((MAX_GRAM_ELEMS / 2) ** 0.5)} samples")
    b_sq = sq_norms(b)
    two_sigma2 = 2.0 * ref.mmd_sigma * ref.mmd_sigma
    g_ab, g_bb = a @ b.T, b @ b.T  # the only O(n m D) work; turned into KID kernels in place
    fake_to_fake, yy_sum, fake_radius = _within_set_pass(g_bb, b_sq, ref.mmd_sigma, d)
    xy_sum = 0.0
    real_to_fake, fake_to_real = np.empty(n), np.full(m, np.inf)
    in_real_ball = np.zeros(m, bool)    # precision: a real k-NN ball holds the sample
    real_in_fake_ball = np.empty(n, bool)  # recall: a sample's k-NN ball holds the real point
    density_count = np.zeros(m)         # density: how many real k-NN balls hold the sample
    boot_covered = None if resamples is None else np.empty((n, len(resamples)), bool)
    for lo, hi in row_blocks(n, m):
        dist = sq_dists_from_gram(g_ab[lo:hi], ref.sq_norms[lo:hi], b_sq)
        real_to_fake[lo:hi] = dist.min(axis=1)
        np.minimum(fake_to_real, dist.min(axis=0), out=fake_to_real)
        # strict "<", as prdc: a point exactly on a ball's edge is outside
        in_real_ball |= (dist < ref.knn_sq_radius[PR_K][lo:hi, None]).any(axis=0)
        real_in_fake_ball[lo:hi] = (dist < fake_radius[PR_K][None, :]).any(axis=1)
        in_ball = dist < ref.knn_sq_radius[DC_K][lo:hi, None]
        density_count += in_ball.sum(axis=0)
        if boot_covered is not None:
            boot_covered[lo:hi] = bootstrap.coverage_hits(in_ball, resamples)
        xy_sum += np.exp(-dist / two_sigma2).sum()
        two_sample.poly_kernel_inplace(g_ab[lo:hi], 1.0 / d, KID_COEF0, KID_DEGREE)
    # 1-NN ties go to the lower pooled index, and real rows come first: a tie is "real"
    real_ok = ref.nn_sq_dist <= real_to_fake
    fake_ok = fake_to_fake < fake_to_real
    out = {"mmd": float(ref.mmd_xx + yy_sum / (m * (m - 1)) - 2.0 * xy_sum / (n * m)),
           "nn1_acc": float((real_ok.sum() + fake_ok.sum()) / (n + m)),
           "nn1_real": float(real_ok.mean()), "nn1_fake": float(fake_ok.mean()),
           "precision": float(in_real_ball.mean()), "recall": float(real_in_fake_ball.mean()),
           "density": float(density_count.sum() / (DC_K * m)),
           "knn_coverage": float((real_to_fake < ref.knn_sq_radius[DC_K]).mean())}
    if ref.kid_ix is None:
        out["kid_mean"] = float(ref.kid_xx[0] + two_sample.offdiag_mean(g_bb) - 2.0 * g_ab.mean())
        out["kid_std"] = 0.0
    else:
        mmds = ref.kid_xx + _kid_sample_terms(ref.kid_ix, ref.kid_iy, g_ab, g_bb)
        out["kid_mean"], out["kid_std"] = float(mmds.mean()), float(mmds.std(ddof=0))
    if resamples is not None:
        out["knn_coverage_lo"], out["knn_coverage_hi"] = bootstrap.interval(
            out["knn_coverage"], boot_covered.mean(axis=0))
        out["kid_lo"], out["kid_hi"] = bootstrap.interval(
            out["kid_mean"], bootstrap.kid_replicate_shifts(g_bb, g_ab.sum(axis=0), n,
                                                             resamples))
    return out


def _kid_sample_terms(ix: np.ndarray, iy: np.ndarray, k_ab: np.ndarray,
                      k_bb: np.ndarray) -> np.ndarray:
    """Per round r: offdiag_mean(k_bb[iy_r, iy_r]) - 2 mean(k_ab[ix_r, iy_r]).

    A block sum over rows I and columns J is u_I^T K u_J with indicator vectors u, so all
    rounds' sums come from two matrix products (rounds x n times n x m) instead of gathering
    every round's size x size blocks: 0.16-0.18 s instead of 0.92 s for 100 rounds of 1000
    at n = m = 5000 on the 2-core dev VM (2026-11-24).
    """
    rounds, size = iy.shape
    rows = np.arange(rounds)[:, None]
    ind_x, ind_y = np.zeros((rounds, k_ab.shape[0])), np.zeros((rounds, k_bb.shape[0]))
    ind_x[rows, ix] = 1.0
    ind_y[rows, iy] = 1.0
    ab = np.einsum("rj,rj->r", ind_x @ k_ab, ind_y)
    bb = np.einsum("rj,rj->r", ind_y @ k_bb, ind_y) - np.diagonal(k_bb)[iy].sum(axis=1)
    return bb / (size * (size - 1)) - 2.0 * ab / (size * size)
