"""How fast this machine fine-tunes and runs a scorer: a few real batches, timed.

A sweep's estimate is only as good as its speeds, and these differ by a factor of three
between CPUs that look alike (AVX-512 against AVX2 only: the quick Inception fine-tune took 7.4
min on one and 23 on the other). So before a sweep that has a scorer to fine-tune, the
scorer's own network trains ``batches`` batches of the spec's size on the spec's data, and
the time between the end of the first batch and the end of the last is divided by the
images they held; the first batch (graph tracing, allocation) is left out. Prediction is
timed the same way, on a second call.
"""
from __future__ import annotations

import time

import numpy as np

from scorers.spec import TrainSpec, backend
from trainables.datasets import load_dataset


def finetune_minutes(spec: TrainSpec, train_s: float, predict_s: float,
                     setup_s: float = 0.0) -> float:
    """Minutes a fine-tune of ``spec`` takes at ``train_s`` seconds per training image,
    ``predict_s`` per predicted one and ``setup_s`` once (``scorers.finetuning.train_scorer``):
    every epoch trains the subset, re-estimates Inception's BatchNorm statistics (a forward
    pass, costed as a prediction) and predicts the evaluation images; at the end the
    degraded test images are predicted once per check (``scorers.degrade.robustness``)."""
    from scorers import degrade
    from scorers.realsplit import TEST_SET_SIZE

    spec = spec.resolved()
    train_images = spec.subset or 60_000
    eval_images = spec.eval_subset or TEST_SET_SIZE
    recal = min(train_images, getattr(backend(spec.kind), "BN_RECAL_IMAGES", 0))
    robust = min(eval_images, degrade.ROBUSTNESS_IMAGES) * len(degrade.CHECKS)
    per_epoch = train_images * train_s + (eval_images + recal) * predict_s
    return (setup_s + spec.epochs * per_epoch + robust * predict_s) / 60


def time_scorer(spec: TrainSpec, batches: int = 4, data_dir=None) -> dict:
    """``{"train_s", "predict_s", "setup_s"}``: seconds per image to fine-tune and to predict
    with ``spec``'s network on this machine (``batches`` timed training batches), and the
    seconds of its one-off costs (building the network, tracing the training and the
    inference graphs)."""
    if batches < 1:
        raise ValueError(f"batches must be at least 1; got {batches}")
    spec = spec.resolved()
    impl = backend(spec.kind)
    size = spec.batch_size
    ds = load_dataset(spec.dataset, data_dir=data_dir, subset=(batches + 1) * size * 2,
                      seed=spec.seed)
    x = ds.train.images[:(batches + 1) * size].astype(np.float32) / np.float32(255.0)
    y = ds.train.labels[:(batches + 1) * size]
    started = time.perf_counter()
    model = impl.build(spec.init, seed=spec.seed)
    stamps: list[float] = []
    impl.fit(model, x, y, epochs=1, batch_size=size, lr=spec.lr, seed=spec.seed,
             epoch_end=lambda epoch, logs: None, progress=False, schedule=spec.schedule,
             batch_end=lambda: stamps.append(time.perf_counter()))
    train_s = (stamps[-1] - stamps[0]) / (len(stamps) - 1) / size
    setup_s = stamps[0] - started - train_s * size
    n = min(len(x), impl.PREDICT_BATCH)
    first = time.perf_counter()
    impl.predict(model, x[:n])  # the first call builds the inference graph
    second = time.perf_counter()
    impl.predict(model, x[:n])
    predict_s = (time.perf_counter() - second) / n
    setup_s += second - first - predict_s * n
    return {"train_s": train_s, "predict_s": predict_s, "setup_s": max(0.0, setup_s)}
