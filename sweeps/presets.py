"""Presets size a sweep: how much data, which networks, how many epochs, how the scorers train.

``paper``: full data, the paper's networks, epochs around the paper's 67 / 85, scorers with the
paper's fine-tuning settings: GPU work. ``quick``: a real sweep that fits a 2-core CPU in about
20 minutes, scorer fine-tuning included. ``smoke``: 2 trials of 1 epoch on tiny data, scored on
200 / 500 samples, for tests.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ScorerSpec:
    """How a scorer is fine-tuned if no cached one matches (``None`` = the scorer's default)."""

    epochs: int | None = None
    subset: int | None = None
    eval_subset: int | None = None


@dataclass(frozen=True)
class Preset:
    name: str
    arch: str
    subset: int | None
    test_subset: int | None
    epochs: tuple[int, int]  # the search range (inclusive)
    num_samples: int
    ns: tuple[int, ...]  # sample counts scored per trial
    inception: ScorerSpec = field(default_factory=ScorerSpec)
    vit: ScorerSpec = field(default_factory=ScorerSpec)
    # Seconds per epoch of a trial and per scorer fine-tune, for the printed duration estimate.
    epoch_seconds_cpu: float = 3.0
    epoch_seconds_gpu: float = 3.0
    scorer_minutes_cpu: float = 1.0
    scorer_minutes_gpu: float = 1.0
    score_seconds: float = 30.0

    def estimate_minutes(self, num_samples: int, concurrent: int, gpu: bool) -> float:
        """A rough wall-clock estimate: trials run in waves of ``concurrent``."""
        per_epoch = self.epoch_seconds_gpu if gpu else self.epoch_seconds_cpu
        mean_epochs = sum(self.epochs) / 2
        trial = per_epoch * mean_epochs + self.score_seconds
        waves = -(-num_samples // max(concurrent, 1))
        scorers = self.scorer_minutes_gpu if gpu else self.scorer_minutes_cpu
        return scorers + waves * trial / 60


PRESETS = {
    "paper": Preset(
        "paper", arch="paper", subset=None, test_subset=None, epochs=(20, 100), num_samples=20,
        ns=(1000, 5000), inception=ScorerSpec(), vit=ScorerSpec(),
        epoch_seconds_cpu=700.0, epoch_seconds_gpu=12.0,
        scorer_minutes_cpu=600.0, scorer_minutes_gpu=25.0, score_seconds=20.0),
    "quick": Preset(
        "quick", arch="small", subset=5000, test_subset=1000, epochs=(2, 6), num_samples=6,
        ns=(1000, 5000),
        inception=ScorerSpec(epochs=1, subset=3000, eval_subset=2000),
        vit=ScorerSpec(epochs=2, subset=10000, eval_subset=2000),
        # Measured on the 2-core dev VM (README): 13 s per epoch, 60 s to score 5,000 samples
        # with both scorers, 4.1 min to fine-tune both; one trial at a time beside the actors.
        epoch_seconds_cpu=13.0, epoch_seconds_gpu=1.0,
        scorer_minutes_cpu=4.5, scorer_minutes_gpu=1.0, score_seconds=60.0),
    # Scores 200 / 500 samples, not 1K / 5K: on a CPU, Inception features for 5,000 images and
    # the 2048-d FID / KID cost minutes, and smoke sweeps exist to exercise the plumbing.
    "smoke": Preset(
        "smoke", arch="small", subset=500, test_subset=200, epochs=(1, 1), num_samples=2,
        ns=(200, 500),
        inception=ScorerSpec(epochs=1, subset=500, eval_subset=500),
        vit=ScorerSpec(epochs=1, subset=1000, eval_subset=500),
        epoch_seconds_cpu=3.0, epoch_seconds_gpu=1.0,
        scorer_minutes_cpu=1.5, scorer_minutes_gpu=0.5, score_seconds=40.0),
}


def default_preset(cluster_gpus: float) -> str:
    """``paper`` when the cluster has GPUs, ``quick`` otherwise."""
    return "paper" if cluster_gpus > 0 else "quick"
