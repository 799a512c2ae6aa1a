"""Sample-quality scores over numpy arrays (no deep-learning framework needed).

Every function takes plain arrays (classifier probabilities or feature vectors
from the fine-tuned scorer networks), computes in float64 and raises
``ValueError`` naming the expected shape/values on bad input.

Scores, what they mean and which way is better:

* ``inception_score`` (IS, higher is better; 1 <= IS <= number of classes):
  exp(E_x KL(p(y|x) || p(y))). High when each sample is classified confidently
  (low-entropy p(y|x)) and the samples spread over all classes (high-entropy
  p(y)). Salimans et al. 2016, "Improved Techniques for Training GANs";
  split/std conventions follow the original TF code and torch-fidelity.
  With the ViT scorer's probabilities the same formula is our "Transformer Score".
* ``frechet_distance`` (FID, lower is better, 0 = same Gaussian):
  ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2}) between Gaussians fitted
  to two feature sets. Heusel et al. 2017; pytorch-fid's conventions, but tr (S_a S_b)^{1/2}
  comes from symmetric eigenvalues (or singular values when N < D), not ``sqrtm``. For a
  fixed reference set, cache ``gaussian_stats`` and use ``frechet_distance_from_stats``.
* ``kernel_inception_distance`` (KID, lower is better, ~0 = same distribution,
  can be slightly negative because it is unbiased): unbiased MMD^2 with the
  cubic polynomial kernel, averaged over random subsets. Binkowski et al. 2018,
  "Demystifying MMD GANs"; conventions as in torch-fidelity.
* ``kernel_mmd`` (lower is better, ~0 = same distribution): unbiased MMD^2 with
  a Gaussian kernel. Gretton et al. 2012, "A Kernel Two-Sample Test"; used as a
  GAN metric by Xu et al. 2018, "An empirical study on evaluation metrics of
  generative adversarial networks".
* ``nn1_accuracy`` (closer to 0.5 is better): leave-one-out 1-nearest-neighbour
  two-sample classifier accuracy (Lopez-Paz & Oquab 2017; Xu et al. 2018).
  1.0 means real and fake are perfectly separable; well below 0.5 on the fake
  side hints at memorised training samples.
* ``class_coverage`` (higher coverage/entropy is better): share of classes that
  are predicted at least once and the entropy of the predicted-class histogram;
  a cheap mode-collapse check (entropy max is log(n_classes)).
"""
from __future__ import annotations

import logging

import numpy as np
from scipy import linalg
from scipy.special import xlogy

logger = logging.getLogger(__name__)

_ROW_SUM_TOL = 1e-3
_FID_EPS = 1e-6  # pytorch-fid's diagonal offset for singular covariance products
_FID_NEG_TOL = 1e-6  # relative; a clearly negative eigenvalue (covariance not PSD) raises
_KID_GRAM_MAX_ELEMS = 1 << 27  # ~1 GiB of float64 kernel matrices; beyond, per-round ones
_BLOCK_ELEMS = 1 << 22  # ~32 MiB of float64 per distance block
_MEDIAN_MAX_POINTS = 4000  # ~8M pairs; beyond this the median is estimated on a subsample


def _as_matrix(x, name: str, min_rows: int = 1) -> np.ndarray:
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


def _feature_pair(a, b, name_a: str, name_b: str, min_rows: int = 2):
    a = _as_matrix(a, name_a, min_rows)
    b = _as_matrix(b, name_b, min_rows)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {name_a} has D={a.shape[1]}, "
                         f"{name_b} has D={b.shape[1]}; both must be (N, D) with the same D")
    return a, b


def _check_probs(probs, name: str = "probs") -> np.ndarray:
    p = _as_matrix(probs, name)
    if (p < 0).any():
        raise ValueError(f"{name} must be non-negative probabilities; min value is {p.min():.3g}")
    sums = p.sum(axis=1)
    worst = int(np.argmax(np.abs(sums - 1.0)))
    if abs(sums[worst] - 1.0) > _ROW_SUM_TOL:
        raise ValueError(f"{name} rows must sum to 1 (within {_ROW_SUM_TOL}); row {worst} sums to "
                         f"{sums[worst]:.6g} (pass softmax probabilities, not logits)")
    return p


