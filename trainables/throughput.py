"""How many training images per second a trial's model trains on this machine's CPU.

The sweep's estimate scales from this, not from a rate measured on another CPU: the same
2-core VM type comes with and without AVX-512, and the quick sweep's trials ran about 2.3
times slower on the latter. The steps are the trial's own (``trainables.loop.train_steps``
on the model, networks and batch size a trial builds), on real images; the first step
(allocation, lazy initialisation) is left out of the timing.
"""
from __future__ import annotations

import time

import numpy as np


def training_rate(cfg, steps: int = 12, threads: int = 1) -> float:
    """Training images per second of ``cfg``'s model (a ``TrainConfig``) on the CPU with
    ``threads`` threads, timed over ``steps`` optimizer steps after a first one."""
    import torch

    from trainables.datasets import load_dataset
    from trainables.loop import make_optimizers, train_steps
    from trainables.models import build_model

    if steps < 1:
        raise ValueError(f"steps must be at least 1; got {steps}")
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        need = (steps + 1) * cfg.batch_size
        data = load_dataset(cfg.dataset, cfg.data_dir, subset=max(need, 1000), seed=cfg.seed)
        x = torch.from_numpy(data.train.images[:need].astype(np.float32) / 255.0)[:, None]
        labels = torch.from_numpy(data.train.labels[:need].astype(np.int64))
        torch.manual_seed(cfg.seed)
        model = build_model(cfg)
        optimizers = make_optimizers(model, cfg.model, cfg.lr)
        extra = {"labels": labels} if cfg.conditional else {}
        train_steps(model, cfg.model, optimizers, x, cfg.batch_size, cfg.seed, 0, 1, **extra)
        started = time.perf_counter()
        _, images = train_steps(model, cfg.model, optimizers, x, cfg.batch_size, cfg.seed, 1,
                                steps, **extra)
        return images / (time.perf_counter() - started)
    finally:
        torch.set_num_threads(before)
