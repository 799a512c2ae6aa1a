"""The fixed split of the 10,000 real test images into a reference half and a ceiling half.

Feature-space metrics (FID, KID, MMD, 1-NN) compare generated images with the first n
images of the *reference* half. The real-data ceiling scores the first n images of the
other, *ceiling* half, so it is what an ideal generator (fresh draws from the true
distribution) would get, never a set compared with itself (which would give FID 0 and
1-NN accuracy 0). The permutation is seeded by a constant, the same for every scorer and
dataset, so scores from different scorers and sweeps use the same real images.

When a scorer is evaluated on fewer than 10,000 test images (``eval_subset=k``), those
images are the first ceil(k/2) of the reference half and the first floor(k/2) of the
ceiling half: a uniform random subset of the test set (so its accuracy is an unbiased
estimate), and exactly the images a score with n <= k/2 needs.
"""
from __future__ import annotations

import functools

import numpy as np

from scorers.spec import TEST_SET_SIZE

SPLIT_SEED = 20_231_124
HALF = TEST_SET_SIZE // 2
PARTS = ("reference", "ceiling")


@functools.lru_cache(maxsize=1)
def _permutation() -> np.ndarray:
    perm = np.random.default_rng(SPLIT_SEED).permutation(TEST_SET_SIZE)
    perm.setflags(write=False)
    return perm


def indices(part: str, n: int | None = None) -> np.ndarray:
    """Test-set indices of the first ``n`` images of ``part`` ('reference' or 'ceiling')."""
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}; got {part!r}")
    n = HALF if n is None else n
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 < n <= HALF:
        raise ValueError(f"n={n!r} real images requested from the {part} half; expected an "
                         f"integer in 1..{HALF} (the test set has {TEST_SET_SIZE} images, "
                         f"split in two halves)")
    perm = _permutation()
    start = 0 if part == "reference" else HALF
    return perm[start:start + int(n)].copy()


def eval_indices(k: int) -> np.ndarray:
    """Test-set indices (sorted) of the ``k`` images a scorer is evaluated on."""
    if k >= TEST_SET_SIZE:
        return np.arange(TEST_SET_SIZE)
    chosen = np.concatenate([indices("reference", -(-k // 2)), indices("ceiling", k // 2)]
                            if k > 1 else [indices("reference", 1)])
    return np.sort(chosen)
