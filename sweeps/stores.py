"""The sweep's embedded SQLite stores (MLflow's and Optuna's) come into being whole.

MLflow builds a new SQLite store in place: it creates the tables, then runs some forty
Alembic migrations, several of which copy a table through ``_alembic_tmp_<name>``. A sweep
killed in between leaves a file that every later open refuses ("table _alembic_tmp_trace_tags
already exists"), so the sweep could never be resumed (test_kill_anywhere, seed 3, CI of
2026-12-04). Here a new store is built under a temporary name beside its final one and
linked into place only when its schema is complete; a kill leaves at most the temporary file,
which the next start removes.
"""
from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)

SQLITE_PREFIX = "sqlite:///"
TMP_MARK = ".creating-"


def sqlite_path(url: str) -> Path | None:
    """The file behind a ``sqlite:///`` URL; None for any other store (a server, memory)."""
    if not url.startswith(SQLITE_PREFIX) or url[len(SQLITE_PREFIX):] in ("", ":memory:"):
        return None
    return Path(url[len(SQLITE_PREFIX):].split("?", 1)[0])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_abandoned(path: Path) -> None:
    """Temporary stores whose creator is dead (killed while building them)."""
    for tmp in path.parent.glob(f".{path.name}{TMP_MARK}*"):
        pid = tmp.name[len(f".{path.name}{TMP_MARK}"):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


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
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        build_schema(SQLITE_PREFIX + str(tmp))
        try:
            os.link(tmp, path)
        except FileExistsError:
            log.info("%s was created by another process meanwhile; using it", path)
            return False
        except OSError:  # a file system without hard links: rename, still whole
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
        utils._initialize_tables(engine)  # MLflow's own first-open step, since 1.x
    finally:
        engine.dispose()


def optuna_schema(url: str) -> None:
    import optuna

    storage = optuna.storages.RDBStorage(url)
    storage.engine.dispose()


def ensure_mlflow_store(uri: str) -> None:
    create_whole(uri, mlflow_schema)


def mlflow_client(uri: str):
    """An ``MlflowClient`` on ``uri``, its SQLite file created whole first. A store that
    cannot be opened (half made by an older gensweep killed while creating it, or written by
    another MLflow version) is an OSError that names it, not a SQL traceback."""
    from mlflow.tracking import MlflowClient

    ensure_mlflow_store(uri)
    try:
        return MlflowClient(uri)
    except Exception as exc:  # sqlalchemy's and MLflow's errors share no base class
        path = sqlite_path(uri)
        if path is None:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise OSError(f"the MLflow store {path} cannot be opened ({first}). If an MLflow "
                      f"upgrade made it old, `mlflow db upgrade {uri}` migrates it; if it "
                      f"was left half made, move it aside and start the sweep again") from exc


def ensure_optuna_store(url: str) -> None:
    create_whole(url, optuna_schema)
