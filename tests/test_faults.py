"""Fault injection for sweeps: what a smoke sweep does when its surroundings fail.

Each test injects one fault into a real sweep (real Ray, real MLflow, real SQLite Optuna,
the shared scorer actors, the smoke preset) and checks the documented outcome: no trial is
lost or duplicated, or the sweep stops early with a one-line error that names what is wrong.
docs/reliability.md lists the faults, the runs made and the measured recovery times.

Set GENSWEEP_FAULT_LOG=FILE to get the measured times as JSON lines.
Faults covered elsewhere: the driver killed and ``--resume``d (tests/test_sweeps_e2e.py), bad
CLI input (tests/test_sweeps_build.py), a scorer actor killed mid-call
(tests/test_scorers_actor.py), a pickled training checkpoint (tests/test_trainables.py).
"""
import csv
import gzip
import hashlib
import json
import math
import os
import pickle
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
SMOKE = ["--space", "vae", "--preset", "smoke"]
# For this test process's own MLflow queries only: the sweeps under test run with MLflow's
# HTTP settings unset, so they prove the product bounds its retries itself.
FAST_MLFLOW = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
pytestmark = pytest.mark.slow


# ------------------------------------------------------------------------------ helpers
def _note(test: str, **values) -> None:
    """Record a measurement (printed; appended to $GENSWEEP_FAULT_LOG when set)."""
    line = json.dumps({"test": test, **values})
    print(f"[faults] {line}")
    if os.environ.get("GENSWEEP_FAULT_LOG"):
        with open(os.environ["GENSWEEP_FAULT_LOG"], "a") as fh:
            fh.write(line + "\n")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill_group(proc) -> None:
    """End the process group this test started (the CLI and anything it left behind)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pass


class Run:
    def __init__(self, returncode, stdout, stderr, elapsed):
        self.returncode, self.stdout, self.stderr, self.elapsed = returncode, stdout, stderr, elapsed

    def errors(self) -> list:
        return [l for l in self.stderr.splitlines() if l.startswith("error:")]

    def __repr__(self):
        return (f"rc={self.returncode} after {self.elapsed:.0f}s\n--- stdout\n{self.stdout[-3000:]}"
                f"\n--- stderr\n{self.stderr[-5000:]}")


def _run(cmd, timeout=900, env=None, preexec_fn=None, logs=None) -> Run:
    """Run ``cmd`` in its own session; whatever it leaves behind is killed afterwards.
    With ``logs`` (a path prefix) the full stdout / stderr are kept there too."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, preexec_fn=preexec_fn, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        raise AssertionError(f"{cmd} still running after {timeout}s:\n{err[-5000:]}")
    finally:
        _kill_group(proc)
    if logs is not None:
        Path(f"{logs}.out").write_text(out)
        Path(f"{logs}.err").write_text(err)
    return Run(proc.returncode, out, err, time.time() - t0)


def _sweep(*args, **kw) -> Run:
    return _run([PY, "sweeps/run.py", *args], **kw)


def _nothing_started(storage: Path) -> None:
    """No sweep state a later run or ``--resume`` could trip over, and no trial folder."""
    assert not (storage / "sweep.json").exists()
    assert not (storage / "tune").exists()
    assert not (storage / "optuna.db").exists() and not (storage / "mlflow.db").exists()


def _settings(storage: Path):
    from sweeps.tuner import SweepSettings

    return SweepSettings(space="vae", preset="smoke", storage=str(storage))


def _results(storage: Path) -> list:
    with open(storage / "results.csv") as fh:
        return list(csv.DictReader(fh))


def _finite(text) -> bool:
    try:
        return math.isfinite(float(text))
    except (TypeError, ValueError):
        return False


