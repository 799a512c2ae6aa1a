"""``sweep.json``: the sweep's intent and how far it got, rewritten atomically at each phase.

It is written first thing, before any expensive step, with the request and its resolved
plan; then the scorer folders, the MLflow experiment and parent run are added as they come
to exist. ``--resume`` reads it and continues from the phase it reached, so a sweep killed
in any second of its life can be continued, and never makes a second parent run.

The file is owner-only: the URLs in it may carry passwords (everything logged is redacted).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

SWEEP_FILE = "sweep.json"
PHASE_LOG = "phases.jsonl"  # one line per milestone, appended: what tests kill the sweep at
FORMAT = 2
PHASES = ("planned", "scorers-ready", "tracking-ready", "tuning", "confirming", "finished")


def sweep_file(sweep_dir) -> Path:
    return Path(sweep_dir) / SWEEP_FILE


def holds_sweep(sweep_dir) -> bool:
    return sweep_file(sweep_dir).is_file()


def read_state(sweep_dir) -> dict:
    """The saved state (its request, plan, phase and what each phase recorded)."""
    path = sweep_file(sweep_dir)
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} cannot be read ({exc}); the sweep folder is damaged") from exc
    if not isinstance(state, dict) or "plan" not in state:
        raise ValueError(f"{path} is not a sweep file this version of gensweep reads (no "
                         f"plan); start a new sweep in another folder")
    return state


def write_state(sweep_dir, state: dict) -> Path:
    """Replace ``sweep.json`` atomically (a temporary file renamed over it)."""
    path = sweep_file(sweep_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{SWEEP_FILE}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps({"format": FORMAT, **state}, indent=1, default=str))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def advance(sweep_dir, state: dict, phase: str, **values) -> dict:
    """Record ``phase`` (and any new ``values``) and return the new state."""
    if phase not in PHASES:
        raise ValueError(f"unknown phase {phase!r}")
    state = {**state, **values, "phase": phase}
    write_state(sweep_dir, state)
    log_phase(sweep_dir, phase)
    return state


def log_phase(sweep_dir, name: str, **info) -> None:
    """Append a milestone (``planned``, ``scorer-start``, ``actors-started``, ...) with the
    time, so a run's progress (and where it was killed) can be read afterwards."""
    import time

    line = json.dumps({"phase": name, "time": round(time.time(), 3), "pid": os.getpid(), **info},
                      default=str)
    with open(Path(sweep_dir) / PHASE_LOG, "a") as fh:
        fh.write(line + "\n")


def read_phases(sweep_dir) -> list:
    """The complete lines of the phase log: a line being written is left out, and so is one
    a kill cut short (the next start's line is then appended to it)."""
    path = Path(sweep_dir) / PHASE_LOG
    if not path.is_file():
        return []
    events = []
    for line in path.read_text().split("\n")[:-1]:
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(event, dict) and isinstance(event.get("time"), (int, float)):
            events.append(event)
    return events


def trial_checkpoint(run: Path, trial: str) -> tuple[Path, dict]:
    """The final checkpoint of a sweep's trial (``best`` = best_config.json's), and the
    sweep's saved state; ValueError naming what is missing."""
    if not holds_sweep(run):
        raise ValueError(f"--run {run} holds no sweep (no {SWEEP_FILE})")
    saved = read_state(run)
    if trial == "best":
        best = run / "best_config.json"
        if not best.is_file():
            raise ValueError(f"--run {run} has no best_config.json (it has not finished with "
                             f"a scored trial); name a trial id with --trial")
        trial = json.loads(best.read_text())["trial_id"]
    folder = next((f for f in (run / "tune" / f"trial_{trial}", run / "confirm" / f"trial_{trial}")
                   if f.is_dir()), run / "tune" / f"trial_{trial}")
    finals = sorted(p for p in folder.glob("checkpoint_*")
                    if json.loads((p / "state.json").read_text()).get("stage") == "final") \
        if folder.is_dir() else []
    if not finals:
        raise ValueError(f"--run {run}: no finished checkpoint for trial {trial!r} (looked in "
                         f"{folder}); see results.csv for the trial ids")
    return finals[-1], saved
