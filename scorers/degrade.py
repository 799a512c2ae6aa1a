"""Degraded digits: what a generator's samples look like to a classifier trained on clean ones.

A scorer that is accurate on the clean test set can still be blind to generated images: the
quick Inception scorer (one pass over 12,000 clean digits, from scratch) classified 17% of
test digits correctly once they were blurred (sigma 1 px), calling nearly all of them "1",
and 44% once dimmed to 70%: a VAE's blurry samples then score IS 1.5 although they are
clearly digits (the ViT scorer: 96% on both). The paper fine-tunes ImageNet features, which
are robust to this; from scratch, a scorer has to see such images while it learns.

``degrade`` blurs and dims a random half of a batch of images (one fresh draw per epoch);
``robustness`` measures a scorer on test images degraded in fixed ways, and is stored in
every scorer's metadata, so a scorer's fitness for judging samples is on record.
"""
from __future__ import annotations

import numpy as np

AUGMENTS = ("none", "degrade")
SHARE = 0.5  # of training images degraded in each epoch
BLUR_SIGMA = (0.0, 2.0)  # Gaussian blur, pixels, uniform
DIM = (0.4, 1.0)  # intensity scale, uniform
# The fixed degradations a scorer is measured on (on ROBUSTNESS_IMAGES test images).
CHECKS = {"blur_1px": {"sigma": 1.0, "scale": 1.0}, "dim_70": {"sigma": 0.0, "scale": 0.7},
          "blur_1px_dim_70": {"sigma": 1.0, "scale": 0.7}}
ROBUSTNESS_IMAGES = 2000


def settings() -> dict:
    """What ``degrade`` does, for a scorer's spec hash: other settings, other weights."""
    return {"share": SHARE, "blur_sigma": list(BLUR_SIGMA), "dim": list(DIM)}


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(image, sigma) if sigma > 0 else image


def degrade(images: np.ndarray, seed: int) -> np.ndarray:
    """A copy of (N, 28, 28) float [0, 1] ``images`` with a random ``SHARE`` blurred by
    sigma ~ U(BLUR_SIGMA) and scaled by ~ U(DIM)."""
    rng = np.random.default_rng(seed)
    out = images.copy()
    chosen = np.flatnonzero(rng.random(len(images)) < SHARE)
    sigmas = rng.uniform(*BLUR_SIGMA, size=len(chosen))
    scales = rng.uniform(*DIM, size=len(chosen))
    for i, sigma, scale in zip(chosen, sigmas, scales):
        out[i] = np.clip(_blur(images[i], sigma) * scale, 0.0, 1.0)
    return out


def degraded_set(images: np.ndarray, sigma: float, scale: float) -> np.ndarray:
    return np.stack([np.clip(_blur(im, sigma) * scale, 0.0, 1.0) for im in images])


def robustness(predict, images: np.ndarray, labels: np.ndarray) -> dict:
    """Accuracy of ``predict(images) -> (probs, feats)`` on the first ``ROBUSTNESS_IMAGES``
    ``images`` under each of ``CHECKS``."""
    x, y = images[:ROBUSTNESS_IMAGES], labels[:ROBUSTNESS_IMAGES]
    return {name: float((predict(degraded_set(x, **how))[0].argmax(1) == y).mean())
            for name, how in CHECKS.items()}