def _mlflow_runs(uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("gensweep-vae-mnist")
    runs = client.search_runs([exp.experiment_id]) if exp else []
    parents = [r for r in runs if r.data.tags.get("gensweep.role") == "sweep"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def _result_lines(path: Path) -> list:
    """The complete JSON lines of a trial's result.json (the last one may be half written)."""
    if not path.is_file():
        return []
    text = path.read_text()
    return [json.loads(l) for l in text.split("\n")[:-1] if l.strip()]


@pytest.fixture(scope="module")
def smoke_scorers():
    """The smoke preset's scorers, fine-tuned once into the session cache that every sweep
    subprocess of this session reuses (the same spec ``prepare_scorers`` asks for)."""
    from scorers.store import ensure_scorer
    from sweeps.presets import PRESETS

    preset = PRESETS["smoke"]
    return {kind: ensure_scorer("mnist", kind, epochs=spec.epochs, subset=spec.subset,
                                eval_subset=spec.eval_subset, progress=False)
            for kind, spec in (("inception", preset.inception), ("vit", preset.vit))}


# ------------------------------------------------------- 5a. MLflow unreachable at start
def test_mlflow_unreachable_at_start_fails_fast(tmp_path):
    uri = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    storage = tmp_path / "sweep"
    r = _sweep(*SMOKE, "--mlflow-uri", uri, "--storage", str(storage), timeout=180)
    _note("mlflow_unreachable_at_start", seconds=round(r.elapsed, 1))
    assert r.returncode == 1, r
    assert len(r.errors()) == 1 and uri in r.errors()[0] and "unreachable" in r.errors()[0], r
    assert "Traceback" not in r.stderr, r
    assert r.elapsed < 60, r
    assert "sweeps.scorer_setup" not in r.stderr  # no scorer was prepared, let alone trained
    _nothing_started(storage)


# ------------------------------------------------------- 6. corrupt dataset, sweep level
@pytest.mark.parametrize("damage", ["truncated", "altered"])
def test_corrupt_dataset_stops_the_sweep_before_any_trial(tmp_path, data_dir, damage):
    from trainables.datasets import CHECKSUMS

    folder = tmp_path / "data" / "mnist"
    shutil.copytree(data_dir / "mnist", folder)
    checks = []
    if damage == "truncated":
        target = folder / "train-images-idx3-ubyte.gz"
        blob = target.read_bytes()
        target.write_bytes(blob[: len(blob) // 2])
        checks.append(("truncated", "corrupt"))
    else:
        target = folder / "t10k-labels-idx1-ubyte.gz"
        raw = bytearray(gzip.decompress(target.read_bytes()))
        raw[100] ^= 0xFF  # one label changed: a valid IDX file with the wrong data
        target.write_bytes(gzip.compress(bytes(raw)))
        checks.append((CHECKSUMS["mnist"]["t10k-labels-idx1-ubyte"],))
        checks.append((hashlib.md5(bytes(raw)).hexdigest(),))
    storage = tmp_path / "sweep"
    r = _sweep(*SMOKE, "--data-dir", str(tmp_path / "data"), "--storage", str(storage),
               timeout=180)
    _note(f"corrupt_dataset[{damage}]", seconds=round(r.elapsed, 1))
    assert r.returncode == 1, r
    assert len(r.errors()) == 1, r
    line = r.errors()[0]
    assert str(target) in line, line
    for alternatives in checks:
        assert any(a in line for a in alternatives), (alternatives, line)
    assert "Traceback" not in r.stderr and r.elapsed < 60, r
    assert "sweeps.scorer_setup" not in r.stderr
    _nothing_started(storage)


# ------------------------------------------------------- 8. unwritable storage, disk full
def test_storage_under_a_regular_file_is_refused(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("keep me")
    for storage in (blocker / "sweep", blocker):
        r = _sweep(*SMOKE, "--storage", str(storage), timeout=180)
        _note("storage_not_a_folder", storage=storage.name, seconds=round(r.elapsed, 1))
        assert r.returncode == 1, r
        assert len(r.errors()) == 1, r
        line = r.errors()[0]
        assert f"storage folder {storage.resolve()} is not writable" in line, line
        assert "Traceback" not in r.stderr, r
    assert blocker.read_text() == "keep me"
    r = _sweep("--resume", "--storage", str(blocker / "sweep"), timeout=60)
    assert r.returncode == 2 and "holds no sweep to resume" in r.stderr, r


def _disk_full(limit_bytes: int):
    """``preexec_fn``: files larger than ``limit_bytes`` cannot be written (EFBIG), as on a
    full disk; SIGXFSZ is ignored so the write fails instead of killing the process."""

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return limit


RUN_SWEEP_ON_FULL_DISK = """
import sys
from sweeps.sweep import SweepError, run_sweep
from sweeps.tuner import SweepSettings
try:
    run_sweep(SweepSettings(space="vae", preset="smoke", storage=sys.argv[1]))
except SweepError as exc:
    import ray
    print("ray started:", ray.is_initialized())
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(1)
"""


def test_full_disk_storage_is_refused_before_anything_starts(tmp_path):
    """``run_sweep`` itself checks the storage before Ray, MLflow or the scorers."""
    from sweeps.sweep import check_writable

    storage = tmp_path / "sweep"
    r = _run([PY, "-c", RUN_SWEEP_ON_FULL_DISK, str(storage)], timeout=120,
             preexec_fn=_disk_full(2048))
    _note("full_disk_run_sweep", seconds=round(r.elapsed, 1))
    assert r.returncode == 1, r
    assert len(r.errors()) == 1, r
    line = r.errors()[0]
    assert f"storage folder {storage.resolve()} is not writable" in line and "File too large" in line, line
    assert "ray started: False" in r.stdout, r
    _nothing_started(storage)
    # Space freed: the same folder works again and holds nothing a --resume would trust.
    check_writable(storage)
    assert [p.name for p in storage.iterdir()] in ([], [".write-test"])
    r = _sweep("--resume", "--storage", str(storage), timeout=60)
    assert r.returncode == 2 and "holds no sweep to resume" in r.stderr, r


def test_full_disk_cli_gives_a_one_line_storage_error(tmp_path):
    storage = tmp_path / "sweep"
    r = _sweep(*SMOKE, "--storage", str(storage), timeout=180, preexec_fn=_disk_full(2048))
    _note("full_disk_cli", seconds=round(r.elapsed, 1), rc=r.returncode,
          traceback="Traceback" in r.stderr)
    _nothing_started(storage)
    assert r.returncode == 1, r
    assert "Traceback" not in r.stderr, r
    assert len(r.errors()) == 1 and f"storage folder {storage.resolve()}" in r.errors()[0], r


# ------------------------------------------------------- security: pickles in scorer folders
class _Evil:
    """Unpickling this creates ``marker``: proof that loading ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_crafted_pickles_in_a_scorer_folder_are_refused(tmp_path, smoke_scorers):
    import numpy as np

    from scorers.store import load_scorer

    live = tmp_path / "live"
    pickle.loads(pickle.dumps(_Evil(live))).close()  # the payload does run when unpickled
    assert live.exists()

    def tampered(kind, case):
        folder = tmp_path / f"{kind}-{case}"
        shutil.copytree(smoke_scorers[kind], folder)
        return folder, tmp_path / f"pwned-{kind}-{case}"

    cases = []
    for kind, array in (("vit", "real_probs.npy"), ("inception", "real_features.npy")):
        folder, marker = tampered(kind, "npy")
        np.save(folder / array, np.array([_Evil(marker)], dtype=object), allow_pickle=True)
        cases.append((folder, marker, "without pickle"))
    folder, marker = tampered("vit", "safetensors")  # a pickle under the safetensors name,
    payload = pickle.dumps({"w": _Evil(marker)})  # and a pickled torch file beside it
    (folder / "model" / "model.safetensors").write_bytes(payload)
    (folder / "model" / "pytorch_model.bin").write_bytes(payload)
    cases.append((folder, marker, ""))
    folder, marker = tampered("vit", "bin-only")  # only the pickled weights
    (folder / "model" / "model.safetensors").unlink()
    (folder / "model" / "pytorch_model.bin").write_bytes(pickle.dumps({"w": _Evil(marker)}))
    cases.append((folder, marker, "model.safetensors"))
    folder, marker = tampered("inception", "h5")
    (folder / "model.weights.h5").write_bytes(pickle.dumps({"w": _Evil(marker)}))
    cases.append((folder, marker, ""))

    for folder, marker, needle in cases:
        with pytest.raises(Exception, match=needle) as err:
            load_scorer(folder)
        assert not marker.exists(), (folder, err.value)
    assert load_scorer(smoke_scorers["vit"]).scorer_id  # the untouched folder still loads


# ------------------------------------------------------- 4. a trial diverges in a sweep
def test_diverging_trial_is_failed_not_scored(tmp_path, smoke_scorers):
    """The paper point (lr 1e-3) runs first and finishes; the second trial draws its lr from
    [50, 100], which makes the smoke VAE's loss NaN within its first epoch (checked directly
    for latent sizes 8 and 64, batch sizes 64 and 256, lr 50, 70 and 100: 12 of 12)."""
    import optuna

    from sweeps.presets import PRESETS
    from sweeps.spaces import paper_point

    storage = tmp_path / "sweep"
    r = _sweep(*SMOKE, "--num-samples", "2", "--lr-range", "50,100", "--storage", str(storage),
               logs=tmp_path / "sweep")
    _note("diverging_trial", seconds=round(r.elapsed, 1))
    assert r.returncode == 0, r
    paper_lr = paper_point("vae", "mnist", PRESETS["smoke"])["lr"]

    rows = _results(storage)
    assert len(rows) == 2, rows
    paper = [row for row in rows if float(row["lr"]) == paper_lr]
    wild = [row for row in rows if 50 <= float(row["lr"]) <= 100]
    assert len(paper) == 1 and len(wild) == 1, rows
    paper, wild = paper[0], wild[0]
    assert paper["status"] == "finished" and _finite(paper["ts_500_mean"]), paper
    assert _finite(paper["is_500_mean"]), paper
    assert wild["status"] == "diverged" and wild["diverged"] == "1", wild
    assert not _finite(wild.get("ts_500_mean")) and not _finite(wild.get("is_500_mean")), wild
    best = json.loads((storage / "best_config.json").read_text())
    assert best["trial_id"] == paper["trial_id"]

    _, parents, children = _mlflow_runs(f"sqlite:///{storage / 'mlflow.db'}")
    assert len(parents) == 1 and len(children) == 2
    runs = {c.data.tags["gensweep.trial_id"]: c for c in children}
    assert set(runs) == {paper["trial_id"], wild["trial_id"]}
    bad, good = runs[wild["trial_id"]], runs[paper["trial_id"]]
    assert bad.data.tags["gensweep.status"] == "diverged" and bad.info.status == "FAILED"
    assert bad.data.metrics["diverged"] == 1 and "ts_500_mean" not in bad.data.metrics
    assert good.data.tags["gensweep.status"] == "finished" and good.info.status == "FINISHED"
    assert "ts_500_mean" in good.data.metrics

    settings = _settings(storage)
    study = optuna.load_study(study_name=settings.study_name, storage=settings.optuna_url)
    states = {t.params["lr"]: t for t in study.trials}
    assert len(study.trials) == 2, study.trials
    ok = states.pop(paper_lr)
    (failed,) = states.values()
    assert ok.state == optuna.trial.TrialState.COMPLETE
    assert ok.value == pytest.approx(float(paper["ts_500_mean"]))
    assert failed.state == optuna.trial.TrialState.FAIL and failed.value is None, failed


# ------------------------------------------------------- 1. a worker node dies mid-trial
def _parent_pids(pid: int) -> list:
    chain = []
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        chain.append(pid)
    return chain


def _node_running(pid: int, nodes: list):
    from ray._private import ray_constants

    ancestors = _parent_pids(pid)
    for node in nodes:
        raylet = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
        if raylet in ancestors:
            return node
    raise AssertionError(f"trial process {pid} (ancestors {ancestors}) is on no worker node")


def test_worker_node_removed_mid_trial_resumes_from_checkpoint(tmp_path, smoke_scorers):
    """Head (1 CPU: the driver attaches to it and the two scorer actors, 0.5 CPU each, are
    pinned there) plus two 1-CPU workers, all on this machine. (They use its own address, not 127.0.0.1: Ray 2.60
    rewrites a loopback cluster address to the node's IP when a driver connects.) Once the first trial has checkpointed an epoch, its worker
    node is killed (no graceful shutdown); the trial must continue on the other worker from
    its last checkpoint, with no epoch reported twice."""
    from ray.cluster_utils import Cluster

    storage = tmp_path / "sweep"
    log = open(tmp_path / "driver.log", "w")
    cluster = proc = None
    try:
        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "include_dashboard": False, "object_store_memory": 150 * 2**20})
        workers = [cluster.add_node(num_cpus=1, object_store_memory=150 * 2**20)
                   for _ in range(2)]
        cluster.wait_for_nodes()
        proc = subprocess.Popen(
            [PY, "sweeps/run.py", *SMOKE, "--num-samples", "2", "--max-concurrent", "1",
             "--epochs-range", "5,5", "--address", cluster.address, "--storage", str(storage)],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

        deadline, victim = time.time() + 600, None
        while victim is None and time.time() < deadline and proc.poll() is None:
            for trial in sorted((storage / "tune").glob("trial_*")):
                lines = _result_lines(trial / "result.json")
                if lines and any(trial.glob("checkpoint_*")):
                    victim, first = trial, lines[0]
                    break
            time.sleep(0.25)
        assert victim is not None, "no trial checkpointed: " + (tmp_path / "driver.log").read_text()[-5000:]
        node = _node_running(first["pid"], workers)
        removed_at = time.time()
        cluster.remove_node(node, allow_graceful=False)

        recovered_after = None
        while proc.poll() is None and time.time() < deadline:
            lines = _result_lines(victim / "result.json")
            if recovered_after is None and any(l["pid"] != first["pid"] for l in lines):
                recovered_after = time.time() - removed_at
            time.sleep(0.5)
        rc = proc.wait(timeout=max(1, deadline - time.time()))
        total = time.time() - removed_at
    finally:
        if proc is not None:
            _kill_group(proc)
        log.close()
        if cluster is not None:
            cluster.shutdown()

    driver_log = (tmp_path / "driver.log").read_text()
    lines = _result_lines(victim / "result.json")
    pids = [l["pid"] for l in lines]
    n_before = pids.count(first["pid"])
    killed_at_epoch = lines[n_before - 1]["epoch"] if n_before else None
    _note("worker_node_removed", killed_after_epoch=killed_at_epoch,
          seconds_to_first_result_after_removal=recovered_after and round(recovered_after, 1),
          seconds_removal_to_sweep_end=round(total, 1))
    assert rc == 0, driver_log[-6000:]

    # Restarted once, in another process on the surviving node, after the old one's reports.
    assert len(set(pids)) == 2 and pids[:n_before] == [first["pid"]] * n_before, pids
    after = lines[n_before:]
    training = [l["epoch"] for l in lines if l["status"] == "training"]
    assert training == [1, 2, 3, 4, 5], training  # no epoch trained twice, none skipped
    resumed = [l["epoch"] for l in after if l["status"] == "training"]
    assert killed_at_epoch >= 1 and (not resumed or resumed[0] == killed_at_epoch + 1), (
        resumed, killed_at_epoch)  # from the last checkpoint, not from epoch 1
    assert after[-1]["status"] == "finished" and math.isfinite(after[-1]["ts_500_mean"])

    rows = _results(storage)
    assert len(rows) == 2 and all(r["status"] == "finished" for r in rows), rows
    assert all(_finite(r["ts_500_mean"]) and _finite(r["is_500_mean"]) for r in rows), rows
    client, parents, children = _mlflow_runs(f"sqlite:///{storage / 'mlflow.db'}")
    assert len(parents) == 1 and len(children) == 2
    assert {c.data.tags["gensweep.trial_id"] for c in children} == {r["trial_id"] for r in rows}
    assert all(c.info.status == "FINISHED" and "ts_500_mean" in c.data.metrics for c in children)
    steps = {c.data.tags["gensweep.trial_id"]: sorted(
        m.step for m in client.get_metric_history(c.info.run_id, "train_loss")) for c in children}
    assert len({tuple(s) for s in steps.values()}) == 1, steps  # victim logged like the other


# ------------------------------------------------------- 5b. MLflow dies mid-sweep
class MlflowServer:
    """A real ``mlflow server`` on loopback that can be killed and started again on the same
    port and backend store."""

    def __init__(self, root: Path):
        self.root, self.port, self.proc = root, _free_port(), None
        root.mkdir(parents=True, exist_ok=True)
        self.uri = f"http://127.0.0.1:{self.port}"

    def start(self, timeout=180) -> float:
        t0 = time.time()
        self.proc = subprocess.Popen(
            [str(Path(PY).parent / "mlflow"), "server", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
             "--artifacts-destination", (self.root / "artifacts").as_uri()],
            stdout=open(self.root / "server.log", "a"), stderr=subprocess.STDOUT,
            start_new_session=True)
        while time.time() - t0 < timeout:
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2) as r:
                    if r.status == 200:
                        return time.time() - t0
            except OSError:
                time.sleep(1)
        self.kill()
        raise AssertionError("mlflow server did not start: "
                             + (self.root / "server.log").read_text()[-3000:])

    def kill(self) -> None:
        if self.proc is not None:
            _kill_group(self.proc)
            self.proc = None


def test_mlflow_down_mid_sweep_is_replayed_by_resume(tmp_path, smoke_scorers, monkeypatch):
    for k, v in FAST_MLFLOW.items():
        monkeypatch.setenv(k, v)  # this test's own polling must not block
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST")}
    server = MlflowServer(tmp_path / "mlflow")
    storage = tmp_path / "sweep"
    proc = None
    try:
        server.start()
        proc = subprocess.Popen(
            [PY, "sweeps/run.py", *SMOKE, "--num-samples", "2", "--max-concurrent", "1",
             "--mlflow-uri", server.uri, "--storage", str(storage)],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL,
            stderr=open(tmp_path / "sweep.err", "w"), start_new_session=True)
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            if (storage / "sweep.json").exists() and _mlflow_runs(server.uri)[2]:
                break
            time.sleep(1)
        assert proc.poll() is None, (tmp_path / "sweep.err").read_text()[-5000:]
        server.kill()
        down_at = time.time()
        rc = proc.wait(timeout=600)
        finished_after = time.time() - down_at
        err = (tmp_path / "sweep.err").read_text()
        assert rc == 0, err[-6000:]

        rows = _results(storage)
        assert len(rows) == 2, rows
        assert all(r["status"] == "finished" and _finite(r["ts_500_mean"]) for r in rows), rows
        assert json.loads((storage / "best_config.json").read_text())["trial_id"] in {
            r["trial_id"] for r in rows}
        pending = [json.loads(l) for l in
                   (storage / "mlflow_pending.jsonl").read_text().splitlines() if l]
        assert {p["op"] for p in pending} >= {"metrics", "finish"}, pending
        assert {p["args"][0] for p in pending} == {r["trial_id"] for r in rows}, pending
        assert "could not be delivered" in err

        restart_s = server.start()
        r = _sweep("--resume", "--storage", str(storage), env=env, timeout=600,
                   logs=tmp_path / "resume")
        _note("mlflow_down_mid_sweep", pending_calls=len(pending),
              sweep_end_after_server_death_s=round(finished_after, 1),
              server_restart_s=round(restart_s, 1), resume_s=round(r.elapsed, 1))
        assert r.returncode == 0, r
        assert not (storage / "mlflow_pending.jsonl").exists()

        client, parents, children = _mlflow_runs(server.uri)
        assert len(parents) == 1 and parents[0].info.status == "FINISHED"
        assert "best_ts_500_mean" in parents[0].data.metrics
        ids = [c.data.tags["gensweep.trial_id"] for c in children]
        assert sorted(ids) == sorted(r["trial_id"] for r in rows), ids  # none lost, none twice
        for c in children:
            assert c.info.status == "FINISHED" and c.data.tags["gensweep.status"] == "finished"
            assert "ts_500_mean" in c.data.metrics and "lr" in c.data.params
            epochs = [m.step for m in client.get_metric_history(c.info.run_id, "train_loss")]
            assert epochs and len(epochs) == len(set(epochs)) + 1, epochs  # epoch 1 + final
        def scores(table):
            return {r["trial_id"]: (r["status"], r["ts_500_mean"], r["is_500_mean"]) for r in table}
        assert scores(_results(storage)) == scores(rows)  # the resume retrained nothing
    finally:
        if proc is not None:
            _kill_group(proc)
        server.kill()


# ------------------------------------------------------- MLflow client behaviour (bugs)
DEAD_SERVER_CALL = """
import sys, time
from sweeps import tracking
cb = tracking.make_callback(sys.argv[1], "1", "parent", sys.argv[2])
t0 = time.time()
ok = cb._safe("start", "t1", "trial_t1", {"lr": 0.1})
print("delivered", ok, "after", round(time.time() - t0, 1))
t1 = time.time()
ok = cb._safe("metrics", "t1", "trial_t1", {"lr": 0.1}, {"loss": 1.0}, 1, 0)
print("queued", not ok, "after", round(time.time() - t1, 1))
"""


def test_dead_tracking_server_call_gives_up_quickly(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_HTTP_REQUEST")}
    uri = f"http://127.0.0.1:{_free_port()}"
    try:
        r = _run([PY, "-c", DEAD_SERVER_CALL, uri, str(tmp_path)], timeout=45, env=env)
    except AssertionError:
        _note("dead_tracking_server_call", blocked_more_than_s=45)
        raise AssertionError("one MLflow call to a dead server blocked for more than 45 s")
    _note("dead_tracking_server_call", seconds=round(r.elapsed, 1), stdout=r.stdout.strip())
    assert r.returncode == 0 and "delivered False" in r.stdout, r
    # Once the server is known down, the next call is queued after a /health probe, not retried.
    second = float(r.stdout.split("queued True after ")[1].split()[0])
    assert second < 5, r
    ops = [json.loads(l)["op"] for l in
           (tmp_path / "mlflow_pending.jsonl").read_text().splitlines()]
    assert ops == ["start", "metrics"], ops


def test_params_survive_a_failure_between_create_run_and_params(tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from sweeps import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    exp = tracking.setup_experiment(uri, "gensweep-vae-mnist", tmp_path)
    parent = tracking.start_parent_run(uri, exp, "sweep", {}, {})
    real = MlflowClient.log_batch
    failures = []

    def flaky(self, run_id, metrics=(), params=(), tags=(), **kw):
        if params and not failures:
            failures.append(run_id)
            raise ConnectionError("tracking server went away")
        return real(self, run_id, metrics=metrics, params=params, tags=tags, **kw)

    monkeypatch.setattr(MlflowClient, "log_batch", flaky)
    cb = tracking.make_callback(uri, exp, parent, tmp_path)
    assert cb._safe("start", "t1", "trial_t1", {"lr": 0.1}) is False
    assert failures
    later = tracking.make_callback(uri, exp, parent, tmp_path)  # as in a resumed driver
    assert later.replay_pending() == 0
    _, _, children = _mlflow_runs(uri)
    assert len(children) == 1
    assert children[0].data.params.get("lr") == "0.1", children[0].data.params
