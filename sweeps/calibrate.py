"""This machine's speeds, measured before the estimate is printed.

The presets' rates were measured on one CPU; the same 2-core VM type also comes without
AVX-512, where a quick MNIST sweep took 53 min against an estimate of 20-23. So a sweep whose
trials run on this machine's CPU first times a few steps of what it will run here:

* a trial's training steps (``trainables.throughput``): the model, networks and batch size
  of the search, on the trial's threads. The ratio to the preset's rate scales the training
  and the scoring of every trial (both are the same convolutions on the same cores);
* each scorer still to fine-tune (``scorers.speed_probe``): a few of its own training
  batches and a prediction pass, scaled to its images and epochs.

A sweep on GPUs or on a cluster's other nodes keeps the preset's rates: its trials do not
run where the driver could time them. The measuring takes seconds for a cached sweep (a
trial's steps) and about a minute when an Inception fine-tune is ahead (TensorFlow's start).
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

log = logging.getLogger(__name__)

TRIAL_STEPS = 12
SCORER_BATCHES = 4


@dataclass(frozen=True)
class Speeds:
    """What was measured here. ``images_per_s``: one trial's training rate; ``scorer_minutes``:
    the fine-tunes still to do, by kind; ``seconds``: what measuring took."""

    images_per_s: float
    scorer_minutes: dict
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None) -> "Speeds | None":
        return None if d is None else cls(**d)


def measured_here(request, cluster_gpus: float) -> bool:
    """Whether this sweep's trials run on this machine's CPU, where they can be timed: a
    local Ray (no ``--address``) without GPUs."""
    return request.address is None and cluster_gpus == 0


def middle(values: tuple):
    return values[len(values) // 2]


def measure_speeds(preset, model: str, request, threads: float, specs: list) -> Speeds:
    """Time ``TRIAL_STEPS`` of a search trial of ``model`` under ``preset`` on ``threads``
    threads, and ``SCORER_BATCHES`` batches of each scorer spec in ``specs`` (the ones to
    fine-tune). One batch size is timed, the middle of the preset's: trials at smaller
    batches train fewer images a second, at larger ones more."""
    from scorers.speed_probe import finetune_minutes, time_scorer
    from trainables.config import TrainConfig
    from trainables.throughput import training_rate

    started = time.perf_counter()
    # The scorers first: the ViT module sets torch's OpenMP spin before torch is imported
    # (scorers.vit), which its fine-tune in this process needs, and the trial's steps would
    # import torch without it.
    minutes = {}
    for spec in specs:
        per_image = time_scorer(spec, SCORER_BATCHES, data_dir=request.data_dir)
        minutes[spec.kind] = round(finetune_minutes(spec, **per_image), 2)
        log.info("the %s fine-tune will take about %.1f min here (%.1f ms per training image)",
                 spec.kind, minutes[spec.kind], per_image["train_s"] * 1e3)
    cfg = TrainConfig(model=model, dataset=request.dataset, arch=preset.arch,
                      batch_size=middle(preset.batch_sizes),
                      latent_dim=middle(preset.latent_dims), data_dir=request.data_dir,
                      conditional=request.conditional == "on", seed=request.seed)
    rate = training_rate(cfg, TRIAL_STEPS, threads=max(1, round(threads)))
    log.info("a %s trial trains %.0f images/s here (%d steps of batch %d)", model, rate,
             TRIAL_STEPS, cfg.batch_size)
    return Speeds(images_per_s=round(rate, 1), scorer_minutes=minutes,
                  seconds=round(time.perf_counter() - started, 1))
