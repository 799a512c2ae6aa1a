"""The embedded SQLite stores come into being whole (sweeps.databases): a process killed while
MLflow builds its schema leaves no store a later start refuses."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sweeps import databases

REPO = Path(__file__).resolve().parents[1]

# Dies the moment MLflow's migrations have made their first `_alembic_tmp_` copy table,
# the state a SIGKILL left in CI on 2026-12-04.
KILLED_IN_MIGRATION = textwrap.dedent("""
    import os, sys
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    @event.listens_for(Engine, "after_cursor_execute")
    def die(conn, cursor, statement, *args):
        if "CREATE TABLE _alembic_tmp_" in statement:
            os._exit(9)

    uri, how = sys.argv[1], sys.argv[2]
    if how == "in-place":
        from mlflow.tracking import MlflowClient
        MlflowClient(uri)
    else:
        from sweeps.databases import mlflow_client
        mlflow_client(uri)
    """)


def killed_while_creating(uri: str, how: str) -> int:
    return subprocess.run([sys.executable, "-c", KILLED_IN_MIGRATION, uri, how], cwd=REPO,
                          capture_output=True, timeout=300).returncode


def test_sqlite_path_is_the_file_sqlalchemy_opens():
    assert databases.sqlite_path("sqlite:////abs/m.db") == Path("/abs/m.db")
    assert databases.sqlite_path("sqlite:///rel/m.db?timeout=5") == Path("rel/m.db")
    assert databases.sqlite_path("sqlite:////abs/a%20b/m.db") == Path("/abs/a b/m.db")
    for other in ("http://127.0.0.1:5000", "postgresql://u@h/db", "sqlite:///:memory:",
                  "sqlite://", "file:///tmp/mlruns", "sqlite:///file:m.db?uri=true"):
        assert databases.sqlite_path(other) is None, other


def test_the_temporary_store_keeps_the_urls_options(tmp_path):
    seen = []
    url = f"sqlite:///{tmp_path / 'a b' / 'optuna.db'}?timeout=7"
    assert databases.create_whole(url, lambda u: (seen.append(u), databases.optuna_schema(u)))
    assert seen[0].endswith("?timeout=7") and ".optuna.db.creating-" in seen[0]
    assert (tmp_path / "a b" / "optuna.db").is_file()


def test_only_this_hosts_dead_builders_files_are_removed(tmp_path):
    import socket

    host, path = socket.gethostname(), tmp_path / "mlflow.db"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    names = {"dead": f".mlflow.db.creating-{host}-{dead}-0a1b2c3d",
             "dead journal": f".mlflow.db.creating-{host}-{dead}-0a1b2c3d-journal",
             "alive": f".mlflow.db.creating-{host}-1-0a1b2c3d",  # init never dies
             "other host": f".mlflow.db.creating-elsewhere-{dead}-0a1b2c3d",
             "not ours": ".mlflow.db.creating-notes.txt"}
    for name in names.values():
        (tmp_path / name).write_bytes(b"x")
    databases._remove_abandoned(path)
    left = {k for k, name in names.items() if (tmp_path / name).exists()}
    assert left == {"alive", "other host", "not ours"}


def test_a_store_killed_while_mlflow_builds_it_is_built_again_whole(tmp_path):
    # What MLflow alone leaves: a file every later open refuses. The sweep names it.
    broken = f"sqlite:///{tmp_path / 'in-place' / 'mlflow.db'}"
    (tmp_path / "in-place").mkdir()
    assert killed_while_creating(broken, "in-place") == 9
    assert databases.sqlite_path(broken).exists()
    refused = r"in-place/mlflow.db cannot be opened \(OperationalError: \(sqlite3.Operati"
    with pytest.raises(OSError, match=refused):
        databases.mlflow_client(broken)

    # Through sweeps.databases: nothing at the final name, and the next start builds it whole.
    uri = f"sqlite:///{tmp_path / 'sweep' / 'mlflow.db'}"
    assert killed_while_creating(uri, "whole") == 9
    path = databases.sqlite_path(uri)
    assert not path.exists()
    assert [p.name for p in path.parent.iterdir() if p.name.startswith(".mlflow.db.creating-")]
    client = databases.mlflow_client(uri)
    exp = client.create_experiment("e")
    run = client.create_run(exp)
    client.log_metric(run.info.run_id, "m", 1.0)
    assert client.get_run(run.info.run_id).data.metrics == {"m": 1.0}
    assert client.get_experiment_by_name("Default") is not None  # MLflow's own first open
    assert sorted(p.name for p in path.parent.iterdir()) == ["mlflow.db"]  # abandoned one gone


def test_a_store_another_process_finished_first_is_kept(tmp_path):
    path = tmp_path / "optuna.db"

    def racing(tmp_url):  # another sweep links its store while this one builds
        databases.optuna_schema(tmp_url)
        path.write_bytes(b"theirs")

    assert databases.create_whole(f"sqlite:///{path}", racing) is False
    assert path.read_bytes() == b"theirs"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["optuna.db"]


def test_a_failed_build_leaves_nothing_and_an_existing_store_is_left_alone(tmp_path):
    path = tmp_path / "optuna.db"

    def failing(tmp_url):
        databases.optuna_schema(tmp_url)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        databases.create_whole(f"sqlite:///{path}", failing)
    assert list(tmp_path.iterdir()) == []
    assert databases.create_whole(f"sqlite:///{path}", databases.optuna_schema) is True
    import optuna

    optuna.create_study(study_name="s", storage=f"sqlite:///{path}").optimize(
        lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    before = path.read_bytes()
    assert databases.create_whole(f"sqlite:///{path}", databases.optuna_schema) is False
    assert path.read_bytes() == before


def test_a_store_another_process_holds_locked_is_called_busy(tmp_path):
    import sqlite3

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    databases.mlflow_client(uri)
    holder = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(OSError, match=r"mlflow.db is busy \(.*database is locked\)"):
            databases.mlflow_client(uri + "?timeout=1")
    finally:
        holder.close()


def test_gensweep_ui_creates_the_stores_it_will_serve_whole(tmp_path):
    from sweeps.plan import Cluster, resolve_plan
    from sweeps.request import SweepRequest
    from sweeps.ui import commands, create_stores

    def plan_in(folder):
        return resolve_plan(SweepRequest(space="vae", preset="smoke", storage=str(folder)),
                            Cluster(cpus=2, gpus=0, driver_cpus=2, driver_gpus=0,
                                    max_node_cpus=2, max_node_gpus=0)).to_dict()

    # a sweep not yet at tracking
    saved = {"plan": plan_in(tmp_path), "mlflow_uri": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    todo = commands(tmp_path, saved, 5000, 5001)
    create_stores(todo)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db", "optuna.db"]
    assert databases.mlflow_client(saved["mlflow_uri"]).get_experiment_by_name("Default")
    import optuna

    assert optuna.get_all_study_names(f"sqlite:///{tmp_path / 'optuna.db'}") == []
    # a remote tracking server is not a store to create
    remote = {"plan": plan_in(tmp_path / "x"), "mlflow_uri": "http://127.0.0.1:1"}
    create_stores(commands(tmp_path / "x", remote, 5000, 5001))
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["optuna.db"]
