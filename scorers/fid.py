"""FID, the one shipped way: against a reference whose side is computed once
(``scorers.reference.ReferenceStats``), falling back to the general computation for
singular or otherwise unusual covariances.

Fréchet distance (lower is better, 0 = same Gaussian): ||mu_a - mu_b||^2 + Tr(S_a + S_b -
2 (S_a S_b)^{1/2}) between Gaussians fitted to two feature sets (Heusel et al. 2017;
pytorch-fid's conventions, but tr (S_a S_b)^{1/2} from symmetric eigenvalues or singular
values, not ``sqrtm``). Tested against ``sqrtm`` by definition (``tests/oracles.py``).
"""
from __future__ import annotations

import logging

import numpy as np
from scipy import linalg

from scorers.arrays import feature_pair

log = logging.getLogger(__name__)

_FID_EPS = 1e-6  # pytorch-fid's diagonal offset for singular covariance products
FID_NEG_TOL = 1e-6  # relative; a clearly negative eigenvalue (covariance not PSD) raises


def frechet_distance_to_reference(ref, fake_feats) -> float:
    """The Frechet distance between Gaussians fitted to ``ref.feats`` and ``fake_feats``,
    reusing the real side.

    With fewer rows than dimensions on either side, tr sqrt(S_a S_b) is the sum of the
    singular values of A B^T (as in ``frechet_distance_general``). Otherwise, with S_a = F F^T, it is
    the sum of sqrt(eigvalsh(G^T G)) for G = B F (B^T B = S_b; G^T G = F^T S_b F is similar to
    S_a S_b). Anything unusual (singular or non-finite) goes the general way."""
    b = ref.sample_feats(fake_feats)
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
        if ev.min(initial=0.0) >= -FID_NEG_TOL * max(1.0, ev.max(initial=0.0)):
            t = np.sqrt(np.clip(ev, 0.0, None)).sum()
    if not np.isfinite(t):
        return frechet_distance_general(ref.feats, b)
    return base - 2.0 * float(t)


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


def _fid_from_stats(mu1, s1, mu2, s2) -> float:
    try:
        t = _tr_sqrt_product(s1, s2)
    except np.linalg.LinAlgError:
        t = np.nan
    if not np.isfinite(t):
        log.warning("FID: singular covariance product; adding %g to the diagonals", _FID_EPS)
        offset = np.eye(s1.shape[0]) * _FID_EPS
        t = _tr_sqrt_product(s1 + offset, s2 + offset)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * t)


def frechet_distance_general(feats_a, feats_b) -> float:
    """Fréchet distance between Gaussians fitted to ``feats_a`` (N, D) and ``feats_b`` (M, D).

    Covariances use ddof=1 (``np.cov``). tr sqrt(S_a S_b) comes from symmetric eigenvalues
    (``_tr_sqrt_product``), with pytorch-fid's 1e-6 diagonal offset if that fails; with
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
