"""End-to-end smoke sweeps: real local Ray, a real MLflow tracking server on 127.0.0.1, a real
SQLite Optuna study, the shared scorer actors; then an interrupted sweep finished by --resume."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import faultkit as fk
import pytest

from sweeps.search import ORPHAN_ATTR

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` bound to loopback, with proxied artifact storage."""
    server = fk.MlflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start()
    yield server.uri
    server.kill()


def _sweep(*args, timeout=900, **popen):
    cmd = [sys.executable, "sweeps/run.py", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, **popen)


def _child_runs(uri, space):
    return fk.mlflow_runs(uri, f"gensweep-{space}-mnist")


def test_smoke_sweep_logs_everything(tmp_path, mlflow_server):
    storage = tmp_path / "sweep"
    # Relative paths, as the README's Quick start gives them: trials run in their own folders.
    env = {**os.environ, **{k: os.path.relpath(os.environ[k], REPO)
                            for k in ("GENSWEEP_DATA_DIR", "GENSWEEP_CACHE_DIR")}}
    # --conditional search: the search chooses conditional networks per trial (through
    # Optuna and Ray into TrainConfig); the paper point stays unconditional
    r = _sweep("--space", "vaegan", "--preset", "smoke", "--mlflow-uri", mlflow_server,
               "--storage", str(storage), "--seed", "1", "--conditional", "search", env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    assert "paper" in r.stdout and "best configuration" in r.stdout
    assert "mlflow ui" in r.stdout or mlflow_server in r.stdout
    # the estimate says what its speeds rest on; the progress line follows the phases, and
    # the end compares each phase with its estimate
    assert "the smoke preset's rates, not measured on this machine" in r.stdout
    assert "progress: search (" in r.stdout and "min left" in r.stdout
    assert "by phase, minutes: " in r.stdout and "search " in r.stdout.split("by phase")[-1]

    client, parents, children = _child_runs(mlflow_server, "vaegan")
    assert len(parents) == 1
    parent = parents[0]
    assert parent.data.tags["preset"] == "smoke" and parent.data.tags["space"] == "vaegan"
    assert parent.data.tags["scorer.inception.id"] and parent.data.tags["scorer.vit.id"]
    assert any(k.startswith("ceiling_ts_") for k in parent.data.metrics)
    assert len(children) == 2
    for run in children:
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.info.status == "FINISHED"
        for p in ("lr", "latent_dim", "batch_size", "adversarial_loss_scale",
                  "reconstruction_layer", "conditional"):
            assert p in run.data.params
        # the smoke preset scores 200 and 500 samples (1K / 5K in the real presets)
        for m in ("is_200_mean", "is_500_mean", "ts_200_mean", "ts_500_mean", "is_500_std",
                  "fid_inception_500", "kid_vit_500_mean", "nn1_inception_500_acc",
                  "cas_500"):
            assert m in run.data.metrics, m
        assert 1.0 <= run.data.metrics["ts_500_mean"] <= 10.0
        assert len(client.get_metric_history(run.info.run_id, "train_loss")) >= 1
        art = [a.path for a in client.list_artifacts(run.info.run_id, "samples")]
        assert "samples/samples_grid.png" in art
        ckpt = [a.path for a in client.list_artifacts(run.info.run_id, "checkpoint")]
        assert "checkpoint/model.safetensors" in ckpt
    # the paper's configuration ran as one of the trials
    assert any(float(r.data.params["lr"]) == 1e-4 and r.data.params["latent_dim"] == "16"
               and r.data.params["conditional"] == "False" for r in children)
    # what the search chose is what each trial trained: its final checkpoint's config
    for run in children:
        trial = storage / "tune" / f"trial_{run.data.tags['gensweep.trial_id']}"
        finals = [json.loads(p.read_text()) for p in trial.glob("checkpoint_*/state.json")]
        finals = [s for s in finals if s.get("stage") == "final"]
        assert len(finals) == 1, trial
        assert str(finals[0]["config"]["conditional"]) == run.data.params["conditional"]

    import optuna
    state = json.loads((storage / "sweep.json").read_text())
    study = optuna.load_study(study_name=f"gensweep-vaegan-mnist-{_sweep_id(storage)}",
                              storage=f"sqlite:///{storage / 'optuna.db'}")
    assert len(study.trials) == 2
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    best = json.loads((storage / "best_config.json").read_text())
    assert best["scores"]["ts_500_mean"] == max(c.data.metrics["ts_500_mean"] for c in children)
    assert state["parent_run_id"] == parent.info.run_id
    # the winner is a registered model, tagged with its trial, its scores and the sweep
    assert "registered model: models:/gensweep-mnist-vaegan/1" in r.stdout
    (version,) = client.search_model_versions("name = 'gensweep-mnist-vaegan'")
    assert version.run_id == parent.info.run_id
    assert version.tags["trial_id"] == best["trial_id"]
    assert float(version.tags["ts_500_mean"]) == pytest.approx(best["scores"]["ts_500_mean"],
                                                               rel=1e-5)
    assert version.tags["scorer.vit.id"] == parent.data.tags["scorer.vit.id"]
    # each child run names the real data it trained on and was scored against
    for run in children:
        named = {(i.dataset.name, i.tags[0].value) for i in run.inputs.dataset_inputs}
        assert named == {("mnist-train", "training"), ("mnist-test-reference", "evaluation")}


def _sweep_id(storage: Path) -> str:
    from sweeps.plan import sweep_id

    return sweep_id(storage)


def test_killed_sweep_resumes_without_duplicates(tmp_path, mlflow_server):
    storage = tmp_path / "sweep"
    args = ["--space", "vae", "--preset", "smoke", "--num-samples", "3", "--max-concurrent", "1",
            "--mlflow-uri", mlflow_server, "--storage", str(storage)]
    proc = subprocess.Popen([sys.executable, "sweeps/run.py", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    # Kill the whole driver (and the local Ray it started) once the first trial has finished.
    deadline = time.time() + 600
    try:
        while time.time() < deadline and proc.poll() is None:
            if storage.joinpath("sweep.json").exists():
                _, _, children = _child_runs(mlflow_server, "vae")
                if any(c.info.status == "FINISHED" for c in children):
                    break
            time.sleep(2)
        assert proc.poll() is None, "sweep ended before it could be interrupted"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)

    r = _sweep("--resume", "--storage", str(storage))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    _, parents, children = _child_runs(mlflow_server, "vae")
    assert len(parents) == 1
    trial_ids = [c.data.tags["gensweep.trial_id"] for c in children]
    assert len(trial_ids) == 3 and len(set(trial_ids)) == 3, trial_ids
    assert all(c.info.status == "FINISHED" for c in children)

    import optuna
    study = optuna.load_study(study_name=f"gensweep-vae-mnist-{_sweep_id(storage)}",
                              storage=f"sqlite:///{storage / 'optuna.db'}")
    # a kill between an Optuna ask and Tune's save leaves an ask no trial ran: told FAIL
    ran = [t for t in study.trials if ORPHAN_ATTR not in t.user_attrs]
    orphans = [t for t in study.trials if ORPHAN_ATTR in t.user_attrs]
    assert len(ran) == 3, [t.state for t in study.trials]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in ran)
    assert all(t.state == optuna.trial.TrialState.FAIL for t in orphans)


def test_asha_stops_trials_on_the_objectives_own_probe(tmp_path):
    """A smoke sweep with ASHA on TS and utility (CAS): every round reports both probes and
    their mean ratio to the real-data ceiling, ASHA stops exactly the trials its rule says it
    should (a trial whose probe at a rung is below the median its predecessors recorded
    there), the paper point runs to the end whatever its probe, and results.csv, MLflow and
    Optuna agree on every trial."""
    import numpy as np
    import optuna

    storage = tmp_path / "sweep"
    budget = 2000  # four rounds of a quarter each: rungs at 500 and 1,000 images
    r = _sweep("--space", "vae", "--preset", "smoke", "--scheduler", "asha",
               "--objective", "ts+cas", "--num-samples", "5", "--max-concurrent", "1",
               "--train-images", str(budget), "--seed", "2", "--storage", str(storage))
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    rows = {row["trial_id"]: row for row in fk.results(storage)}
    assert len(rows) == 5
    reports = {t: fk.result_lines(next((storage / "tune").glob(f"trial_{t}"))
                                  / "result.json") for t in rows}
    probe = "probe_objective_200"
    from sweeps.sweep_record import read_state

    ceiling = read_state(storage)["ceiling"]
    for reps in reports.values():
        for rep in reps:
            # TS against the real data at the probe's 200 samples; the CAS ceiling is at 500
            ratios = (rep["probe_ts_200"] / ceiling["ts_200_mean"],
                      rep["probe_cas_200"] / ceiling["cas_500"])
            assert rep[probe] == pytest.approx(sum(ratios) / 2)

    # ASHA's rule, replayed over the trials in the order they ran (one at a time)
    rungs, should_stop = {500: [], 1000: []}, set()
    paper = [t for t, row in rows.items() if row.get("paper_config") == "True"]
    assert len(paper) == 1
    for t in sorted(rows, key=lambda t: reports[t][0]["timestamp"]):  # the order they ran
        for milestone in (500, 1000):
            reached = [rep for rep in reports[t] if rep["images_seen"] >= milestone]
            if not reached:
                continue
            value = reached[0][probe]
            earlier = rungs[milestone]
            if earlier and value < np.percentile(earlier, 50) and t not in paper:
                should_stop.add(t)
            earlier.append(value)
            if t in should_stop:
                break
    stopped = {t for t, row in rows.items() if row["status"] == "stopped"}
    assert stopped == should_stop, (stopped, should_stop, reports)
    assert rows[paper[0]]["status"] == "finished"
    for t, row in rows.items():
        last = reports[t][-1]["images_seen"]
        assert (last < budget) == (t in stopped), (t, last)
        assert (row["status"] == "finished") == (t not in stopped)

    client, parents, children = fk.mlflow_runs(f"sqlite:///{storage / 'mlflow.db'}")
    by_trial = {c.data.tags["gensweep.trial_id"]: c for c in children}
    assert set(by_trial) == set(rows)
    for t, run in by_trial.items():
        assert run.data.tags["gensweep.status"] == rows[t]["status"]
        assert run.info.status == ("KILLED" if t in stopped else "FINISHED")
        history = client.get_metric_history(run.info.run_id, probe)
        assert len(history) == len(reports[t]) - (t not in stopped)  # + the final report
    plan = fk.plan(storage)
    study = optuna.load_study(study_name=plan.study_name, storage=plan.optuna_url)
    states = sorted(str(s.state).split(".")[-1] for s in study.trials)
    assert states == sorted(["PRUNED"] * len(stopped) + ["COMPLETE"] * (5 - len(stopped)))
