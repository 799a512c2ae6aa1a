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
  to two feature sets. Heusel et al. 2017; numerics as in pytorch-fid.
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


def frechet_distance(feats_a, feats_b) -> float:
    """Fréchet distance between Gaussians fitted to ``feats_a`` (N, D) and ``feats_b`` (M, D).

    Covariances use ddof=1 (``np.cov``). If sqrt(S_a S_b) is not finite, both
    covariances get ``1e-6 * I`` added (pytorch-fid); a non-negligible imaginary
    part (> 1e-3 on the diagonal) raises, tiny ones are dropped.
    """
    a, b = _feature_pair(feats_a, feats_b, "feats_a", "feats_b", min_rows=2)
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    s1 = np.atleast_2d(np.cov(a, rowvar=False))
    s2 = np.atleast_2d(np.cov(b, rowvar=False))
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():
        logger.warning("FID: singular covariance product; adding %g to the diagonals", _FID_EPS)
        offset = np.eye(s1.shape[0]) * _FID_EPS
        covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(covmean):
        max_imag = np.max(np.abs(np.diagonal(covmean).imag))
        if max_imag > 1e-3:
            raise ValueError(f"FID: matrix square root has a large imaginary component ({max_imag:.3g})")
        covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean))


def _mmd2_unbiased(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    """Unbiased MMD^2 from full kernel matrices (diagonals of k_xx, k_yy excluded)."""
    n, m = k_xx.shape[0], k_yy.shape[0]
    xx = (k_xx.sum() - np.trace(k_xx)) / (n * (n - 1))
    yy = (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
    return float(xx + yy - 2.0 * k_xy.mean())


def kernel_inception_distance(feats_a, feats_b, subsets: int = 100, subset_size: int = 1000,
                              degree: int = 3, gamma: float | None = None, coef0: float = 1.0,
                              seed: int = 0) -> tuple[float, float]:
    """KID: unbiased MMD^2 with k(x, y) = (gamma x.y + coef0)^degree; returns (mean, std).

    Each of ``subsets`` rounds draws min(subset_size, N, M) rows without replacement
    from each set (``np.random.default_rng(seed)``); std is over rounds with ddof=0
    (torch-fidelity's ``np.std``). ``gamma`` defaults to 1/D.
    """
    a, b = _feature_pair(feats_a, feats_b, "feats_a", "feats_b", min_rows=2)
    if subsets < 1 or subset_size < 2:
        raise ValueError(f"need subsets >= 1 and subset_size >= 2; got subsets={subsets}, "
                         f"subset_size={subset_size}")
    size = min(int(subset_size), a.shape[0], b.shape[0])
    gamma = 1.0 / a.shape[1] if gamma is None else float(gamma)
    rng = np.random.default_rng(seed)
    mmds = np.empty(int(subsets))
    for i in range(int(subsets)):
        x = a[rng.choice(a.shape[0], size, replace=False)]
        y = b[rng.choice(b.shape[0], size, replace=False)]
        k_xx = (gamma * (x @ x.T) + coef0) ** degree
        k_yy = (gamma * (y @ y.T) + coef0) ** degree
        k_xy = (gamma * (x @ y.T) + coef0) ** degree
        mmds[i] = _mmd2_unbiased(k_xx, k_yy, k_xy)
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


def _gaussian_kernel_sum(x: np.ndarray, y: np.ndarray, sigma: float, exclude_diag: bool) -> float:
    """Sum of exp(-|x_i - y_j|^2 / (2 sigma^2)) over all pairs, in row blocks."""
    y_sq = np.einsum("ij,ij->i", y, y)
    total = 0.0
    for lo, hi in _row_blocks(x.shape[0], y.shape[0]):
        k = np.exp(-_sq_dists(x[lo:hi], y, y_sq) / (2.0 * sigma * sigma))
        if exclude_diag:
            idx = np.arange(lo, hi)
            k[idx - lo, idx] = 0.0
        total += k.sum()
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
    xx = _gaussian_kernel_sum(a, a, sigma, exclude_diag=True) / (n * (n - 1))
    yy = _gaussian_kernel_sum(b, b, sigma, exclude_diag=True) / (m * (m - 1))
    xy = _gaussian_kernel_sum(a, b, sigma, exclude_diag=False) / (n * m)
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
    z_sq = np.einsum("ij,ij->i", z, z)
    nearest = np.empty(z.shape[0], dtype=np.intp)
    for lo, hi in _row_blocks(z.shape[0], z.shape[0]):
        d = _sq_dists(z[lo:hi], z, z_sq)
        idx = np.arange(lo, hi)
        d[idx - lo, idx] = np.inf
        nearest[lo:hi] = np.argmin(d, axis=1)
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