def inception_score(probs, splits: int = 10) -> tuple[float, float]:
    """Inception Score of class probabilities ``probs`` (N, C); returns (mean, std).

    Rows are split IN ORDER into ``splits`` chunks (``np.array_split``); per chunk
    IS = exp(mean_x KL(p(y|x) || p(y))) with p(y) that chunk's mean. The std is the
    population std (ddof=0) over chunks, as in the TF reference and torch-fidelity.
    0 * log 0 is taken as 0 (``scipy.special.xlogy``), so exact one-hot rows are fine.
    """
    if isinstance(splits, bool) or not isinstance(splits, (int, np.integer)) or splits < 1:
        raise ValueError(f"splits must be a positive integer; got {splits!r}")
    p = _check_probs(probs)
    if p.shape[0] < splits:
        raise ValueError(f"too few samples: probs has N={p.shape[0]} rows but splits={splits}; "
                         "need N >= splits")
    scores = []
    for chunk in np.array_split(p, splits, axis=0):
        py = chunk.mean(axis=0, keepdims=True)
        # where py == 0 the whole column is 0, so xlogy gives 0 there too
        kl = (xlogy(chunk, chunk) - xlogy(chunk, py)).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    scores = np.asarray(scores)
    return float(scores.mean()), float(scores.std(ddof=0))


def gaussian_stats(feats) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and covariance (D, D) (ddof=1, as ``np.cov``) of ``feats`` (N >= 2, D), for
    :func:`frechet_distance_from_stats` (compute once for a fixed reference set)."""
    x = _as_matrix(feats, "feats", min_rows=2)
    mu = x.mean(axis=0)
    xc = x - mu
    return mu, (xc.T @ xc) / (x.shape[0] - 1)  # xc.T @ xc runs as one BLAS syrk


def _tr_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    """tr sqrt(S1 S2) of symmetric PSD S1, S2 = sum of sqrt(eigvalsh(F^T S2 F)) for any
    S1 = F F^T (similar matrices). F: Cholesky factor (LAPACK ``dsygv``); for singular S1
    (N <= D samples) the pivoted Cholesky factor (``dpstrf``) cut at S1's numerical rank
    (pivots <= D eps max diag), a smaller problem. Round-off negatives are clipped to 0."""
    try:
        ev = linalg.eigh(s2, s1, type=2, eigvals_only=True, driver="gv", check_finite=False)
        left = 0.0
    except np.linalg.LinAlgError:  # S1 not positive definite
        c, piv, rank, info = linalg.lapack.dpstrf(s1, lower=1)
        if info < 0:
            raise np.linalg.LinAlgError(f"dpstrf: illegal argument {-info}") from None
        factor = np.zeros((s1.shape[0], rank))
        factor[piv - 1] = np.tril(c[:, :rank])
        left = (np.diagonal(s1) - np.einsum("ij,ij->i", factor, factor)).min()  # ~0 if PSD
        ev = np.linalg.eigvalsh(factor.T @ s2 @ factor)
    low = min(left, ev.min(initial=0.0))
    if low < -_FID_NEG_TOL * max(1.0, ev.max(initial=0.0), np.abs(s1).max()):
        raise ValueError(f"FID: covariances must be positive semi-definite; S_a or S_a S_b has "
                         f"a clearly negative eigenvalue (about {low:.3g})")
    return float(np.sqrt(np.clip(ev, 0.0, None)).sum())


def frechet_distance_from_stats(mu1, sigma1, mu2, sigma2) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (see :func:`gaussian_stats`).

    If tr sqrt(S1 S2) (``_tr_sqrt_product``) fails or is not finite, both covariances get
    ``1e-6 * I`` added (pytorch-fid's fallback). Clearly non-PSD covariances raise."""
    mu1, mu2 = (np.atleast_1d(np.asarray(m, dtype=np.float64)) for m in (mu1, mu2))
    s1, s2 = (np.atleast_2d(np.asarray(s, dtype=np.float64)) for s in (sigma1, sigma2))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or s1.shape != (d, d) or s2.shape != (d, d):
        raise ValueError(f"expected mu1, mu2 of shape (D,) and sigma1, sigma2 of shape (D, D); "
                         f"got {mu1.shape}, {mu2.shape}, {s1.shape}, {s2.shape}")
    if not all(np.isfinite(x).all() for x in (mu1, mu2, s1, s2)):
        raise ValueError("mu/sigma contain NaN or inf values; all entries must be finite")
    if not all(np.allclose(s, s.T, rtol=1e-6, atol=1e-9 * np.abs(s).max()) for s in (s1, s2)):
        raise ValueError("sigma1 and sigma2 must be symmetric (covariance matrices)")
    return _fid_from_stats(mu1, s1, mu2, s2)


