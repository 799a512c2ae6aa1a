"""Degraded digits: what a generator's samples look like to a classifier trained on clean ones.

A scorer that is accurate on the clean test set can still be blind to generated images: the
quick Inception scorer (one pass over 12,000 clean digits, from scratch) classified 17% of
test digits correctly once they were blurred (sigma 1 px), calling nearly all of them "1",
and 44% once dimmed to 70%: a VAE's blurry samples then score IS 1.5 although they are
clearly digits (the ViT scorer: 96% on both). The paper fine-tunes ImageNet features, which
are robust to this; from scratch, a scorer has to see such images while it learns.

``degrade`` blurs and dims a random share of the images (one fresh draw per epoch);
``robustness`` measures a scorer on test images degraded in fixed ways, and is stored in
every scorer's metadata, so a scorer's fitness for judging samples is on record.
"""
from __future__ import annotations

import numpy as np

# "degrade": half of the images blurred by up to 2 px and dimmed to as little as 40%;
# "degrade-mild": a third, up to 1 px and 70%, for data whose classes differ in fine texture
# (Fashion-MNIST's shirts, pullovers and coats), which the strong setting blurs away.
LEVELS = {"degrade": {"share": 0.5, "blur_sigma": (0.0, 2.0), "dim": (0.4, 1.0)},
          "degrade-mild": {"share": 0.3, "blur_sigma": (0.0, 1.0), "dim": (0.7, 1.0)}}
AUGMENTS = ("none", *LEVELS)
# The fixed degradations a scorer is measured on (on ROBUSTNESS_IMAGES test images).
CHECKS = {"blur_1px": {"sigma": 1.0, "scale": 1.0}, "dim_70": {"sigma": 0.0, "scale": 0.7},
          "blur_1px_dim_70": {"sigma": 1.0, "scale": 0.7}}
ROBUSTNESS_IMAGES = 2000


def settings(level: str = "degrade") -> dict:
    """What ``degrade`` does at ``level``, for a scorer's spec hash: other settings, other
    weights."""
    d = LEVELS[level]
    return {"share": d["share"], "blur_sigma": list(d["blur_sigma"]), "dim": list(d["dim"])}


def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(image, sigma) if sigma > 0 else image


def degrade(images: np.ndarray, seed: int, level: str = "degrade") -> np.ndarray:
    """A copy of (N, 28, 28) float [0, 1] ``images`` with a random share (of ``level``)
    blurred by sigma ~ U(blur_sigma) and scaled by ~ U(dim)."""
    d = LEVELS[level]
    rng = np.random.default_rng(seed)
    out = images.copy()
    chosen = np.flatnonzero(rng.random(len(images)) < d["share"])
    sigmas = rng.uniform(*d["blur_sigma"], size=len(chosen))
    scales = rng.uniform(*d["dim"], size=len(chosen))
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
