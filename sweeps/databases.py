"""The sweep's embedded SQLite stores (MLflow's and Optuna's) come into being whole.

MLflow builds a new SQLite store in place: it creates the tables, then runs some forty
Alembic migrations, several of which copy a table through ``_alembic_tmp_<name>``. A sweep
killed in between leaves a file that every later open refuses ("table _alembic_tmp_trace_tags
already exists"), so the sweep could never be resumed (test_kill_anywhere, seed 3, CI of
2026-12-04). Here a new store is built under a temporary name beside its final one and
linked into place only when its schema is complete; a kill leaves at most the temporary file,
which a later start on the same host removes.
"""
from __future__ import annotations

import errno
import glob
import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

TMP_MARK = ".creating-"
# link(2) errors that mean "this file system has no hard links", where rename is the fallback
NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS}


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL, as SQLAlchemy reads it (percent-decoded, without its
    query); None for any other store (a server, an in-memory or a ``uri=true`` database)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if (parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:")
            or parsed.query.get("uri")):
        return None
    return Path(parsed.database)


def _temp_url(url: str, tmp: Path) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(database=str(tmp)).render_as_string(hide_password=False)


def _remove_abandoned(path: Path) -> None:
    """Temporary stores this host's dead processes left (killed while building them). The
    host is in the name, so a live build on another machine sharing the folder is spared."""
    host = socket.gethostname()
    prefix = f".{path.name}{TMP_MARK}"
    for tmp in path.parent.glob(glob.escape(prefix) + "*"):
        owner = tmp.name[len(prefix):].removesuffix("-journal").rsplit("-", 2)
        if len(owner) != 3 or owner[0] != host or not owner[1].isdigit():
            continue
        pid = int(owner[1])
        if pid == os.getpid() or not _alive(pid):  # our own pid: an earlier life of it
            tmp.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def create_whole(url: str, build_schema: Callable[[str], None]) -> bool:
    """Make sure the SQLite store at ``url`` exists with its whole schema; True if this call
    created it. ``build_schema(tmp_url)`` builds the schema in a temporary file, which is
    then hard-linked to the final name: ``link`` fails rather than replace a store another
    process finished first, whose runs would otherwise be lost. Other URLs are left alone."""
    path = sqlite_path(url)
    if path is None or path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(path)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{socket.gethostname()}-{os.getpid()}-"
                         f"{uuid.uuid4().hex[:8]}")
    try:
        build_schema(_temp_url(url, tmp))
        try:
            os.link(tmp, path)
        except FileExistsError:
            log.info("%s was created by another process meanwhile; using it", path)
            return False
        except OSError as exc:
            if exc.errno not in NO_HARD_LINKS:
                raise
            # Without hard links a store linked in by another process between this check
            # and the rename would be replaced; such file systems are rare for a sweep folder.
            if path.exists():
                return False
            os.rename(tmp, path)
    finally:
        for leftover in (tmp, tmp.with_name(tmp.name + "-journal")):
            leftover.unlink(missing_ok=True)
    log.info("created %s", path)
    return True


def mlflow_schema(url: str) -> None:
    """Every MLflow table, migrated to this MLflow's head (what MLflow does on first open,
    minus the Default experiment, which MLflow adds when it opens the final store)."""
    import sqlalchemy
    from mlflow.store.db import utils

    engine = sqlalchemy.create_engine(url)
    try:
        utils._initialize_tables(engine)  # MLflow's own first-open step, 1.x to 3.x
    finally:
        engine.dispose()


def optuna_schema(url: str) -> None:
    import optuna

    storage = optuna.storages.RDBStorage(url)
    storage.engine.dispose()


def _ensure(url: str, build_schema: Callable[[str], None], what: str) -> None:
    try:
        create_whole(url, build_schema)
    except Exception as exc:  # sqlalchemy's, MLflow's and Optuna's errors share no base
        raise OSError(f"could not create the {what} store {sqlite_path(url)} "
                      f"({type(exc).__name__}: {_first_line(exc)})") from exc


def ensure_mlflow_store(uri: str) -> None:
    _ensure(uri, mlflow_schema, "MLflow")


def ensure_optuna_store(url: str) -> None:
    _ensure(url, optuna_schema, "Optuna")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def mlflow_client(uri: str):
    """An ``MlflowClient`` on ``uri``, its SQLite file created whole first. A local store
    that cannot be opened is an OSError that names it and says what may help, not a SQL
    traceback."""
    from mlflow.tracking import MlflowClient

    ensure_mlflow_store(uri)
    try:
        return MlflowClient(uri)
    except Exception as exc:
        path = sqlite_path(uri)
        if path is None:
            raise
        why = f"{type(exc).__name__}: {_first_line(exc)}"
        if "database is locked" in why:
            raise OSError(f"the MLflow store {path} is busy ({why}): another process is "
                          f"writing to it; try again when it is done") from exc
        raise OSError(
            f"the MLflow store {path} cannot be opened ({why}). If an older MLflow made it, "
            f"back it up and run `mlflow db upgrade {uri}`; if a first start was killed while "
            f"creating it (gensweep before 9789cc9), it holds no runs: move it aside and "
            f"start the sweep again") from exc
