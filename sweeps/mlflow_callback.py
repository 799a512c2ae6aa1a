"""The Tune callback that reports every trial of a sweep to the sweep's MLflow writer.

It runs in the driver and only translates Tune's events into ``SweepTracker`` calls: child
runs, their keys, and what happens while the tracking server is down all belong to the
writer (``sweeps.tracking``).

This module imports Ray (the callback is a ``ray.tune.Callback``); only the sweep imports it,
when it builds a Tuner. On ``--resume`` Tune does not use a new callback: it unpickles the one
the sweep started with from its own experiment state (ray-project/ray#41364), writer
included, so a resumed sweep logs through the same writer settings.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

from ray.tune import Callback

from sweeps.report import final_status
from sweeps.tracking import SweepTracker

log = logging.getLogger(__name__)


def numeric_metrics(result: dict) -> dict:
    return {k: float(v) for k, v in result.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and not k.startswith(("config/", "time_", "timestamp", "pid", "iterations_"))}


def trial_params(config: dict, constants: dict | None = None) -> dict:
    """A child run's params: the settings every trial shares, then its hyperparameters."""
    return {**(constants or {}), **config}


class MlflowSweepCallback(Callback):
    """Logs every trial of the sweep, through ``tracker``, as a nested child of its parent
    run, with the settings every trial shares (``constants``) among each trial's params."""

    def __init__(self, tracker: SweepTracker, constants: dict | None = None):
        self.tracker = tracker
        self.constants = dict(constants or {})

    def setup(self, **info):
        self.tracker.replay()

    def _params(self, trial) -> dict:
        return trial_params(trial.config, self.constants)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.tracker.trial_started(trial.trial_id, str(trial), self._params(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        step = int(result.get("round") or result.get("training_iteration") or 0)
        self.tracker.trial_result(trial.trial_id, str(trial), self._params(trial),
                                  numeric_metrics(result), step)

    def _ended(self, trial, failed: bool):
        last = trial.last_result or {}
        status = "error" if failed else final_status(last)
        folder = None
        if trial.checkpoint is not None and last.get("status") == "finished":
            folder = _local_checkpoint(trial.checkpoint, Path(self.tracker.sweep_dir))
        self.tracker.trial_ended(trial.trial_id, str(trial), self._params(trial), status,
                                 folder)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._ended(trial, failed=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._ended(trial, failed=True)

    def on_experiment_end(self, trials, **info):
        self.tracker.close()


def _local_checkpoint(checkpoint, sweep_dir: Path) -> str | None:
    """A local folder holding the checkpoint (copied from remote storage if need be)."""
    try:
        import pyarrow.fs
        if isinstance(checkpoint.filesystem, pyarrow.fs.LocalFileSystem):
            return checkpoint.path
        target = sweep_dir / "final_checkpoints" / Path(checkpoint.path).name
        return checkpoint.to_directory(str(target))
    except Exception as exc:
        log.warning("cannot reach checkpoint %s: %s", checkpoint, exc)
        return None