def _fid_from_stats(mu1, s1, mu2, s2) -> float:
    try:
        t = _tr_sqrt_product(s1, s2)
    except np.linalg.LinAlgError:
        t = np.nan
    if not np.isfinite(t):
        logger.warning("FID: singular covariance product; adding %g to the diagonals", _FID_EPS)
        offset = np.eye(s1.shape[0]) * _FID_EPS
        t = _tr_sqrt_product(s1 + offset, s2 + offset)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * t)


def frechet_distance(feats_a, feats_b) -> float:
    """Fréchet distance between Gaussians fitted to ``feats_a`` (N, D) and ``feats_b`` (M, D).

    Covariances use ddof=1 (``np.cov``); as :func:`frechet_distance_from_stats`, except with
    fewer samples than dimensions: with A, B the centred sets over sqrt(N-1), sqrt(M-1), the
    nonzero eigenvalues of S_a S_b = A^T A B^T B are those of (A B^T)(A B^T)^T, so tr
    sqrt(S_a S_b) is the sum of the singular values of the N x M matrix A B^T (exact).
    """
    a, b = _feature_pair(feats_a, feats_b, "feats_a", "feats_b", min_rows=2)
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    ac, bc = (x / np.sqrt(x.shape[0] - 1) for x in (a - mu1, b - mu2))
    if min(a.shape[0], b.shape[0]) < a.shape[1]:
        try:
            t = np.linalg.svd(ac @ bc.T, compute_uv=False).sum()
        except np.linalg.LinAlgError:
            t = np.nan
        if np.isfinite(t):
            diff = mu1 - mu2
            return float(diff @ diff + np.einsum("ij,ij->", ac, ac)
                         + np.einsum("ij,ij->", bc, bc) - 2.0 * t)
    return _fid_from_stats(mu1, ac.T @ ac, mu2, bc.T @ bc)


