"""FID and KID speed: the previous implementations against ``scorers.metrics``, in one process.

    .venv/bin/python bench/metrics_speed.py [--ns 1000 5000] [--dim 2048] [--old-kid-rounds 5]

Features are random Inception-like vectors (ReLU of correlated Gaussians, D=2048); "fake"
is a perturbed copy of the generator. For each n (samples per side):

* FID old: ``scipy.linalg.sqrtm(S_a S_b)`` (pytorch-fid numerics, embedded below);
  new: ``frechet_distance`` (Cholesky/eigvalsh for n >= D, Gram trick for n < D) and
  ``frechet_distance_from_stats`` with the real side's ``gaussian_stats`` cached.
* KID old: kernel matrices recomputed in each of 100 rounds of 1000 rows (embedded below);
  its cost is the same every round, so it is timed on ``--old-kid-rounds`` rounds and scaled
  to 100 (pass 100 to time it in full). New: ``kernel_inception_distance`` with 100 rounds.
  The deviation compares new and old over the same ``--old-kid-rounds`` seeded rounds, new
  forced onto its full-kernel-matrix path. (``scorers.scoring`` already passes subsets=1
  when n <= 1000, where every round is the whole set.)

Deviations are |new - old| / |old|. Time ratios are only meaningful within one run. About
2.5 minutes on an idle 2-core machine. On an oversubscribed one, OpenBLAS's multithreaded
LAPACK (sqrtm, eigvalsh, svd) slows down many-fold; OPENBLAS_NUM_THREADS=1 then gives
steadier (and faster) numbers for both sides.
"""
from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np
from scipy import linalg

import scorers.metrics as metrics  # noqa: E402
import scorers.two_sample as two_sample  # noqa: E402


def old_fid(a: np.ndarray, b: np.ndarray) -> float:
    """The previous ``frechet_distance``: sqrtm of the covariance product."""
    mu1, mu2 = a.mean(axis=0), b.mean(axis=0)
    s1, s2 = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Matrix is singular" when n < d
        covmean = linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            offset = np.eye(s1.shape[0]) * 1e-6
            covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(covmean.real))


def old_kid(a, b, subsets=100, subset_size=1000, degree=3, coef0=1.0, seed=0):
    """The previous ``kernel_inception_distance``: three kernel matrices per round."""
    size, gamma = min(subset_size, len(a), len(b)), 1.0 / a.shape[1]
    rng = np.random.default_rng(seed)
    mmds = np.empty(subsets)
    for i in range(subsets):
        x = a[rng.choice(len(a), size, replace=False)]
        y = b[rng.choice(len(b), size, replace=False)]
        k_xx = (gamma * (x @ x.T) + coef0) ** degree
        k_yy = (gamma * (y @ y.T) + coef0) ** degree
        k_xy = (gamma * (x @ y.T) + coef0) ** degree
        mmds[i] = two_sample.mmd2_unbiased(k_xx, k_yy, k_xy)
    return float(mmds.mean()), float(mmds.std(ddof=0))


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def features(n: int, dim: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    latent = 256
    w = rng.normal(size=(latent, dim)) / np.sqrt(latent)
    real = np.maximum(rng.normal(size=(n, latent)) @ w + 0.2 * rng.normal(size=(n, dim)), 0)
    fake = np.maximum(rng.normal(0.1, 1.1, size=(n, latent)) @ w
                      + 0.25 * rng.normal(size=(n, dim)), 0)
    return real, fake


def rel(new: float, old: float) -> float:
    return abs(new - old) / abs(old)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ns", type=int, nargs="+", default=[1000, 5000])
    ap.add_argument("--dim", type=int, default=2048)
    ap.add_argument("--old-kid-rounds", type=int, default=5)
    args = ap.parse_args()
    start = time.perf_counter()
    print(f"D={args.dim}, cpus={os.cpu_count()}, load avg {os.getloadavg()[0]:.1f}, "
          f"numpy {np.__version__}", flush=True)
    for n in args.ns:
        real, fake = features(n, args.dim, seed=n)
        print(f"\n== n = {n} per side", flush=True)
        f_old, t_old = timed(old_fid, real, fake)
        f_new, t_new = timed(metrics.frechet_distance, real, fake)
        stats, t_stats = timed(metrics.gaussian_stats, real)
        f_cached, t_cached = timed(lambda: metrics.frechet_distance_from_stats(
            *stats, *metrics.gaussian_stats(fake)))
        print(f"FID   old {t_old:7.2f}s  new {t_new:6.2f}s  x{t_old / t_new:5.1f}   "
              f"cached real stats {t_cached:5.2f}s x{t_old / t_cached:5.1f} "
              f"(stats once: {t_stats:.2f}s)\n      FID {f_new:.6f}; rel dev from old "
              f"{rel(f_new, f_old):.1e}, cached-stats path from new {rel(f_cached, f_new):.1e}",
              flush=True)

        r = args.old_kid_rounds
        k_old, t_old = timed(old_kid, real, fake, subsets=r)
        t_old *= 100 / r
        k_new, t_new = timed(two_sample.kernel_inception_distance, real, fake, subsets=100)
        use_gram = two_sample.kid_use_gram
        two_sample.kid_use_gram = lambda *a: True
        try:
            k_same = two_sample.kernel_inception_distance(real, fake, subsets=r)
        finally:
            two_sample.kid_use_gram = use_gram
        scaled = "" if r == 100 else f" (timed on {r} rounds, scaled to 100)"
        print(f"KID   old {t_old:7.2f}s  new {t_new:6.2f}s  x{t_old / t_new:5.1f}{scaled}\n"
              f"      KID {k_new[0]:.6g} +- {k_new[1]:.3g}; over {r} rounds rel dev of mean "
              f"{rel(k_same[0], k_old[0]):.1e}, abs dev of std {abs(k_same[1] - k_old[1]):.1e}",
              flush=True)
    print(f"\ntotal {time.perf_counter() - start:.0f}s")


if __name__ == "__main__":
    main()
