"""The checks a sweep passes before anything expensive starts, and the sweep's error.

Storage, the stores' URLs, the tracking server, the scorer folders given and the dataset are
checked before Ray starts, and a cluster's address before Ray's own retries would take
minutes: a typo costs seconds, not a sweep. Each check's message says what to change.
"""
from __future__ import annotations

import os
from pathlib import Path

from scorers.scorer_cache import read_metadata
from scorers.spec import KINDS
from sweeps.redact import redact_url
from sweeps.request import SweepRequest
from sweeps.tracking_server import check_reachable, default_tracking_uri
from trainables.datasets import load_dataset


class SweepError(RuntimeError):
    """The sweep cannot start or go on; the message says why and what to do."""


def check_writable(folder: Path) -> None:
    """Create ``folder`` and prove a file can be written there, before anything else runs."""
    probe = folder / ".write-test"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as fh:
            fh.write(b"x" * 4096)
            fh.flush()
            os.fsync(fh.fileno())
        probe.unlink()
    except OSError as exc:
        try:  # a half-written probe must not linger on a full disk
            probe.unlink(missing_ok=True)
        except OSError:
            pass
        raise SweepError(f"storage folder {folder} is not writable ({exc.strerror or exc}); "
                         f"choose another --storage or free space") from exc


def check_dataset(request: SweepRequest) -> None:
    """Verify the dataset's checksums once, up front: a corrupt file fails the sweep in seconds
    with the file's name and checksums, rather than failing every trial on a worker."""
    load_dataset(request.dataset, request.data_dir)


PATH_VARIABLES = ("GENSWEEP_DATA_DIR", "GENSWEEP_CACHE_DIR")


def absolute_path_variables() -> None:
    """Make the path variables absolute here, before Ray starts and its workers inherit them.

    Tune runs each trial with its own folder as working directory, so a relative
    ``GENSWEEP_DATA_DIR=../shared/data`` would be looked up from there: every trial would
    fail with "mnist not found" although the driver's checks passed."""
    for var in PATH_VARIABLES:
        if os.environ.get(var):
            os.environ[var] = str(Path(os.environ[var]).expanduser().resolve())


TRACKING_SCHEMES = ("http", "https", "sqlite", "file", "postgresql", "mysql", "mssql",
                    "databricks")


def check_urls(request: SweepRequest) -> None:
    """A tracking URI MLflow can use and an Optuna storage SQLAlchemy can parse."""
    if request.mlflow_uri:
        scheme = request.mlflow_uri.split(":", 1)[0].split("+", 1)[0] \
            if ":" in request.mlflow_uri else ""
        if scheme not in TRACKING_SCHEMES:
            raise SweepError(f"--mlflow-uri {redact_url(request.mlflow_uri)}: not a tracking "
                             f"URI ({', '.join(TRACKING_SCHEMES)}); e.g. http://127.0.0.1:5000 "
                             f"or sqlite:///mlflow.db")
    if request.optuna_storage:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(request.optuna_storage)
        except ArgumentError as exc:
            raise SweepError(f"--optuna-storage {redact_url(request.optuna_storage)}: not a "
                             f"database URL ({exc}); e.g. sqlite:///optuna.db") from exc


def check_scorers_dir(request: SweepRequest) -> None:
    """``--scorers DIR`` holds a complete scorer of each kind for the dataset."""
    if not request.scorers_dir:
        return

    for kind in KINDS:
        try:
            read_metadata(Path(request.scorers_dir) / kind, kind, request.dataset)
        except ValueError as exc:
            raise SweepError(f"--scorers {request.scorers_dir}: {exc} (expected DIR/inception "
                             f"and DIR/vit, as scorers/finetune_cli.py --out writes)") from exc


def preflight(request: SweepRequest) -> None:
    """The checks that need neither Ray nor the scorers: storage, the stores' URLs and the
    tracking server, the scorer folders given, the dataset."""
    absolute_path_variables()
    check_urls(request)
    check_writable(request.sweep_dir)
    check_reachable(request.mlflow_uri or default_tracking_uri(request.sweep_dir))
    check_scorers_dir(request)
    check_dataset(request)


CONNECT_TIMEOUT_S = 10.0
CURRENT_CLUSTER_FILE = Path("/tmp/ray/ray_current_cluster")  # where `ray start` leaves it


def cluster_address(address: str) -> str:
    """``address`` as host:port; ``auto`` is what $RAY_ADDRESS or `ray start` left behind."""
    if address != "auto":
        return address
    found = os.environ.get("RAY_ADDRESS")
    if not found and CURRENT_CLUSTER_FILE.is_file():
        found = CURRENT_CLUSTER_FILE.read_text().strip()
    if not found:
        raise SweepError("--address auto found no running Ray cluster on this machine; start "
                         "one with `ray start --head`, or omit --address for a local Ray")
    return found


def check_cluster(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail in seconds, not after minutes of Ray's retries, if nothing answers at ``address``."""
    import re
    import socket

    plain = address[len("ray://"):] if address.startswith("ray://") else address
    if not re.fullmatch(r"[\w.\-\[\]:]+:\d+", plain):
        return  # another form (a URL): Ray itself says what is wrong with it
    host, _, port = plain.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise SweepError(f"Ray cluster at {address} is unreachable ({why}); check that it "
                         f"runs (`ray status --address {plain}`) and the address is right, or "
                         f"omit --address for a local Ray") from exc
