"""MLflow logging of a sweep: one parent run per sweep, one nested child run per trial.

All logging happens in the driver, through the tracking URI: trials on other nodes never
write MLflow files themselves. This module holds the sweep-level calls and the server checks;
the per-trial Tune callback is in ``sweeps.mlflow_callback``.
"""
from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

from sweeps.redact import redact_url

log = logging.getLogger(__name__)

TRIAL_TAG = "gensweep.trial_id"
STATUS_TAG = "gensweep.status"
ARTIFACTS = ("samples_grid.png", "model.safetensors", "state.json", "samples.npz")
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


def server_answers(uri: str, timeout_s: float = HEALTH_TIMEOUT_S) -> bool:
    """True if a remote tracking server answers ``/health`` (local stores always do)."""
    if not is_remote(uri):
        return True
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as resp:
            return resp.status == 200
    except OSError:
        return False


def default_tracking_uri(sweep_dir: Path) -> str:
    """The embedded store: a SQLite file in the sweep folder (nothing to start)."""
    return f"sqlite:///{Path(sweep_dir).resolve() / 'mlflow.db'}"


def check_reachable(uri: str, timeout_s: float = 10.0) -> None:
    """Fail fast, before any trial starts, if ``uri`` does not answer."""
    if not is_remote(uri):
        return
    import urllib.request

    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout_s) as resp:
            if resp.status != 200:
                raise OSError(f"HTTP {resp.status}")
    except OSError as exc:
        raise ConnectionError(
            f"MLflow tracking server {redact_url(uri)} is unreachable ({exc}); start it (e.g. `mlflow server "
            f"--host 127.0.0.1 --port 5000`) or omit --mlflow-uri for the embedded store") from exc


def setup_experiment(uri: str, name: str, sweep_dir: Path) -> str:
    """Create (or find) the MLflow experiment; artifacts go beside the sweep unless remote."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if not uri.startswith(("http://", "https://", "databricks")):
        location = (Path(sweep_dir).resolve() / "mlartifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)


def start_parent_run(uri: str, experiment_id: str, run_name: str, params: dict,
                     tags: dict) -> str:
    from mlflow.entities import Param, RunTag
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    run = client.create_run(experiment_id, run_name=run_name,
                            tags={k: str(v) for k, v in tags.items()})
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()],
                     tags=[RunTag("gensweep.role", "sweep")])
    return run.info.run_id


def log_parent_metrics(uri: str, run_id: str, metrics: dict) -> None:
    """Sweep-level numbers (real-data ceiling, best scores); a dead server only warns."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    bound_http_retries()
    now = int(time.time() * 1000)
    try:
        MlflowClient(uri).log_batch(run_id, metrics=[
            Metric(k, float(v), now, 0) for k, v in metrics.items()
            if isinstance(v, (int, float)) and math.isfinite(v)])
    except Exception as exc:
        log.warning("could not log sweep metrics to MLflow (%s): %s", redact_url(uri), exc)


def finish_parent_run(uri: str, run_id: str, status: str) -> None:
    from mlflow.tracking import MlflowClient

    bound_http_retries()
    try:
        MlflowClient(uri).set_terminated(run_id, status)
    except Exception as exc:
        log.warning("could not close the sweep's MLflow run (%s): %s", redact_url(uri), exc)


def make_callback(uri: str, experiment_id: str, parent_run_id: str, sweep_dir) -> object:
    """The Tune callback that logs each trial as a child of ``parent_run_id``
    (``sweeps.mlflow_callback``), with MLflow's HTTP retries bounded for this process."""
    from sweeps.mlflow_callback import make_callback_class

    bound_http_retries()
    return make_callback_class()(uri, experiment_id, parent_run_id, str(sweep_dir))
