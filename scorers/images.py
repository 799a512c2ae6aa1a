"""Checking and normalising the images a scorer is asked to judge.

Every entry point (``Scorer.predict``, ``score_images``, the actor, the CLI) funnels
images through :func:`as_unit_float`, so a generator that emits logits, NaNs, the wrong
layout or 0..255 floats gets one clear error instead of a silently wrong score.
"""
from __future__ import annotations

import numpy as np

EXPECTED = ("(N, 28, 28) or (N, 1, 28, 28) images, uint8 in 0..255 or float in [0, 1]")
# Generators with a sigmoid output sometimes overshoot [0, 1] by float round-off only.
_RANGE_TOL = 1e-4


def as_unit_float(images, name: str = "images") -> np.ndarray:
    """``images`` as a C-contiguous float32 array (N, 28, 28) with values in [0, 1].

    Raises ValueError naming the offending shape, dtype or value and what is expected.
    """
    if isinstance(images, (list, tuple)):
        images = np.asarray(images)
    if not isinstance(images, np.ndarray):
        raise ValueError(f"{name} must be a numpy array of {EXPECTED}; got {type(images).__name__}")
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    elif images.ndim == 4 and images.shape[-1] == 1:
        raise ValueError(f"{name} has shape {images.shape} (channels last); expected {EXPECTED}. "
                         f"Pass images[..., 0] or images.transpose(0, 3, 1, 2)")
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"{name} has shape {images.shape}; expected {EXPECTED}")
    if images.shape[0] == 0:
        raise ValueError(f"{name} is empty (shape {images.shape}); expected at least one image")
    if images.dtype == np.uint8:
        return np.ascontiguousarray(images, dtype=np.float32) / np.float32(255.0)
    if images.dtype == np.bool_ or not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"{name} has dtype {images.dtype}; expected uint8 (0..255) or float "
                         f"(0..1). Convert integer images with .astype(np.uint8)")
    bad = ~np.isfinite(images)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{name} contains {int(bad.sum())} NaN/inf values (first at index "
                         f"{first}); expected finite values in [0, 1]")
    lo, hi = float(images.min()), float(images.max())
    if lo < -_RANGE_TOL or hi > 1 + _RANGE_TOL:
        hint = " (looks like 0..255: divide by 255)" if hi > 1.5 else ""
        hint = hint or (" (looks like [-1, 1]: use (x + 1) / 2)" if lo < -0.5 else "")
        raise ValueError(f"{name} values span [{lo:.4g}, {hi:.4g}]; expected floats in [0, 1]{hint}")
    return np.clip(np.ascontiguousarray(images, dtype=np.float32), 0.0, 1.0)
