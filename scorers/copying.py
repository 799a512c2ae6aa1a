"""Data-copying: do generated images sit closer to the training images than fresh real images
do? The C_T test of Meehan, Chaudhuri & Dasgupta 2020 ("A Non-Parametric Test to Detect
Data-Copying in Generative Models"), in pixels or in a scorer's features.

The training set is cut into ``CELLS`` cells (k-means on a seeded sample of its rows, so a
generator that copies one region and misses another cannot average the two away). In each
cell, the distances from held-out real images (test images, never trained on) to their
nearest training image are compared with those of the generated samples by the
Mann-Whitney U test, as a z-score: negative when the samples are the closer ones. C_T is
the mean of the cells' z-scores, weighted by each cell's share of the held-out images, over
the cells that hold at least ``MIN_CELL_SAMPLES`` samples.

Reading it: about 0 for fresh draws from the data distribution; below ``COPYING_Z`` (-3, the
paper's own cut-off) the samples copy the training set; well above 0 they are farther from it
than real images (off the data). It is no blur detector: in pixels, blurred held-out digits
sit slightly closer to the training images than sharp ones (C_T about -1 at a 1.5 px blur,
MNIST, tests/test_memorisation.py's set-up), and a VAE's soft samples read far below -3 in
pixels with no copy among them (-4.7 to -6.6 in the MNIST VAE sweep of docs/results-cpu.md,
where the ViT features read +0.3 to +3.3): read the pixel C_T beside the features' one. The share of exact or near copies
(``scorers.memorisation``) answers a narrower question: it flags only samples inside the 1%
quantile of the training images' own nearest-neighbour distances.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata

from scorers.memorisation import TrainingSet, nearest

CELLS = 20
CELL_FIT_ROWS = 5000
KMEANS_ITERATIONS = 15
MIN_CELL_SAMPLES = 20
COPYING_Z = -3.0
# A fresh draw lands among the near copies 1% of the time by construction; five times that
# is a generator that hands back training images.
NEAR_COPY_FLAG = 0.05
SEED = 0


def centroids(train: TrainingSet) -> np.ndarray:
    """The cells' centres: Lloyd's k-means on a seeded sample of the training rows, computed
    once per training set."""
    if "centroids" not in train.cache:
        rng = np.random.default_rng(SEED)
        x = train.x[np.sort(rng.choice(len(train.x), min(CELL_FIT_ROWS, len(train.x)),
                                       replace=False))]
        centres = x[rng.choice(len(x), min(CELLS, len(x)), replace=False)].copy()
        for _ in range(KMEANS_ITERATIONS):
            cell = assign(x, centres)
            for c in range(len(centres)):
                if (cell == c).any():  # an empty cell keeps its centre
                    centres[c] = x[cell == c].mean(axis=0)
        train.cache["centroids"] = centres
    return train.cache["centroids"]


def assign(x: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Each row's cell: its nearest centre."""
    return nearest(np.ascontiguousarray(x, np.float32), centres,
                   (centres.astype(np.float64) ** 2).sum(1))[0]


def mann_whitney_z(samples: np.ndarray, held_out: np.ndarray) -> float:
    """The U statistic's z-score, U counting the (sample, held-out) pairs where the sample is
    the farther (ties count half): negative when samples are closer than held-out images."""
    m, n = len(samples), len(held_out)
    ranks = rankdata(np.concatenate([samples, held_out]))
    u = ranks[:m].sum() - m * (m + 1) / 2
    return float((u - m * n / 2) / np.sqrt(m * n * (m + n + 1) / 12))


def held_out_side(train: TrainingSet, held_out: np.ndarray, key) -> tuple:
    """(squared nearest-training distance, cell) of each held-out row, computed once per
    training set and ``key`` (the held-out images are the same for every sample set)."""
    slot = ("held_out", key)
    if slot not in train.cache:
        rows = np.ascontiguousarray(held_out, np.float32)
        train.cache[slot] = (np.maximum(nearest(rows, train.x, train.sq)[1], 0.0),
                             assign(rows, centroids(train)))
    return train.cache[slot]


def copying_statistic(train: TrainingSet, samples: np.ndarray, samples_sq: np.ndarray,
                      held_out: np.ndarray, key) -> float:
    """C_T of ``samples`` (M, D), whose squared nearest-training distances are
    ``samples_sq``, against the ``held_out`` rows (N, D); NaN when no cell holds enough
    samples."""
    held_sq, held_cell = held_out_side(train, held_out, key)
    cell = assign(samples, centroids(train))
    total, weight = 0.0, 0.0
    for c in np.unique(held_cell):
        mine, theirs = samples_sq[cell == c], held_sq[held_cell == c]
        if len(mine) < MIN_CELL_SAMPLES:
            continue
        share = len(theirs) / len(held_sq)
        total += share * mann_whitney_z(mine, theirs)
        weight += share
    return total / weight if weight else float("nan")


def verdict(copying: float, near_copies: float) -> str:
    """The data-copying reading in words, for a datasheet."""
    numbers = f"C_T {copying:.2f}, near copies {near_copies:.1%}"
    if math.isnan(copying) and near_copies <= NEAR_COPY_FLAG:
        return (f"data-copying not measurable: no cell of the training set holds "
                f"{MIN_CELL_SAMPLES} samples (near copies {near_copies:.1%}); score more images")
    if copying < COPYING_Z or near_copies > NEAR_COPY_FLAG:
        return (f"data-copying: the images sit closer to the training images than held-out "
                f"real images do ({numbers}; copying below C_T {COPYING_Z:g} or near copies "
                f"above {NEAR_COPY_FLAG:.0%}). Do not share them as if they were new data.")
    if copying > -COPYING_Z:
        return (f"no sign of data-copying: the images are farther from the training images "
                f"than held-out real images are ({numbers}), as samples off the data are.")
    return (f"no sign of data-copying: the images are about as far from the training images "
            f"as held-out real images are ({numbers}).")
