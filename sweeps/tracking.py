"""MLflow logging of a sweep: one parent run per sweep, one nested child run per trial.

All logging happens in the driver, through the tracking URI: trials on other nodes never
write MLflow files themselves. ``SweepTracker`` is the one writer: the experiment, the parent
run, and (called by the Tune callback in ``sweeps.mlflow_callback``) the child runs.

One failure strategy for every call after the set-up: if the tracking server goes away,
the sweep carries on, and each call it misses is kept in ``mlflow_pending.jsonl`` in the
sweep folder and replayed, in order, when the server answers again (``--resume`` replays
what is left). Each kept call names one of ``OPERATIONS``, the only calls ever replayed, and
each is idempotent, so a replay never duplicates a run, a param or a round's metrics.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

from sweeps.databases import mlflow_client
from sweeps.mlflow_datasets import trial_inputs
from sweeps.model_registry import register_generator, supports_registry
from sweeps.pending_calls import PendingCalls
from sweeps.redact import redact_url
from sweeps.tracking_server import bound_http_retries, server_answers

log = logging.getLogger(__name__)

ROLE_TAG = "gensweep.role"
SWEEP_TAG = "gensweep.sweep_id"
TRIAL_TAG = "gensweep.trial_id"
STATUS_TAG = "gensweep.status"
RANK_TAG = "gensweep.rank"
CONFIRMS_TAG = "gensweep.confirms"  # a confirmation trial's run: the search trial it repeats
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
# gensweep.status of a child run -> MLflow's run status
RUN_STATUS = {"finished": "FINISHED", "stopped": "KILLED"}
# A number every round reports (losses, progress, the probe), not a final score.
ROUND_METRICS = ("round", "step", "images_seen", "epoch", "diverged", "round_time_s",
                 "train_time_s", "images_per_s", "wall_time_s", "gpus_assigned")
ROUND_PREFIXES = ("train_", "test_", "probe_")
ARTIFACTS = ("samples_grid.png", "memorisation_pairs.png", "model.safetensors", "state.json",
             "samples.npz")
def is_round_metric(key: str) -> bool:
    return key in ROUND_METRICS or key.startswith(ROUND_PREFIXES)


class SweepTracker:
    """The sweep's MLflow writer: its experiment, its parent run and its trials' child runs.

    ``attach``, ``open`` and ``delete_children`` set the sweep up and must succeed (a sweep
    that cannot reach its store stops there); every later call goes through ``call``, which
    keeps what a dead server misses for replay. Pickled with the Tune callback, it carries
    its settings only (a fresh client is made on first use)."""

    def __init__(self, uri: str, sweep_dir, experiment_id: str | None = None,
                 parent_run_id: str | None = None):
        self.uri, self.sweep_dir = uri, str(sweep_dir)
        self.experiment_id, self.parent_run_id = experiment_id, parent_run_id
        self._client, self._runs, self._down = None, {}, False
        self.registered = None  # models:/NAME/VERSION once the winner is registered
        bound_http_retries()

    def __getstate__(self):
        return {**self.__dict__, "_client": None, "_runs": {}, "_down": False}

    def __setstate__(self, state):
        bound_http_retries()
        self.__dict__.update(state)

    @property
    def client(self):
        if self._client is None:
            self._client = mlflow_client(self.uri)
        return self._client

    @property
    def pending(self) -> PendingCalls:
        return PendingCalls(self.sweep_dir)

    @property
    def journal_path(self) -> Path:
        return self.pending.path

    # --- set-up (must succeed) -----------------------------------------------------------
    def attach(self, experiment_id: str, parent_run_id: str) -> None:
        """Continue the parent run a resumed sweep recorded. The client is made now, so a
        local store that cannot be opened stops the sweep here (``OSError``) rather than
        passing for a tracking server that is down in every later call."""
        self.experiment_id, self.parent_run_id = experiment_id, parent_run_id
        self.client  # noqa: B018 - made for its check

    def open(self, experiment: str, run_name: str, params: dict, tags: dict,
             sweep_key: str) -> None:
        """Find or create the experiment, then the sweep's parent run. A parent run already
        tagged with ``sweep_key`` (a sweep killed after creating it, before recording it) is
        reused: a sweep never gets two parent runs."""
        from mlflow.entities import Param, RunTag

        exp = self.client.get_experiment_by_name(experiment)
        if exp is not None:
            self.experiment_id = exp.experiment_id
        else:
            location = None
            if not self.uri.startswith(("http://", "https://", "databricks")):
                location = (Path(self.sweep_dir).resolve() / "mlartifacts").as_uri()
            self.experiment_id = self.client.create_experiment(experiment,
                                                               artifact_location=location)
        # MLflow 3's UI opens an experiment of unknown kind on its GenAI overview (traces,
        # token usage); this kind makes it open on the training runs.
        self.client.set_experiment_tag(self.experiment_id, EXPERIMENT_KIND_TAG,
                                       "custom_model_development")
        found = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{SWEEP_TAG}` = '{sweep_key}' and "
                                                f"tags.`{ROLE_TAG}` = 'sweep'")
        if found:
            self.parent_run_id = found[0].info.run_id
            missing = {k: v for k, v in params.items() if k not in found[0].data.params}
        else:
            run = self.client.create_run(
                self.experiment_id, run_name=run_name,
                tags={**{k: str(v) for k, v in tags.items()}, SWEEP_TAG: sweep_key,
                      ROLE_TAG: "sweep"})
            self.parent_run_id, missing = run.info.run_id, params
        self.client.log_batch(self.parent_run_id,
                              params=[Param(k, str(v)) for k, v in missing.items()],
                              tags=[RunTag(ROLE_TAG, "sweep")])

    def delete_children(self, confirmations_only: bool = False) -> int:
        """Delete the parent's child runs (with ``confirmations_only``, those of confirmation
        trials), and the kept calls about them (of trials a restarted phase will not
        continue), so a replay cannot bring them back."""
        children = self._children()
        if confirmations_only:
            children = [r for r in children if CONFIRMS_TAG in r.data.tags]
        for run in children:
            self.client.delete_run(run.info.run_id)
        kept = [e for e in self.pending.read() if e["op"] not in TRIAL_OPERATIONS
                or (confirmations_only and "confirms" not in e["args"][2])]
        self.pending.rewrite(kept)
        return len(children)

    def delete_unknown_children(self, known_trials: set) -> int:
        """Delete the search trials' child runs whose trial ``known_trials`` (Tune's restored
        experiment) does not hold: a kill between a trial's start in MLflow and Tune's save
        leaves a run of a trial the resumed search never continues."""
        unknown = [r for r in self._children() if CONFIRMS_TAG not in r.data.tags
                   and r.data.tags.get(TRIAL_TAG) not in known_trials]
        for run in unknown:
            self.client.delete_run(run.info.run_id)
        return len(unknown)

    def _children(self) -> list:
        return self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{self.parent_run_id}'")

    # --- the parent run's calls ----------------------------------------------------------
    def log_metrics(self, metrics: dict) -> None:
        """Sweep-level numbers (real-data ceiling, best scores)."""
        finite = {k: float(v) for k, v in metrics.items()
                  if isinstance(v, (int, float)) and math.isfinite(v)}
        self.call("sweep_metrics", finite, int(time.time() * 1000))

    def log_artifacts(self, paths, artifact_path: str) -> None:
        """Files on the parent run (they stay in the sweep folder whatever MLflow does)."""
        for path in paths:
            self.call("sweep_artifact", str(path), artifact_path)

    def tag_ranks(self, ranked: list) -> None:
        """Each ranked trial's child run gets tag ``gensweep.rank`` and ``#rank`` in its name,
        so the runs table shows the winners."""
        self.call("ranks", [row.get("trial_id") for row in ranked])

    def register_generator(self, checkpoint, name: str, tags: dict, sweep_id: str) -> None:
        """The winner's checkpoint as a registered pyfunc model on the parent run
        (``sweeps.model_registry``); a file store has no registry, so there it is skipped."""
        if not supports_registry(self.uri):
            log.info("no Model Registry at %s (a file store): the winner is not registered",
                     redact_url(self.uri))
            return
        self.call("register", str(checkpoint), name, {k: str(v) for k, v in tags.items()},
                  sweep_id)

    def finish(self, status: str) -> None:
        self.call("sweep_finish", status)

    # --- the child runs' calls (from sweeps.mlflow_callback) -----------------------------
    def trial_started(self, trial_id: str, name: str, params: dict) -> None:
        self.call("start", trial_id, name, params)

    def trial_result(self, trial_id: str, name: str, params: dict, metrics: dict,
                     step: int) -> None:
        self.call("metrics", trial_id, name, params, metrics, step, int(time.time() * 1000))

    def trial_ended(self, trial_id: str, name: str, params: dict, status: str,
                    checkpoint_dir: str | None) -> None:
        self.call("finish", trial_id, name, params, status, checkpoint_dir)

    # --- the failure strategy ------------------------------------------------------------
    def call(self, op: str, *args) -> bool:
        """Run one of ``OPERATIONS``; on failure keep it for replay instead of failing the
        sweep. After one failure the server counts as down: later calls are kept after a
        short ``/health`` probe instead of each waiting out the client's retries. Kept calls
        are replayed before a new one, so MLflow receives them in order."""
        if self._down and not server_answers(self.uri):
            self.pending.add(op, args)
            return False
        if self.pending:
            self.replay()
            if self.pending and not server_answers(self.uri):
                self._down = True
                self.pending.add(op, args)
                return False
        self._down = False
        try:
            OPERATIONS[op](self, *args)
            return True
        except Exception as exc:  # the sweep must outlive the tracking server
            self._down = True
            log.warning("MLflow %s failed (%s: %s); kept for replay in %s", op,
                        redact_url(self.uri), exc, self.journal_path)
            self.pending.add(op, args)
            return False

    def replay(self) -> int:
        """Retry the kept calls, in order; returns how many are still kept. Stops at the
        first failure while the server is down (the rest would only wait out their
        timeouts); a call the live server rejects is kept and the replay goes on."""
        entries = self.pending.read()
        still = []
        for i, entry in enumerate(entries):
            try:
                OPERATIONS[entry["op"]](self, *entry["args"])
            except Exception as exc:
                if not server_answers(self.uri):
                    still.extend(entries[i:])
                    break
                log.warning("MLflow rejected a kept %s call (%s); it stays in %s",
                            entry["op"], exc, self.journal_path)
                still.append(entry)
        if self.pending:  # also a file of nothing but a cut-short line: it goes too
            self.pending.rewrite(still)
        return len(still)

    def close(self) -> int:
        """Deliver what is kept; returns how many calls could not be (``--resume`` replays
        them), with a warning that says where they are."""
        left = self.replay()
        if left:
            log.warning("%d MLflow calls could not be delivered; they stay in %s and are "
                        "replayed by `--resume`", left, self.journal_path)
        return left

    # --- the operations (each idempotent, so a replay never duplicates) ------------------
    def _op_sweep_metrics(self, metrics: dict, ts_ms: int) -> None:
        from mlflow.entities import Metric

        self.client.log_batch(self.parent_run_id,
                              metrics=[Metric(k, v, ts_ms, 0) for k, v in metrics.items()])

    def _op_sweep_artifact(self, path: str, artifact_path: str) -> None:
        self.client.log_artifact(self.parent_run_id, path, artifact_path)

    def _op_ranks(self, trial_ids: list) -> None:
        children = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{self.parent_run_id}'")
        by_trial = {r.data.tags.get(TRIAL_TAG): r for r in children}
        for rank, trial_id in enumerate(trial_ids, 1):
            run = by_trial.get(trial_id)
            if run is None:
                continue
            self.client.set_tag(run.info.run_id, RANK_TAG, str(rank))
            name = (run.info.run_name or "").split(" (#")[0]
            self.client.update_run(run.info.run_id, name=f"{name} (#{rank})")

    def _op_register(self, checkpoint: str, name: str, tags: dict, sweep_id: str) -> None:
        self.registered = register_generator(self.uri, self.parent_run_id, checkpoint, name,
                                             tags, sweep_id)

    def _op_sweep_finish(self, status: str) -> None:
        self.client.set_terminated(self.parent_run_id, status)

    def _run_id(self, trial_id: str, trial_name: str, params: dict) -> str:
        from mlflow.entities import Param

        if trial_id in self._runs:
            return self._runs[trial_id]
        found = self.client.search_runs(
            [self.experiment_id],
            filter_string=(f"tags.`{TRIAL_TAG}` = '{trial_id}' and "
                           f"tags.`mlflow.parentRunId` = '{self.parent_run_id}'"))
        if found:
            # The server may have died between create_run and the params: add what is missing.
            run_id = found[0].info.run_id
            missing = {k: v for k, v in params.items() if k not in found[0].data.params}
            if missing:
                self.client.log_batch(
                    run_id, params=[Param(k, str(v)) for k, v in missing.items()])
        else:
            confirms = {CONFIRMS_TAG: str(params["confirms"])} if "confirms" in params else {}
            run_id = self.client.create_run(
                self.experiment_id, run_name=f"confirm-{trial_name}" if confirms else trial_name,
                tags={"mlflow.parentRunId": self.parent_run_id, TRIAL_TAG: trial_id,
                      STATUS_TAG: "running", **confirms}).info.run_id
            self.client.log_batch(
                run_id, params=[Param(k, str(v)) for k, v in params.items()])
        inputs = trial_inputs(params)
        if inputs:  # idempotent: MLflow links a run to a (name, digest) once
            self.client.log_inputs(run_id, datasets=inputs)
        self._runs[trial_id] = run_id
        return run_id

    def _op_start(self, trial_id, trial_name, params) -> None:
        self._run_id(trial_id, trial_name, params)

    def _op_metrics(self, trial_id, trial_name, params, metrics, step, ts_ms) -> None:
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

    def _op_finish(self, trial_id, trial_name, params, status, checkpoint_dir) -> None:
        run_id = self._run_id(trial_id, trial_name, params)
        if checkpoint_dir and Path(checkpoint_dir).is_dir():
            for name in ARTIFACTS:
                path = Path(checkpoint_dir) / name
                if path.is_file():
                    self.client.log_artifact(
                        run_id, str(path), "samples" if name.endswith(".png") else "checkpoint")
        self.client.set_tag(run_id, STATUS_TAG, status)
        self.client.set_terminated(run_id, RUN_STATUS.get(status, "FAILED"))


# The calls a kept entry may name: nothing else is ever replayed.
TRIAL_OPERATIONS = {"start": SweepTracker._op_start, "metrics": SweepTracker._op_metrics,
                    "finish": SweepTracker._op_finish}
OPERATIONS = {**TRIAL_OPERATIONS,
              "sweep_metrics": SweepTracker._op_sweep_metrics,
              "sweep_artifact": SweepTracker._op_sweep_artifact,
              "ranks": SweepTracker._op_ranks,
              "register": SweepTracker._op_register,
              "sweep_finish": SweepTracker._op_sweep_finish}
