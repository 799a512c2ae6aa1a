"""One sample set's scores: the single owner of "this set, with its labels if any, gets these
scores".

A sweep's trial, its real-data ceiling, ``gensweep score`` and ``gensweep synthesize`` all
call :func:`scorecard`, so a score added here reaches every table, and the rules below are
written once:

* every scorer's table (``scorers.classifier_scores``: the IS formula, FID, KID, ... at each n);
* memorisation at the largest n against the images the generator trained on, in pixels here
  and in the features of the ``MEMO_KINDS`` scorers (the ViT: seconds for its pass over the
  training set, where Inception takes minutes on a CPU);
* for a labelled set, the train-on-synthetic accuracy (``scorers.utility``) and its ratio to
  the same classifier trained on as many real images.

The scorers come as ``kind -> SampleScorer``: a function that starts scoring and returns a
function that waits for the result. A scorer in this process (:class:`LoadedScorer`) answers
at once; a Ray actor (``scorers.actor.ActorScorer``) answers later, so this process computes
memorisation and CAS while the actors predict.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from scorers import memorisation, realsplit, utility
from scorers.classifier_scores import ceiling, check_ns, score_images
from scorers.copying import copying_statistic
from scorers.images import as_unit_float
from scorers.keys import cas_key, memo_key
from trainables.datasets import load_dataset

MEMO_KINDS = ("vit",)
PAIRS_FILE = "memorisation_pairs.png"

# (images or None for the real ceiling half, ns, training images or None) -> wait() -> scores
SampleScorer = Callable[..., Callable[[], dict]]


@dataclass(frozen=True)
class TrainingImages:
    """The images a generator trained on: the dataset's training split, or the stratified
    ``subset`` of it a sweep's trials train on. Memorisation compares samples with these."""

    subset: int | None = None
    seed: int = 0
    data_dir: str | None = None

    def __post_init__(self):
        # the seed picks a subset; the whole training split is the same for every seed, so
        # a confirmation trial's fresh seed must not make every cache build it again
        if self.subset is None:
            object.__setattr__(self, "seed", 0)

    def for_scorer(self) -> dict:
        """What a scorer (or its actor, across Ray) needs to build its training side."""
        return {"subset": self.subset, "seed": self.seed}

    def images(self, dataset: str) -> np.ndarray:
        return load_dataset(dataset, self.data_dir, subset=self.subset, seed=self.seed).train.images


class LoadedScorer:
    """A ``SampleScorer`` over a scorer loaded in this process (``scorers.scorer_cache.load_scorer``)."""

    def __init__(self, scorer, dataset: str | None = None) -> None:
        self.scorer, self.dataset = scorer, dataset

    def __call__(self, images, ns, train: dict | None) -> Callable[[], dict]:
        scores = (ceiling(self.scorer, ns, train=train) if images is None
                  else score_images(self.scorer, images, ns, dataset=self.dataset, train=train))
        return lambda: scores


def scorecard(images, *, dataset: str, ns, scorers: Mapping[str, SampleScorer],
              labelled: tuple | None = None, training: TrainingImages = TrainingImages(),
              cas_ceiling: float | None = None, pairs: bool = False) -> dict:
    """Every score of a sample set, as one flat dict of floats.

    ``images``: (N, 28, 28) samples (N >= max(ns); uint8, or floats in [0, 1]), or None for the first n images of
    the real test set's ceiling half: what a perfect generator would score. ``labelled``:
    ``(images, labels)`` that the train-on-synthetic accuracy learns from (the set itself when
    it carries labels, or the generator's labelled draws), or None for no CAS; the ceiling's
    CAS is the classifier trained on n real images. ``cas_ceiling``: that real-data accuracy, when the caller has it already (a sweep computes
    it once); else it is computed here and reported as ``ceiling_cas_L``. ``pairs``: add the
    PNG of the closest sample / training-image pairs as ``{"_artifacts": {PAIRS_FILE: png}}``.
    """
    ns = check_ns(ns)
    n = max(ns)
    train = training.for_scorer()
    pending = [score(images, ns, train if kind in MEMO_KINDS else None)
               for kind, score in scorers.items()]
    data = load_dataset(dataset, training.data_dir)
    held_out = data.test.images[realsplit.indices("ceiling", n)]
    x = held_out if images is None else as_uint8(images)[:n]
    out, png = pixel_checks(x, dataset, training, None if images is None else held_out)
    if images is None:
        out[cas_key(n)] = utility.real_ceiling(data, n)
    elif labelled is not None:
        out.update(train_on_synthetic(*labelled, data, n, cas_ceiling))
    for wait in pending:
        out.update(wait())
    if pairs:
        out["_artifacts"] = {PAIRS_FILE: png}
    return out


@functools.lru_cache(maxsize=2)
def pixel_training_set(dataset: str, training: TrainingImages):
    """(the training images, their ``scorers.memorisation.TrainingSet`` in pixels): kept in
    this process, since every trial of a sweep compares its samples with the same images."""
    images = training.images(dataset)
    return images, memorisation.training_set(flat_pixels(images))


def flat_pixels(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def pixel_checks(x: np.ndarray, dataset: str, training: TrainingImages,
                 held_out: np.ndarray | None) -> tuple[dict, bytes]:
    """Memorisation of uint8 images ``x`` against the training images, in pixels, with the
    data-copying C_T against ``held_out`` real images (when ``x`` are not those), and the
    PNG of the closest sample / training-image pairs."""
    n = len(x)
    train_images, train = pixel_training_set(dataset, training)
    res = memorisation.memorisation(train, flat_pixels(x))
    out = {memo_key("pixels", n, stat): res[stat] for stat in ("near_copies", "authenticity")}
    if held_out is not None:
        out[memo_key("pixels", n, "copying")] = copying_statistic(
            train, flat_pixels(x), res["nearest_sq"], flat_pixels(held_out), ("ceiling", n))
    png = memorisation.pairs_picture(x, train_images, memorisation.closest_pairs(res))
    return out, png


def as_uint8(images) -> np.ndarray:
    """Images as uint8 pixels, the form the pixel-space checks compare with training images."""
    images = np.asarray(images)
    if images.dtype == np.uint8 and images.ndim == 3:
        return images
    return np.round(as_unit_float(images) * 255).astype(np.uint8)


def train_on_synthetic(images, labels, data, n: int, cas_ceiling: float | None) -> dict:
    """``cas_L`` of the first n labelled images, its ratio to the real-data ceiling, and
    that ceiling (``ceiling_cas_L``) when it had to be computed here."""
    if cas_ceiling is None:
        return utility.cas_with_ceiling(images, labels, data, n)
    acc = utility.classification_accuracy_score(images[:n], labels[:n], data.test.images,
                                                data.test.labels)
    return {cas_key(n): acc, cas_key(n, ratio=True): acc / cas_ceiling}
