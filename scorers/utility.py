"""Is synthetic data worth training on? The classification accuracy score (CAS; Ravuri &
Vinyals 2019), also called train-on-synthetic / test-on-real accuracy.

One fixed small CNN, trained the same way on N labelled images, then tested on the real test
set (all 10,000 images): trained on N synthetic images, its accuracy is the CAS; trained on N
real training images (a stratified, seeded sample), it is the ceiling the CAS is read
against (``cas_…_ratio`` = CAS / ceiling). Nothing in the recipe depends on the images, so
the two numbers compare data, not training luck: same architecture, seed, optimiser, batch
size and steps.

The network: Conv(32, 3x3) ReLU MaxPool(2), Conv(64, 3x3) ReLU MaxPool(2), Linear(1600, 128)
ReLU, Linear(128, 10); 225,034 parameters. The recipe: Adam, lr 1e-3, batch 64, ``EPOCHS``
passes over the N images, seed ``SEED``, float32 on the CPU (results do not depend on the
device the sweep runs on). At N = 5,000 it takes about 10 s on one CPU thread.
"""
from __future__ import annotations

import numpy as np

from scorers.images import as_unit_float
from scorers.keys import cas_key, ceiling_key
from trainables.datasets import stratified_subset

EPOCHS = 4
BATCH = 64
LR = 1e-3
SEED = 0
N_CLASSES = 10


def _network():
    from torch import nn

    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(), nn.Linear(128, N_CLASSES))


def check_labelled(images, labels, name: str = "images") -> tuple[np.ndarray, np.ndarray]:
    """(N, 28, 28) uint8 images and (N,) integer labels in 0..9; ValueError otherwise."""
    x = as_unit_float(images, name)
    y = np.asarray(labels)
    if y.ndim != 1 or len(y) != len(x):
        raise ValueError(f"{name}: {len(x)} images but labels of shape {y.shape}; expected one "
                         f"label per image")
    if not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() >= N_CLASSES:
        raise ValueError(f"{name}: labels must be integers in 0..{N_CLASSES - 1}; got "
                         f"{y.dtype} in [{y.min()}, {y.max()}]")
    return x, y.astype(np.int64)


def train_classifier(images, labels, seed: int = SEED, steps: int | None = None):
    """The fixed CNN trained on ``images`` / ``labels`` with the fixed recipe: ``EPOCHS``
    passes, or exactly ``steps`` batches (passes over the images, the last one cut short),
    so that sets of different sizes can get the same training."""
    import torch

    x, y = check_labelled(images, labels)
    per_pass = -(-len(x) // BATCH)
    steps = EPOCHS * per_pass if steps is None else steps
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = _network()
        opt = torch.optim.Adam(net.parameters(), lr=LR)
        gen = torch.Generator().manual_seed(seed)
        xt, yt = torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)
        loss_fn = torch.nn.CrossEntropyLoss()
        net.train()
        done = 0
        while done < steps:
            order = torch.randperm(len(xt), generator=gen)
            for start in range(0, len(xt), BATCH):
                if done == steps:
                    break
                idx = order[start:start + BATCH]
                opt.zero_grad()
                loss_fn(net(xt[idx]), yt[idx]).backward()
                opt.step()
                done += 1
    return net.eval()


def accuracy(net, images, labels) -> float:
    import torch

    x, y = check_labelled(images, labels)
    with torch.inference_mode():
        pred = torch.cat([net(torch.from_numpy(x[i:i + 1000]).unsqueeze(1)).argmax(1)
                          for i in range(0, len(x), 1000)])
    return float((pred.numpy() == y).mean())


def classification_accuracy_score(train_images, train_labels, test_images, test_labels,
                                  seed: int = SEED) -> float:
    """Test accuracy of the fixed CNN trained on the given (synthetic or real) images."""
    return accuracy(train_classifier(train_images, train_labels, seed), test_images,
                    test_labels)


def real_ceiling(dataset, n: int, seed: int = SEED) -> float:
    """The same CNN trained on ``n`` real training images (stratified, seeded) of ``dataset``
    (a ``trainables.datasets.Dataset``): what a perfect generator's data would give."""
    images, labels = stratified_subset(dataset.train.images, dataset.train.labels, n, seed)
    return classification_accuracy_score(images, labels, dataset.test.images,
                                         dataset.test.labels, seed)


def cas_with_ceiling(images, labels, dataset, n: int) -> dict:
    """``cas_L``, ``cas_L_ratio`` and ``ceiling_cas_L`` of n labelled images of ``dataset``
    (a ``trainables.datasets.Dataset``): the accuracy, and the same CNN on n real images."""
    acc = classification_accuracy_score(images[:n], labels[:n], dataset.test.images,
                                        dataset.test.labels)
    ceiling = real_ceiling(dataset, n)
    return {cas_key(n): acc, cas_key(n, ratio=True): acc / ceiling,
            ceiling_key(cas_key(n)): ceiling}
