"""MLflow logging of a sweep: one parent run per sweep, one nested child run per trial.

All logging happens in the driver, through the tracking URI: trials on other nodes never
write MLflow files themselves. ``SweepTracker`` holds the client, the experiment and the
parent run; the per-trial Tune callback (``sweeps.mlflow_callback``) logs the children.
"""
from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

from sweeps.redact import redact_url

log = logging.getLogger(__name__)

ROLE_TAG = "gensweep.role"
SWEEP_TAG = "gensweep.sweep_id"
TRIAL_TAG = "gensweep.trial_id"
STATUS_TAG = "gensweep.status"
RANK_TAG = "gensweep.rank"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
ARTIFACTS = ("samples_grid.png", "memorisation_pairs.png", "model.safetensors", "state.json",
             "samples.npz")
# MLflow's own defaults (7 retries, exponential backoff, 120 s timeout) block the Tune driver
# about 4 minutes per call while a server is down; a sweep must not stall on its bookkeeping.
# Set by us only where the user has not set them.
HTTP_LIMITS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
               "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}
HEALTH_TIMEOUT_S = 3.0


def bound_http_retries() -> None:
    """Cap MLflow's HTTP retries and timeout in this process, unless the user chose them."""
    for key, value in HTTP_LIMITS.items():
        os.environ.setdefault(key, value)


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def health(uri: str, timeout_s: float = HEALTH_TIMEOUT_S) -> str | None:
    """None if the tracking server answers ``/health`` (local stores always do), else why not."""
    if not is_remote(uri):
        return None
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as resp:
            return None if resp.status == 200 else f"HTTP {resp.status}"
    except OSError as exc:
        return str(exc)


def server_answers(uri: str, timeout_s: float = HEALTH_TIMEOUT_S) -> bool:
    return health(uri, timeout_s) is None


def default_tracking_uri(sweep_dir: Path) -> str:
    """The embedded store: a SQLite file in the sweep folder (nothing to start)."""
    return f"sqlite:///{Path(sweep_dir).resolve() / 'mlflow.db'}"


def check_reachable(uri: str, timeout_s: float = 10.0) -> None:
    """Fail fast, before any trial starts, if ``uri`` does not answer."""
    why = health(uri, timeout_s)
    if why is not None:
        raise ConnectionError(
            f"MLflow tracking server {redact_url(uri)} is unreachable ({why}); start it (e.g. "
            f"`mlflow server --host 127.0.0.1 --port 5000`) or omit --mlflow-uri for the "
            f"embedded store")


class SweepTracker:
    """The sweep's MLflow client, experiment and parent run."""

    def __init__(self, uri: str):
        self.uri = uri
        self.experiment_id: str | None = None
        self.parent_run_id: str | None = None
        self._client = None
        self.missed = 0  # sweep-level calls a dead server missed (a resume logs them again)
        bound_http_retries()

    @property
    def client(self):
        if self._client is None:
            from sweeps.stores import mlflow_client

            self._client = mlflow_client(self.uri)
        return self._client

    def attach(self, experiment_id: str, parent_run_id: str) -> None:
        """Continue the parent run a resumed sweep recorded. The client is made now, so a
        local store that cannot be opened stops the sweep here (``OSError``) rather than
        passing for a tracking server that is down in every later call."""
        self.experiment_id, self.parent_run_id = experiment_id, parent_run_id
        self.client  # noqa: B018 - made for its check

    def open(self, experiment: str, run_name: str, sweep_dir: Path, params: dict, tags: dict,
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
                location = (Path(sweep_dir).resolve() / "mlartifacts").as_uri()
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
                tags={**{k: str(v) for k, v in tags.items()}, SWEEP_TAG: sweep_key})
            self.parent_run_id, missing = run.info.run_id, params
        self.client.log_batch(self.parent_run_id,
                              params=[Param(k, str(v)) for k, v in missing.items()],
                              tags=[RunTag(ROLE_TAG, "sweep")])

    def log_metrics(self, metrics: dict) -> None:
        """Sweep-level numbers (real-data ceiling, best scores); a dead server only warns."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        try:
            self.client.log_batch(self.parent_run_id, metrics=[
                Metric(k, float(v), now, 0) for k, v in metrics.items()
                if isinstance(v, (int, float)) and math.isfinite(v)])
        except Exception as exc:
            self.missed += 1
            log.warning("could not log sweep metrics to MLflow (%s): %s", redact_url(self.uri),
                        exc)

    def log_artifacts(self, paths, artifact_path: str) -> None:
        """Files on the parent run (a dead server only warns: they stay in the sweep folder)."""
        for path in paths:
            try:
                self.client.log_artifact(self.parent_run_id, str(path), artifact_path)
            except Exception as exc:
                self.missed += 1
                log.warning("could not log %s to MLflow (%s): %s", path, redact_url(self.uri),
                            exc)

    def delete_children(self) -> int:
        """Delete the parent's child runs (of trials a resumed sweep will not continue)."""
        children = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`mlflow.parentRunId` = '{self.parent_run_id}'")
        for run in children:
            self.client.delete_run(run.info.run_id)
        return len(children)

    def tag_ranks(self, ranked: list) -> None:
        """Each ranked trial's child run gets tag ``gensweep.rank`` and ``#rank`` in its name,
        so the runs table shows the winners."""
        try:
            children = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.`mlflow.parentRunId` = '{self.parent_run_id}'")
            by_trial = {r.data.tags.get(TRIAL_TAG): r for r in children}
            for rank, row in enumerate(ranked, 1):
                run = by_trial.get(row.get("trial_id"))
                if run is None:
                    continue
                self.client.set_tag(run.info.run_id, RANK_TAG, str(rank))
                name = (run.info.run_name or "").split(" (#")[0]
                self.client.update_run(run.info.run_id, name=f"{name} (#{rank})")
        except Exception as exc:
            self.missed += 1
            log.warning("could not tag the trials' ranks in MLflow (%s): %s",
                        redact_url(self.uri), exc)

    def finish(self, status: str) -> None:
        try:
            self.client.set_terminated(self.parent_run_id, status)
        except Exception as exc:
            self.missed += 1
            log.warning("could not close the sweep's MLflow run (%s): %s", redact_url(self.uri),
                        exc)
