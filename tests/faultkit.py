"""Helpers for the fault-injection tests (tests/test_faults_*.py): run a sweep CLI in its own
process group, read what it left behind, and a real ``mlflow server`` that can be killed.

Set GENSWEEP_FAULT_LOG=FILE to get the measured times as JSON lines.
"""
import csv
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
SMOKE = ["--space", "vae", "--preset", "smoke"]
# For this test process's own MLflow queries only: the sweeps under test run with MLflow's
# HTTP settings unset, so they prove the product bounds its retries itself.
FAST_MLFLOW = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def note(test: str, **values) -> None:
    """Record a measurement (printed; appended to $GENSWEEP_FAULT_LOG when set)."""
    line = json.dumps({"test": test, **values})
    print(f"[faults] {line}")
    if os.environ.get("GENSWEEP_FAULT_LOG"):
        with open(os.environ["GENSWEEP_FAULT_LOG"], "a") as fh:
            fh.write(line + "\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_group(proc) -> None:
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


def run(cmd, timeout=900, env=None, preexec_fn=None, logs=None) -> Run:
    """Run ``cmd`` in its own session; whatever it leaves behind is killed afterwards.
    With ``logs`` (a path prefix) the full stdout / stderr are kept there too."""
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, preexec_fn=preexec_fn, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, err = proc.communicate()
        raise AssertionError(f"{cmd} still running after {timeout}s:\n{err[-5000:]}")
    finally:
        kill_group(proc)
    if logs is not None:
        Path(f"{logs}.out").write_text(out)
        Path(f"{logs}.err").write_text(err)
    return Run(proc.returncode, out, err, time.time() - t0)


def sweep(*args, **kw) -> Run:
    return run([PY, "sweeps/run.py", *args], **kw)


def nothing_started(storage: Path) -> None:
    """No sweep state a later run or ``--resume`` could trip over, and no trial folder."""
    assert not (storage / "sweep.json").exists()
    assert not (storage / "tune").exists()
    assert not (storage / "optuna.db").exists() and not (storage / "mlflow.db").exists()


def plan(storage: Path):
    """The plan a sweep recorded in its sweep.json."""
    from sweeps.plan import SweepPlan
    from sweeps.sweep_record import read_state

    return SweepPlan.from_dict(read_state(storage)["plan"])


def state_phase(storage: Path) -> str | None:
    """The phase the sweep in ``storage`` recorded last (None: no sweep.json yet)."""
    from sweeps.sweep_record import holds_sweep, read_state

    return read_state(storage)["phase"] if holds_sweep(storage) else None


def results(storage: Path) -> list:
    with open(storage / "results.csv") as fh:
        return list(csv.DictReader(fh))


def finite(text) -> bool:
    try:
        return math.isfinite(float(text))
    except (TypeError, ValueError):
        return False


def mlflow_runs(uri: str, experiment: str = "gensweep-vae-mnist"):
    """(client, parent runs, child runs) of ``experiment``; none before it exists (a sweep's
    sweep.json is written when it is planned, before the experiment is made)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id]) if exp else []
    parents = [r for r in runs if r.data.tags.get("gensweep.role") == "sweep"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


def result_lines(path: Path) -> list:
    """The complete JSON lines of a trial's result.json (the last one may be half written)."""
    if not path.is_file():
        return []
    text = path.read_text()
    return [json.loads(l) for l in text.split("\n")[:-1] if l.strip()]


class MlflowServer:
    """A real ``mlflow server`` on loopback that can be killed and started again on the same
    port and backend store."""

    def __init__(self, root: Path):
        self.root, self.port, self.proc = root, free_port(), None
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
            kill_group(self.proc)
            self.proc = None
