"""A loaded scorer: the network, its metadata, and the real test set in its feature space.

``Scorer.predict`` is the only way images reach the network, always through the same
validation and in bounded batches. ``Scorer.real`` hands out the real test images'
probabilities and features by split part (see ``scorers.realsplit``): from the arrays
stored at fine-tuning time where it can, otherwise (a scorer evaluated on an
``eval_subset`` asked for more real images) by predicting the missing test images once
and keeping them in memory. The folder itself is never modified after it is created.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from scorers import realsplit
from scorers.finetuning import ARRAYS, read_metadata
from scorers.images import as_unit_float
from scorers.memorisation import training_set
from scorers.reference import reference_stats
from scorers.spec import N_CLASSES, TEST_SET_SIZE, backend
from trainables.datasets import load_dataset

log = logging.getLogger(__name__)


def _load_array(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:  # object arrays need pickle: refuse them
        raise ValueError(f"{path}: cannot be loaded without pickle ({exc}); refusing it") from exc


class Scorer:
    """One fine-tuned scorer; build with :func:`scorers.scorer_cache.load_scorer`."""

    def __init__(self, folder: Path, metadata: dict, model, data_dir=None) -> None:
        self.folder = Path(folder)
        self.metadata = metadata
        self.kind: str = metadata["kind"]
        self.dataset: str = metadata["dataset"]
        self.data_dir = data_dir
        self._impl = backend(self.kind)
        self._model = model
        arrays = {k: _load_array(self.folder / name) for k, name in ARRAYS.items()}
        self._check_arrays(arrays)
        dim = arrays["real_features"].shape[1]
        # Full-size tables with a "known" mask; rows get filled on demand by real().
        self._probs = np.zeros((TEST_SET_SIZE, N_CLASSES), np.float64)
        self._feats = np.zeros((TEST_SET_SIZE, dim), np.float32)
        self._known = np.zeros(TEST_SET_SIZE, bool)
        idx = arrays["real_index"]
        self._probs[idx] = arrays["real_probs"]
        self._feats[idx] = arrays["real_features"]
        self._known[idx] = True
        self._test_images: np.ndarray | None = None
        self._reference_stats: dict = {}
        self._training_sets: dict = {}

    @classmethod
    def load(cls, path, data_dir=None) -> "Scorer":
        folder = Path(path).expanduser()
        meta = read_metadata(folder)
        model = backend(meta["kind"]).load(folder)
        log.info("loaded %s scorer %s for %s from %s (test accuracy %.4f on %d images)",
                 meta["kind"], meta.get("scorer_id"), meta["dataset"], folder,
                 meta.get("test_accuracy", float("nan")), meta.get("test_images", 0))
        return cls(folder, meta, model, data_dir=data_dir)

    def _check_arrays(self, a: dict) -> None:
        k = len(a["real_index"])
        ok = (a["real_probs"].shape == (k, N_CLASSES) and a["real_features"].ndim == 2
              and len(a["real_features"]) == k and a["real_labels"].shape == (k,) and k > 0
              and np.issubdtype(a["real_index"].dtype, np.integer)
              and a["real_index"].min() >= 0 and a["real_index"].max() < TEST_SET_SIZE)
        if not ok:
            shapes = {key: v.shape for key, v in a.items()}
            raise ValueError(f"{self.folder}: real-test arrays are inconsistent ({shapes}); "
                             f"expected K rows each, probs (K, {N_CLASSES}), index in 0..9999")

    @property
    def scorer_id(self) -> str:
        return self.metadata.get("scorer_id", "")

    @property
    def feature_dim(self) -> int:
        return self._feats.shape[1]

    def check_dataset(self, dataset: str | None) -> None:
        """ValueError if the caller's samples are of another dataset than the scorer's."""
        if dataset is not None and dataset != self.dataset:
            raise ValueError(f"samples are from dataset {dataset!r} but this {self.kind} scorer "
                             f"({self.folder}) was fine-tuned on {self.dataset!r}; expected a "
                             f"{dataset} scorer")

    def predict(self, images) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities (N, 10) float64 and penultimate features (N, D) float32.

        ``images``: (N, 28, 28) or (N, 1, 28, 28), uint8 0..255 or float in [0, 1].
        """
        return self._impl.predict(self._model, as_unit_float(images))

    def test_images(self) -> np.ndarray:
        """The dataset's 10,000 test images (uint8), checked against the scorer's checksums."""
        if self._test_images is None:
            ds = load_dataset(self.dataset, data_dir=self.data_dir)
            expected = self.metadata.get("dataset_checksums")
            if expected and dict(ds.checksums) != expected:
                raise ValueError(f"{self.dataset} files at {ds.source} differ from those the "
                                 f"scorer {self.folder} was evaluated on (checksums differ)")
            self._test_images = ds.test.images
        return self._test_images

    def real(self, part: str, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and features of the first ``n`` real test images of ``part``."""
        idx = realsplit.indices(part, n)
        missing = idx[~self._known[idx]]
        if len(missing):
            log.info("%s scorer: predicting %d real test images not stored in %s", self.kind,
                     len(missing), self.folder)
            missing = np.sort(missing)
            probs, feats = self.predict(self.test_images()[missing])
            self._probs[missing], self._feats[missing] = probs, feats
            self._known[missing] = True
        return self._probs[idx].copy(), self._feats[idx].copy()

    def training_set(self, subset: int | None = None, seed: int = 0):
        """The generator's training images (the dataset's training split, or the stratified
        ``subset`` a trial trained on) in this scorer's features, as a
        ``scorers.memorisation.TrainingSet``; computed once per (subset, seed)."""
        seed = seed if subset is not None else 0  # every seed's full split is the same
        key = (subset, seed)
        if key not in self._training_sets:
            images = load_dataset(self.dataset, data_dir=self.data_dir, subset=subset,
                                  seed=seed).train.images
            log.info("%s scorer: features of %d training images for the memorisation check",
                     self.kind, len(images))
            self._training_sets[key] = training_set(self.predict(images)[1])
        return self._training_sets[key]

    def reference_stats(self, n: int):
        """The real side of every score against the first ``n`` real reference images
        (``scorers.reference``), computed once per ``n``: an actor serves many trials
        against the same reference."""
        if n not in self._reference_stats:
            self._reference_stats[n] = reference_stats(self.real("reference", n)[1])
        return self._reference_stats[n]

    def __repr__(self) -> str:
        return (f"Scorer(kind={self.kind!r}, dataset={self.dataset!r}, id={self.scorer_id!r}, "
                f"folder={str(self.folder)!r})")
