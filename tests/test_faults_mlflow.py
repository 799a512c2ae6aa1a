"""MLflow faults: the tracking server dying mid-sweep, a dead server's calls, and a failure
between a run's creation and its params.

Each test injects one fault into a real sweep (real Ray, real MLflow, real SQLite Optuna,
the shared scorer actors, the smoke preset) and checks the documented outcome: no trial is
lost or duplicated, or the sweep stops early with a one-line error that names what is wrong.
docs/reliability.md lists the faults, the runs made and the measured recovery times; the
helpers are in tests/faultkit.py (GENSWEEP_FAULT_LOG=FILE records the times as JSON lines).
"""
import json
import os
import pickle
import subprocess
import time

import faultkit as fk
import pytest

from sweeps import tracking

pytestmark = pytest.mark.slow


# ------------------------------------------------------- 5b. MLflow dies mid-sweep
def test_mlflow_down_mid_sweep_is_replayed_by_resume(tmp_path, smoke_scorers, monkeypatch):
    for k, v in fk.FAST_MLFLOW.items():
        monkeypatch.setenv(k, v)  # this test's own polling must not block
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST")}
    server = fk.MlflowServer(tmp_path / "mlflow")
    storage = tmp_path / "sweep"
    proc = None
    try:
        server.start()
        proc = subprocess.Popen(
            [fk.PY, "sweeps/run.py", *fk.SMOKE, "--num-samples", "2", "--max-concurrent", "1",
             "--mlflow-uri", server.uri, "--storage", str(storage)],
            cwd=fk.REPO, env=env, stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "sweep.err", "w"), start_new_session=True)
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            if (storage / "sweep.json").exists() and fk.mlflow_runs(server.uri)[2]:
                break
            time.sleep(1)
        assert proc.poll() is None, (tmp_path / "sweep.err").read_text()[-5000:]
        server.kill()
        down_at = time.time()
        rc = proc.wait(timeout=600)
        finished_after = time.time() - down_at
        err = (tmp_path / "sweep.err").read_text()
        assert rc == 0, err[-6000:]

        rows = fk.results(storage)
        assert len(rows) == 2, rows
        assert all(r["status"] == "finished" and fk.finite(r["ts_500_mean"]) for r in rows), rows
        assert json.loads((storage / "best_config.json").read_text())["trial_id"] in {
            r["trial_id"] for r in rows}
        pending = [json.loads(l) for l in
                   (storage / "mlflow_pending.jsonl").read_text().splitlines() if l]
        assert {p["op"] for p in pending} >= {"metrics", "finish", "sweep_finish"}, pending
        assert {p["args"][0] for p in pending if p["op"] in tracking.TRIAL_OPERATIONS} == {
            r["trial_id"] for r in rows}, pending
        assert "could not be delivered" in err

        restart_s = server.start()
        r = fk.sweep("--resume", "--storage", str(storage), env=env, timeout=600,
                   logs=tmp_path / "resume")
        fk.note("mlflow_down_mid_sweep", pending_calls=len(pending),
              sweep_end_after_server_death_s=round(finished_after, 1),
              server_restart_s=round(restart_s, 1), resume_s=round(r.elapsed, 1))
        assert r.returncode == 0, r
        assert not (storage / "mlflow_pending.jsonl").exists()

        client, parents, children = fk.mlflow_runs(server.uri)
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        assert "best_ts_500_mean" in parents[0].data.metrics
        ids = [c.data.tags["gensweep.trial_id"] for c in children]
        assert sorted(ids) == sorted(r["trial_id"] for r in rows), ids  # none lost, none twice
        for c in children:
            assert c.info.status == "FINISHED" and c.data.tags["gensweep.status"] == "finished"
            assert "ts_500_mean" in c.data.metrics and "lr" in c.data.params
            epochs = [m.step for m in client.get_metric_history(c.info.run_id, "train_loss")]
            assert epochs and len(epochs) == len(set(epochs)), epochs  # each round once
        def scores(table):
            return {r["trial_id"]: (r["status"], r["ts_500_mean"], r["is_500_mean"]) for r in table}
        assert scores(fk.results(storage)) == scores(rows)  # the resume retrained nothing
    finally:
        if proc is not None:
            fk.kill_group(proc)
        server.kill()


# ------------------------------------------------------- MLflow client behaviour (bugs)
DEAD_SERVER_CALL = """
import sys, time
from sweeps.tracking import SweepTracker
tracker = SweepTracker(sys.argv[1], sys.argv[2], "1", "parent")
t0 = time.time()
ok = tracker.call("start", "t1", "trial_t1", {"lr": 0.1})
print("delivered", ok, "after", round(time.time() - t0, 1))
t1 = time.time()
ok = tracker.call("metrics", "t1", "trial_t1", {"lr": 0.1}, {"loss": 1.0}, 1, 0)
print("queued", not ok, "after", round(time.time() - t1, 1))
"""


def test_dead_tracking_server_call_gives_up_quickly(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST")}
    uri = f"http://127.0.0.1:{fk.free_port()}"
    try:
        r = fk.run([fk.PY, "-c", DEAD_SERVER_CALL, uri, str(tmp_path)], timeout=45, env=env)
    except AssertionError:
        fk.note("dead_tracking_server_call", blocked_more_than_s=45)
        raise AssertionError("one MLflow call to a dead server blocked for more than 45 s")
    fk.note("dead_tracking_server_call", seconds=round(r.elapsed, 1), stdout=r.stdout.strip())
    assert r.returncode == 0 and "delivered False" in r.stdout, r
    # Once the server is known down, the next call is queued after a /health probe, not retried.
    second = float(r.stdout.split("queued True after ")[1].split()[0])
    assert second < 5, r
    ops = [json.loads(l)["op"] for l in
           (tmp_path / "mlflow_pending.jsonl").read_text().splitlines()]
    assert ops == ["start", "metrics"], ops


def test_params_survive_a_failure_between_create_run_and_params(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = tracking.SweepTracker(uri, tmp_path)
    tracker.open("gensweep-vae-mnist", "sweep", {}, {}, sweep_key="s1")
    real = MlflowClient.log_batch
    failures = []

    def flaky(self, run_id, metrics=(), params=(), tags=(), **kw):
        if params and not failures:
            failures.append(run_id)
            raise ConnectionError("tracking server went away")
        return real(self, run_id, metrics=metrics, params=params, tags=tags, **kw)

    monkeypatch.setattr(MlflowClient, "log_batch", flaky)
    assert tracker.call("start", "t1", "trial_t1", {"lr": 0.1}) is False
    assert failures
    later = pickle.loads(pickle.dumps(tracker))  # as in a resumed driver
    assert later.replay() == 0
    _, _, children = fk.mlflow_runs(uri)
    assert len(children) == 1
    assert children[0].data.params.get("lr") == "0.1", children[0].data.params
