"""Sample-quality scores over numpy arrays (no deep-learning framework needed).

Every function takes plain arrays (classifier probabilities or feature vectors
from the fine-tuned scorer networks), computes in float64 and raises
``ValueError`` naming the expected shape/values on bad input (``scorers.arrays``).
The two-sample tests over features (KID, MMD, 1-NN) are in ``scorers.two_sample``.

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
* ``class_coverage`` (higher coverage/entropy is better): share of classes that
  are predicted at least once and the entropy of the predicted-class histogram;
  a cheap mode-collapse check (entropy max is log(n_classes)).
"""
from __future__ import annotations

import logging

import numpy as np
from scipy import linalg
from scipy.special import xlogy

from scorers.arrays import as_matrix, check_probs, feature_pair

logger = logging.getLogger(__name__)

_FID_EPS = 1e-6  # pytorch-fid's diagonal offset for singular covariance products
FID_NEG_TOL = 1e-6  # relative; a clearly negative eigenvalue (covariance not PSD) raises


def inception_score(probs, splits: int = 10) -> tuple[float, float]:
    """Inception Score of class probabilities ``probs`` (N, C); returns (mean, std).

    Rows are split IN ORDER into ``splits`` chunks (``np.array_split``); per chunk
    IS = exp(mean_x KL(p(y|x) || p(y))) with p(y) that chunk's mean. The std is the
    population std (ddof=0) over chunks, as in the TF reference and torch-fidelity.
    0 * log 0 is taken as 0 (``scipy.special.xlogy``), so exact one-hot rows are fine.
    """
    if isinstance(splits, bool) or not isinstance(splits, (int, np.integer)) or splits < 1:
        raise ValueError(f"splits must be a positive integer; got {splits!r}")
    p = check_probs(probs)
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
    x = as_matrix(feats, "feats", min_rows=2)
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
    if low < -FID_NEG_TOL * max(1.0, ev.max(initial=0.0), np.abs(s1).max()):
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
    a, b = feature_pair(feats_a, feats_b, "feats_a", "feats_b", min_rows=2)
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


def class_coverage(probs, n_classes: int | None = None) -> dict:
    """Predicted-class coverage and entropy of class scores ``probs`` (N, C).

    Only the argmax per row is used, so logits work as well as probabilities.
    ``n_classes`` defaults to C; a larger value counts classes the scorer
    cannot even output as uncovered.
    """
    p = as_matrix(probs, "probs")
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