def _mmd2_unbiased(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    """Unbiased MMD^2 from full kernel matrices (diagonals of k_xx, k_yy excluded)."""
    n, m = k_xx.shape[0], k_yy.shape[0]
    xx = (k_xx.sum() - np.trace(k_xx)) / (n * (n - 1))
    yy = (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(xx + yy - 2.0 * k_xy.mean())


def _poly_kernel(x: np.ndarray, y: np.ndarray, gamma: float, coef0: float, degree) -> np.ndarray:
    """(gamma x.y + coef0)^degree for all row pairs, transformed in place in row blocks;
    small integer powers by repeated multiplication (several times faster than ``pow``)."""
    k = x @ y.T  # one BLAS call (syrk when y is x)
    small_int = float(degree).is_integer() and 1 <= degree <= 8
    for lo, hi in _row_blocks(k.shape[0], k.shape[1]):
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


def _kid_use_gram(n: int, m: int, size: int, subsets: int) -> bool:
    """Full kernel matrices are cheaper ((n+m)^2 vs 4 subsets size^2 multiply-adds) and fit."""
    fits = n * n + m * m + n * m <= _KID_GRAM_MAX_ELEMS
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
    per-round ones are cheaper or the full ones exceed ``_KID_GRAM_MAX_ELEMS`` entries.
    """
    a, b = _feature_pair(feats_a, feats_b, "feats_a", "feats_b", min_rows=2)
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"need subsets >= 1 and subset_size >= 2; got subsets={subsets}, "
                         f"subset_size={subset_size}")
    (n, d), m = a.shape, b.shape[0]
    size = min(int(subset_size), n, m)
    gamma = 1.0 / d if gamma is None else float(gamma)

    def kern(x, y):
        return _poly_kernel(x, y, gamma, coef0, degree)

    if size == n and size == m:
        return _mmd2_unbiased(kern(a, a), kern(b, b), kern(a, b)), 0.0
    gram = _kid_use_gram(n, m, size, int(subsets))
    if gram:
        k_aa, k_bb, k_ab = kern(a, a), kern(b, b), kern(a, b)
    rng = np.random.default_rng(seed)
    mmds = np.empty(int(subsets))
    for i in range(int(subsets)):
        ix = rng.choice(n, size, replace=False)
        iy = rng.choice(m, size, replace=False)
        if gram:  # sorted: same sums in another order, with cache-friendly gathers
            ix, iy = np.sort(ix), np.sort(iy)
            mmds[i] = _mmd2_unbiased(k_aa[np.ix_(ix, ix)], k_bb[np.ix_(iy, iy)],
                                     k_ab[np.ix_(ix, iy)])
        else:
            x, y = a[ix], b[iy]
            mmds[i] = _mmd2_unbiased(kern(x, x), kern(y, y), kern(x, y))
    return float(mmds.mean()), float(mmds.std(ddof=0))


def _sq_dists(x: np.ndarray, y: np.ndarray, y_sq: np.ndarray | None = None) -> np.ndarray:
    """Squared Euclidean distances via the BLAS expansion, clipped at 0 against round-off."""
    if y_sq is None:
        y_sq = np.einsum("ij,ij->i", y, y)
    x_sq = np.einsum("ij,ij->i", x, x)
    return np.maximum(x_sq[:, None] + y_sq[None, :] - 2.0 * (x @ y.T), 0.0)


def _row_blocks(n_rows: int, n_cols: int):
    step = max(1, _BLOCK_ELEMS // max(1, n_cols))
    for start in range(0, n_rows, step):
        yield start, min(n_rows, start + step)


def _gaussian_kernel_sum(x: np.ndarray, y: np.ndarray | None, sigma: float) -> float:
    """Sum of exp(-|x_i - y_j|^2 / (2 sigma^2)) over all pairs, in row blocks. With
    ``y=None``: over pairs i != j of x, from the upper triangle only (doubled)."""
    sym = y is None
    y = x if sym else y
    y_sq = np.einsum("ij,ij->i", y, y)
    total = 0.0
    for lo, hi in _row_blocks(x.shape[0], y.shape[0]):
        c = lo if sym else 0
        k = np.exp(-_sq_dists(x[lo:hi], y[c:], y_sq[c:]) / (2.0 * sigma * sigma))
        if sym:  # diagonal block: strict upper triangle only
            k[:, : hi - lo] = np.triu(k[:, : hi - lo], 1)
        total += (2.0 if sym else 1.0) * k.sum()
    return total


def _median_pairwise_distance(z: np.ndarray, seed: int = 0) -> float:
    if z.shape[0] > _MEDIAN_MAX_POINTS:
        z = z[np.random.default_rng(seed).choice(z.shape[0], _MEDIAN_MAX_POINTS, replace=False)]
    iu = np.triu_indices(z.shape[0], k=1)
    return float(np.median(np.sqrt(_sq_dists(z, z)[iu])))


def kernel_mmd(feats_a, feats_b, sigma: float | None = None) -> float:
    """Unbiased squared MMD with Gaussian kernel k(x, y) = exp(-|x - y|^2 / (2 sigma^2)).

    ``sigma`` defaults to the median heuristic: the median Euclidean distance over
    distinct pairs of the pooled set (above 4000 pooled points, over a fixed-seed
    random subset of 4000, which keeps memory bounded). Kernel sums are computed
    in row blocks, so a few thousand points per set fit comfortably.
    """
    a, b = _feature_pair(feats_a, feats_b, "feats_a", "feats_b", min_rows=2)
    if sigma is None:
        sigma = _median_pairwise_distance(np.concatenate([a, b]))
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
    r, f = _feature_pair(real_feats, fake_feats, "real_feats", "fake_feats", min_rows=2)
    z = np.concatenate([r, f])
    is_real = np.zeros(z.shape[0], dtype=bool)
    is_real[: r.shape[0]] = True
    n = z.shape[0]
    z_sq = np.einsum("ij,ij->i", z, z)
    best, nearest = np.full(n, np.inf), np.zeros(n, dtype=np.intp)

    def offer(at, dist, idx):  # strict <: on ties the lower index, offered earlier, stays
        upd = dist < best[at]
        best[at][upd], nearest[at][upd] = dist[upd], idx[upd]

    for lo, hi in _row_blocks(n, n):  # pairs (row block, columns >= lo), offered both ways
        d = _sq_dists(z[lo:hi], z[lo:], z_sq[lo:])
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


def class_coverage(probs, n_classes: int | None = None) -> dict:
    """Predicted-class coverage and entropy of class scores ``probs`` (N, C).

    Only the argmax per row is used, so logits work as well as probabilities.
    ``n_classes`` defaults to C; a larger value counts classes the scorer
    cannot even output as uncovered.
    """
    p = _as_matrix(probs, "probs")
    c = p.shape[1] if n_classes is None else int(n_classes)
    if c < p.shape[1]:
        raise ValueError(f"n_classes={c} is smaller than the number of probability columns "
                         f"({p.shape[1]}); expected n_classes >= C")
    counts = np.bincount(np.argmax(p, axis=1), minlength=c)
    freq = counts / counts.sum()
    return {
        "coverage": float((counts > 0).sum() / c),
        "class_entropy": float(-xlogy(freq, freq).sum()),
        "class_entropy_max": float(np.log(c)),
    }
