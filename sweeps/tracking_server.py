"""Reaching a sweep's MLflow tracking server: is it up, how long a call may block, and the
embedded store a sweep uses when it names none."""
from __future__ import annotations

import os
import urllib.request
from pathlib import Path

from sweeps.redact import redact_url

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


EMBEDDED_ADVICE = " or omit --mlflow-uri for the embedded store"


def check_reachable(uri: str, timeout_s: float = 10.0, advice: str = EMBEDDED_ADVICE) -> None:
    """Fail fast, before any trial starts, if ``uri`` does not answer. ``advice``: what else
    the user can do (a sweep can fall back on its embedded store; a registry read cannot)."""
    why = health(uri, timeout_s)
    if why is not None:
        raise ConnectionError(
            f"MLflow tracking server {redact_url(uri)} is unreachable ({why}); start it (e.g. "
            f"`mlflow server --host 127.0.0.1 --port 5000`){advice}")
