"""Two sweeps at once on one machine, sharing one scorer cache and one MLflow server (issue:
kill it anywhere, part 4): both finish, each shared scorer is fine-tuned once, and their
MLflow runs do not mix.

Each sweep starts its own local Ray (``address="local"``), so the two never share a cluster;
the cache's per-scorer lock makes the second sweep wait for the first one's fine-tune and
reuse it. Real Ray, a real ``mlflow server`` on 127.0.0.1, SQLite Optuna per sweep.
"""
import os
import subprocess
import time
from pathlib import Path

import faultkit as fk
import pytest

pytestmark = pytest.mark.slow


def test_two_sweeps_share_one_cache_and_one_tracking_server(tmp_path):
    server = fk.MlflowServer(tmp_path / "mlflow")
    cache = tmp_path / "cache"  # empty: both sweeps need the same two scorers
    env = {**os.environ, "GENSWEEP_CACHE_DIR": str(cache)}
    env = {k: v for k, v in env.items() if not k.startswith("MLFLOW_HTTP_REQUEST")}
    procs = {}
    t0 = time.time()
    try:
        server.start()
        for name, seed in (("a", 0), ("b", 1)):
            procs[name] = subprocess.Popen(
                [fk.PY, "sweeps/run.py", *fk.SMOKE, "--num-samples", "2", "--max-concurrent",
                 "1", "--seed", str(seed), "--mlflow-uri", server.uri,
                 "--storage", str(tmp_path / name)],
                cwd=fk.REPO, env=env, stdout=subprocess.DEVNULL,
                stderr=open(tmp_path / f"{name}.err", "w"), start_new_session=True)
        codes = {name: proc.wait(timeout=1200) for name, proc in procs.items()}
        elapsed = time.time() - t0
    finally:
        for proc in procs.values():
            fk.kill_group(proc)
        server.kill()
    errs = {name: (tmp_path / f"{name}.err").read_text() for name in procs}
    assert codes == {"a": 0, "b": 0}, {n: e[-4000:] for n, e in errs.items()}
    fk.note("two_sweeps", seconds=round(elapsed, 1))

    from sweeps.sweep_record import read_state

    states = {name: read_state(tmp_path / name) for name in procs}
    for kind in ("inception", "vit"):
        built = [n for n, e in errs.items() if f"fine-tuning {kind} scorer" in e]
        assert len(built) == 1, (kind, built)  # the other sweep waited and reused it
        entries = list((cache / "scorers" / "mnist" / kind).iterdir())
        folders = [p for p in entries if not p.name.startswith(".")]
        assert len(folders) == 1, entries  # no second copy
        # nothing half-built or replaced left behind: only the build locks
        assert all(p.name.endswith(".lock") for p in entries if p.name.startswith(".")), entries
        assert {Path(s["scorers"][kind]).resolve() for s in states.values()} == {
            folders[0].resolve()}

    server.start()
    try:
        _, parents, children = fk.mlflow_runs(server.uri)
    finally:
        server.kill()
    assert len(parents) == 2 and len(children) == 4
    by_sweep = {p.data.tags["gensweep.sweep_id"]: p for p in parents}
    for name in procs:
        plan = fk.plan(tmp_path / name)
        parent = by_sweep[plan.sweep_id]
        kids = [c for c in children if c.data.tags["mlflow.parentRunId"] == parent.info.run_id]
        trials = {r["trial_id"] for r in fk.results(tmp_path / name)}
        assert {c.data.tags["gensweep.trial_id"] for c in kids} == trials and len(trials) == 2
        assert all("ts_500_mean" in c.data.metrics for c in kids)
