"""Does synthetic data help where real data is scarce? The augmentation utility.

The question a data synthesiser asks: with only the n labelled real images per class a
generator was trained on, does adding N of its labelled samples train a better classifier?
The fixed CNN of ``scorers.utility`` is trained three ways, each for the same number of
batches (``EPOCHS`` passes over the largest set), so that only the data differs:

* ``real``: the scarce real images alone;
* ``augmented``: the scarce real images plus N generated ones;
* ``more real``: the scarce real images plus N other real training images, what a perfect
  generator's samples would add (the ceiling).

Each is tested on the real test set's reference half (``scorers.realsplit``), once per
classifier seed (``SEEDS``). Reported (``scorers.keys.augment_key``, L the label of N):
each arm's accuracy (mean and SD over seeds), the gain of augmenting over real alone (its
mean and SD over seeds, paired by seed), and the share of the real-data gain that the
generated images recover, ``gain / (more real - real)`` (1 = as good as real images,
0 = no help, below 0 = harmful).
"""
from __future__ import annotations

import numpy as np

from scorers import realsplit
from scorers.keys import augment_key
from scorers.utility import BATCH, EPOCHS, accuracy, check_labelled, train_classifier

SEEDS = (0, 1, 2)


def other_real(train_images, train_labels, scarce_index: np.ndarray, n: int, seed: int = 0):
    """``n`` real training images, class-balanced, none of them among ``scarce_index``
    (the images the generator trained on); seeded."""
    rng = np.random.default_rng(seed)
    left = np.setdiff1d(np.arange(len(train_labels)), scarce_index)
    per_class = np.full(10, n // 10)
    per_class[: n % 10] += 1
    pick = np.concatenate([rng.choice(left[train_labels[left] == c], k, replace=False)
                           for c, k in enumerate(per_class)])
    return train_images[pick], train_labels[pick]


def augmentation_utility(real, synthetic, more_real, test, seeds=SEEDS) -> dict[str, float]:
    """The three arms' accuracies and the gain (see the module doc). Each argument is an
    (images, labels) pair: the scarce ``real`` set, N ``synthetic`` and N ``more_real``
    images, and the ``test`` images."""
    real, synthetic, more_real, test = (check_labelled(*pair, name) for pair, name in (
        (real, "real"), (synthetic, "synthetic"), (more_real, "more_real"), (test, "test")))
    n = len(synthetic[0])
    if len(more_real[0]) != n:
        raise ValueError(f"{n} synthetic but {len(more_real[0])} more real images: the two "
                         f"arms compare the same number of added images")
    steps = EPOCHS * -(-(len(real[0]) + n) // BATCH)
    arms = {"real": real,
            "augmented": tuple(np.concatenate(p) for p in zip(real, synthetic)),
            "more_real": tuple(np.concatenate(p) for p in zip(real, more_real))}
    acc = {arm: np.array([accuracy(train_classifier(*data, seed=s, steps=steps), *test)
                          for s in seeds]) for arm, data in arms.items()}
    gain, room = acc["augmented"] - acc["real"], acc["more_real"] - acc["real"]
    out = {}
    for arm, values in {**acc, "gain": gain}.items():
        out[augment_key(n, arm)] = float(values.mean())
        out[augment_key(n, arm, sd=True)] = float(values.std(ddof=1)) if len(seeds) > 1 \
            else float("nan")
    out[augment_key(n, "recovered")] = (float(gain.mean() / room.mean()) if room.mean() > 0
                                        else float("nan"))
    return out


def reference_test_set(dataset) -> tuple[np.ndarray, np.ndarray]:
    """The real test images the classifiers are tested on: the reference half."""
    idx = realsplit.indices("reference")
    return dataset.test.images[idx], dataset.test.labels[idx]
