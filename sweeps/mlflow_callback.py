"""The Tune callback that logs every trial of a sweep as a nested MLflow child run.

It runs in the driver. Child runs are keyed by Tune's trial id (tag ``gensweep.trial_id``), so
a resumed sweep finds and continues its runs instead of duplicating them. If the tracking
server goes away mid-sweep, training carries on: failed calls are kept in
``mlflow_pending.jsonl`` in the sweep folder and replayed, in order, when the server answers
again (``--resume`` replays what is left at the end). Each queued call names one of
``OPERATIONS``, the only calls the callback makes.

This module imports Ray (the callback is a ``ray.tune.Callback``); only the sweep imports it,
when it builds a Tuner. On ``--resume`` Tune does not use a new callback: it unpickles the one
the sweep started with from its own experiment state (ray-project/ray#41364), so
``__getstate__``/``__setstate__`` below are what a resumed sweep runs with.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

from ray.tune import Callback

from sweeps.report import final_status
from sweeps.tracking import ARTIFACTS, STATUS_TAG, TRIAL_TAG, bound_http_retries, server_answers

log = logging.getLogger(__name__)


# gensweep.status of a child run -> MLflow's run status
RUN_STATUS = {"finished": "FINISHED", "stopped": "KILLED"}


def numeric_metrics(result: dict) -> dict:
    return {k: float(v) for k, v in result.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and not k.startswith(("config/", "time_", "timestamp", "pid", "iterations_"))}


ROUND_METRICS = ("round", "step", "images_seen", "epoch", "diverged", "round_time_s",
                 "train_time_s", "images_per_s", "wall_time_s", "gpus_assigned")
ROUND_PREFIXES = ("train_", "test_", "probe_")


def is_round_metric(key: str) -> bool:
    """A number every round reports (losses, progress, the probe), not a final score."""
    return key in ROUND_METRICS or key.startswith(ROUND_PREFIXES)


def trial_params(config: dict, constants: dict | None = None) -> dict:
    """A child run's params: the settings every trial shares, then its hyperparameters
    (``_``-prefixed plumbing of sweeps written before plans existed is left out)."""
    return {**(constants or {}), **{k: v for k, v in config.items() if not k.startswith("_")}}


class MlflowSweepCallback(Callback):
    """Logs every trial of the sweep as a nested child of ``parent_run_id``."""

    def __init__(self, uri: str, experiment_id: str, parent_run_id: str, sweep_dir: str,
                 constants: dict | None = None):
        bound_http_retries()
        self.uri, self.experiment_id = uri, experiment_id
        self.parent_run_id, self.sweep_dir = parent_run_id, sweep_dir
        self.constants = dict(constants or {})
        self._client, self._runs, self._down = None, {}, False

    @classmethod
    def for_sweep(cls, tracker, sweep_dir, constants: dict | None = None):
        """The callback of ``tracker``'s parent run (a ``sweeps.tracking.SweepTracker``),
        with the settings every trial shares (``constants``) among each trial's params."""
        return cls(tracker.uri, tracker.experiment_id, tracker.parent_run_id, str(sweep_dir),
                   constants)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_client"], state["_runs"], state["_down"] = None, {}, False
        return state

    def __setstate__(self, state):
        bound_http_retries()
        self.__dict__.update({"_down": False, "constants": {}, **state})

    @property
    def client(self):
        if self._client is None:
            from sweeps.stores import mlflow_client
            self._client = mlflow_client(self.uri)
        return self._client

    @property
    def pending_path(self) -> Path:
        return Path(self.sweep_dir) / "mlflow_pending.jsonl"

    def _keep(self, op: str, args) -> None:
        with open(self.pending_path, "a") as fh:
            fh.write(json.dumps({"op": op, "args": args}, default=str) + "\n")

    def _safe(self, op: str, *args) -> bool:
        """Run a client call; on failure keep it for replay instead of failing the sweep.

        After one failure the server counts as down: later calls are queued after a short
        ``/health`` probe instead of each waiting out the client's retries. Queued calls
        are replayed before a new one, so MLflow receives them in order."""
        if self._down and not server_answers(self.uri):
            self._keep(op, args)
            return False
        if self.pending_path.is_file():
            self.replay_pending()
            if self.pending_path.is_file() and not server_answers(self.uri):
                self._down = True
                self._keep(op, args)
                return False
        self._down = False
        try:
            OPERATIONS[op](self, *args)
            return True
        except Exception as exc:  # the sweep must outlive the tracking server
            self._down = True
            log.warning("MLflow %s failed (%s); kept for replay in %s", op, exc,
                        self.pending_path)
            self._keep(op, args)
            return False

    def replay_pending(self) -> int:
        """Retry the calls that failed earlier, in order; returns how many are still pending.

        Stops at the first failure while the server is down (the rest would only wait out
        their timeouts); a call the live server rejects is kept and the replay goes on."""
        if not self.pending_path.is_file():
            return 0
        ops = [json.loads(l) for l in self.pending_path.read_text().splitlines() if l]
        still = []
        for i, entry in enumerate(ops):
            try:
                OPERATIONS[entry["op"]](self, *entry["args"])
            except Exception as exc:
                if not server_answers(self.uri):
                    still.extend(ops[i:])
                    break
                log.warning("MLflow rejected a queued %s call (%s); it stays in %s",
                            entry["op"], exc, self.pending_path)
                still.append(entry)
        tmp = self.pending_path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(e) + "\n" for e in still))
        os.replace(tmp, self.pending_path)
        if not still:
            self.pending_path.unlink()
        return len(still)

    # --- the operations (each idempotent, so a replay never duplicates) ---------------
    def _run_id(self, trial_id: str, trial_name: str, params: dict) -> str:
        if trial_id in self._runs:
            return self._runs[trial_id]
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=(f"tags.`{TRIAL_TAG}` = '{trial_id}' and "
                           f"tags.`mlflow.parentRunId` = '{self.parent_run_id}'"))
        from mlflow.entities import Param
        if found:
            # The server may have died between create_run and the params: add what is missing.
            run_id = found[0].info.run_id
            missing = {k: v for k, v in params.items() if k not in found[0].data.params}
            if missing:
                self.client.log_batch(
                    run_id, params=[Param(k, str(v)) for k, v in missing.items()])
        else:
            run_id = self.client.create_run(
                self.experiment_id, run_name=trial_name,
                tags={"mlflow.parentRunId": self.parent_run_id, TRIAL_TAG: trial_id,
                      STATUS_TAG: "running"}).info.run_id
            self.client.log_batch(
                run_id, params=[Param(k, str(v)) for k, v in params.items()])
        self._runs[trial_id] = run_id
        return run_id

    def _op_start(self, trial_id, trial_name, params):
        self._run_id(trial_id, trial_name, params)

    def _op_metrics(self, trial_id, trial_name, params, metrics, step, ts_ms):
        from mlflow.entities import Metric
        run_id = self._run_id(trial_id, trial_name, params)
        # A round's numbers are logged once: the final report repeats the last round's beside
        # the scores, and a trial restored from its checkpoint may report a round again.
        # MLflow itself says which rounds it has, so this holds across driver restarts.
        if any(m.step == step for m in self.client.get_metric_history(run_id, "round")):
            metrics = {k: v for k, v in metrics.items() if not is_round_metric(k)}
        batch = [Metric(k, v, ts_ms, step) for k, v in metrics.items()]
        for i in range(0, len(batch), 900):  # MLflow caps a batch at 1000 metrics
            self.client.log_batch(run_id, metrics=batch[i:i + 900])

    def _op_finish(self, trial_id, trial_name, params, status, checkpoint_dir):
        run_id = self._run_id(trial_id, trial_name, params)
        if checkpoint_dir and Path(checkpoint_dir).is_dir():
            for name in ARTIFACTS:
                path = Path(checkpoint_dir) / name
                if path.is_file():
                    self.client.log_artifact(
                        run_id, str(path), "samples" if name.endswith(".png") else "checkpoint")
        self.client.set_tag(run_id, STATUS_TAG, status)
        self.client.set_terminated(run_id, RUN_STATUS.get(status, "FAILED"))

    # --- Tune hooks ----------------------------------------------------------------------
    def setup(self, **info):
        self.replay_pending()

    def _params(self, trial) -> dict:
        return trial_params(trial.config, self.constants)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._safe("start", trial.trial_id, str(trial), self._params(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        step = int(result.get("round") or result.get("training_iteration") or 0)
        self._safe("metrics", trial.trial_id, str(trial), self._params(trial),
                   numeric_metrics(result), step, int(time.time() * 1000))

    def _finish(self, trial, failed: bool):
        last = trial.last_result or {}
        status = "error" if failed else final_status(last)
        folder = None
        if trial.checkpoint is not None and last.get("status") == "finished":
            folder = _local_checkpoint(trial.checkpoint, Path(self.sweep_dir))
        self._safe("finish", trial.trial_id, str(trial), self._params(trial), status, folder)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial, failed=False)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._finish(trial, failed=True)

    def on_experiment_end(self, trials, **info):
        left = self.replay_pending()
        if left:
            log.warning("%d MLflow calls could not be delivered; they stay in %s and are "
                        "replayed by `--resume`", left, self.pending_path)


# The calls a queued entry may name: nothing else is ever replayed.
OPERATIONS = {"start": MlflowSweepCallback._op_start,
              "metrics": MlflowSweepCallback._op_metrics,
              "finish": MlflowSweepCallback._op_finish}


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
