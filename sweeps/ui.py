"""Look at a sweep: the MLflow UI and optuna-dashboard on its stores, on 127.0.0.1.

    gensweep ui RUN_FOLDER            # or: python sweeps/ui.py RUN_FOLDER
    gensweep ui RUN_FOLDER --print    # only print the two commands and URLs

Both servers bind to 127.0.0.1 (reach them from elsewhere through an SSH tunnel). The MLflow
link opens the sweep's experiment on its training runs (the runs table), not MLflow's GenAI
overview. A sweep logged to a tracking server (``--mlflow-uri http://...``) is already served
there: only its link is printed. Ctrl-C stops what was started.
Exit codes: 0 stopped by the user (or --print), 2 bad arguments, 1 a server (or its store)
failed to start.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

try:
    from trainables.cli import ArgumentParser, fail, positive_int
except ModuleNotFoundError as exc:  # run as a script from a checkout that was not installed
    sys.exit(f"sweeps/ui.py: error: {exc}; install gensweep first: pip install -e .")
from sweeps import sweep_record
from sweeps.databases import ensure_mlflow_store, ensure_optuna_store
from sweeps.plan import SweepPlan
from sweeps.redact import redact_url
from sweeps.tracking_server import is_remote

PROG = "gensweep ui"


def parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("run", help="a sweep folder (holding sweep.json)")
    p.add_argument("--mlflow-port", type=positive_int, default=5000)
    p.add_argument("--optuna-port", type=positive_int, default=8080)
    p.add_argument("--print", action="store_true", help="print the commands, start nothing")
    return p


def runs_url(base: str, experiment_id: str | None) -> str:
    """The experiment's runs table in MLflow's "Model training" view. MLflow 3.17 opens an
    experiment in its GenAI view (traces, evaluations) unless the URL asks for the other
    one; its sidebar then shows the runs, not "Evaluation runs". (Older versions read the
    ``mlflow.experimentKind`` tag instead, which the sweep also sets.)"""
    if not experiment_id:
        return base
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def commands(folder: Path, saved: dict, mlflow_port: int, optuna_port: int) -> dict:
    """What to start, and the URLs to open, for the sweep ``saved`` describes."""
    plan = SweepPlan.from_dict(saved["plan"])
    mlflow_uri = saved.get("mlflow_uri") or plan.mlflow_uri
    optuna_url = plan.optuna_url
    exp = saved.get("experiment_id")
    out = {}
    if mlflow_uri and is_remote(mlflow_uri):
        out["mlflow"] = {"cmd": None, "url": runs_url(mlflow_uri, exp)}
    elif mlflow_uri:
        out["mlflow"] = {"cmd": [str(Path(sys.executable).parent / "mlflow"), "ui",
                                 "--backend-store-uri", mlflow_uri, "--host", "127.0.0.1",
                                 "--port", str(mlflow_port)],
                         "url": runs_url(f"http://127.0.0.1:{mlflow_port}", exp),
                         "store": mlflow_uri}
    dashboard = shutil.which("optuna-dashboard") or str(
        Path(sys.executable).parent / "optuna-dashboard")
    out["optuna"] = {"cmd": [dashboard, optuna_url, "--host", "127.0.0.1", "--port",
                             str(optuna_port)],
                     "url": f"http://127.0.0.1:{optuna_port}", "store": optuna_url,
                     "missing": not Path(dashboard).exists()}
    return out


def create_stores(todo: dict) -> None:
    """Create the local stores the UIs will open, whole (``sweeps.databases``): started on a
    sweep that has not made them yet, the UIs would build them in place, and a sweep
    starting meanwhile could find one half made. OSError if one cannot be created."""
    if todo.get("mlflow", {}).get("store"):
        ensure_mlflow_store(todo["mlflow"]["store"])
    if "optuna" in todo:
        ensure_optuna_store(todo["optuna"]["store"])


def main(argv=None) -> int:
    args = parser().parse_args(argv)

    folder = Path(args.run)
    if not sweep_record.holds_sweep(folder):
        fail(PROG, f"{folder} holds no sweep (no {sweep_record.SWEEP_FILE}); give the folder a sweep "
                   f"wrote, e.g. runs/sweep-vaegan-mnist-...")
    try:
        saved = sweep_record.read_state(folder)
        todo = commands(folder, saved, args.mlflow_port, args.optuna_port)
    except ValueError as exc:
        fail(PROG, str(exc))
    if todo["optuna"].pop("missing"):
        print("optuna-dashboard is not installed: pip install 'gensweep[ui]' (or "
              "pip install optuna-dashboard)", file=sys.stderr)
        todo.pop("optuna")
    for name, what in todo.items():
        shown = " ".join(redact_url(c) for c in what["cmd"]) if what["cmd"] else "(served)"
        print(f"{name:7s} {what['url']}    {shown}", flush=True)
    if args.print:
        return 0
    try:
        create_stores(todo)
    except OSError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    procs = []
    try:
        for name, what in todo.items():
            if what["cmd"]:
                procs.append((name, subprocess.Popen(what["cmd"], stdout=subprocess.DEVNULL,
                                                     stderr=subprocess.STDOUT)))
        while True:
            for name, proc in procs:
                if proc.poll() is not None:
                    print(f"{PROG}: error: {name} exited with code {proc.returncode}",
                          file=sys.stderr)
                    return 1
            time.sleep(1)
    except KeyboardInterrupt:
        return 0
    finally:
        for _, proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
