"""How long a sweep takes: ``estimate(...) -> Estimate``, by phase, in minutes.

The rates come from the preset, or from ``sweeps.calibrate``'s measurement on this machine
where there is one. ``sweeps.plan`` stores the estimate in the plan, and ``sweeps.progress``
compares each phase with it while the sweep runs; ``trial_rate`` is the one place that says
which training rate both assume.
"""
from __future__ import annotations

from typing import NamedTuple

from scorers.spec import KINDS
from sweeps.calibrate import Speeds
from sweeps.presets import Preset

# From the start to the first trial, and from the last to the exit, with cached scorers and
# a cached real-data ceiling: Python, Ray, the actors, the summary (0.4 min measured on the
# 2-core dev VM, 2026-12-04). New scorers also mean a new ceiling (sweeps/ceiling.py: 37-47 s
# measured there); so does a first sweep after its inputs change (sweeps/ceiling.py), which
# the estimate does not see: it is then 0.8 min short.
STARTUP_MINUTES = 0.5
CEILING_MINUTES = 0.8


def trial_rate(preset: Preset, model: str, gpu: bool, speeds: Speeds | None = None) -> float:
    """Images per second a trial trains at: measured on this machine where ``speeds`` is
    given, else the preset's rate for ``model`` on a GPU or a CPU."""
    if speeds is not None:
        return speeds.images_per_s
    return (preset.images_per_s_gpu if gpu else preset.images_per_s_cpu)[model]


class Estimate(NamedTuple):
    """Minutes: the expected case, the most it can take, and the expected case by phase
    (ESTIMATE_PHASES; ``setup`` holds Ray, the actors, a new real-data ceiling and the
    report at the end)."""

    expected: float
    worst: float
    phases: dict


# The phases the estimate counts, in the order they run (sweeps.progress follows them).
ESTIMATE_PHASES = ("scorers", "setup", "search", "confirmation")


def estimate(preset: Preset, model: str, dataset: str, trials: int, concurrency: int,
             gpu: bool, scheduler: str, scorers_to_build: int,
             confirmations: int = 0, speeds: Speeds | None = None) -> Estimate:
    """Start-up, scorer fine-tunes still to do (and the real-data ceiling of new scorers),
    the trials in waves of ``concurrency``, and the ``confirmations`` (whole trials, in waves
    of their own). With 8 trials ASHA's rungs are thin: in the quick sweeps of 2026-12-05 it
    kept 64-82% of the other trials' training and scored half to five sevenths of them; on
    2026-12-07 (docs/guide.md, "How long a sweep takes") about 96% and six sevenths (MNIST
    VAE-GAN) and about 60% and three sevenths (MNIST VAE). The estimate counts on 75% and
    60%; the paper point always runs to the end.

    ``speeds`` (measured here, ``sweeps.calibrate``) replace the preset's rates: a trial's
    training rate scales its training and its scoring alike, and the fine-tunes take the
    minutes measured for them."""
    rate = trial_rate(preset, model, gpu, speeds)
    # scoring scales with the training rate: both are the same machine's matrix maths
    score_min = preset.score_seconds / 60 * trial_rate(preset, model, gpu) / rate
    scorers = preset.scorer_minutes(dataset, gpu) * scorers_to_build / len(KINDS)
    if speeds is not None and scorers_to_build:
        scorers = sum(speeds.scorer_minutes.values())
    train_min = preset.trial_images() / rate / 60
    start = STARTUP_MINUTES + (CEILING_MINUTES if scorers_to_build else 0.0)
    full = train_min + score_min
    waves = trials / max(concurrency, 1)
    confirm = -(-confirmations // max(concurrency, 1)) * full
    worst_search = -(-trials // max(concurrency, 1)) * full
    search = worst_search
    if scheduler == "asha" and trials > concurrency:
        others = trials - 1  # besides the paper point
        kept = max(1.0, others * 0.6)  # trials that run to the end and are scored
        # perfectly packed, plus the tail: while the last trial runs, the lanes that have
        # nothing left idle for half a trial on average
        tail = full / 2 * (concurrency - 1) / concurrency
        search = max((full + train_min * others * 0.75 + score_min * kept)
                     / max(concurrency, 1) + tail, full * min(waves, 1.0))
    phases = dict(zip(ESTIMATE_PHASES, (scorers, start, search, confirm)))
    return Estimate(sum(phases.values()), start + scorers + worst_search + confirm, phases)
