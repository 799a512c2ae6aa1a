"""One line on where the whole sweep stands: its phase and the time left, as it runs.

Tune's table shows the trials; a fine-tune shows its batches. Neither says how long the
sweep has to go. ``SweepProgress`` does, from what the sweep already records and nothing
else: the phase is read from ``sweep.json`` and the milestone log (``sweeps.sweep_record``),
and the trials' speed from the ``result.json`` Tune writes for each of them. So it needs no
hook in the phases, and a resumed sweep is followed like a fresh one.

The time left starts from the plan's estimate of each phase (``sweeps.estimate``).
Once trials report, their measured training rate against the rate the estimate assumed
rescales what remains of the search and the whole confirmation phase (the same trials again).
A phase running past its estimate is said to be, with by how much.
"""
from __future__ import annotations

import functools
import json
import logging
import statistics
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from sweeps import sweep_record
from sweeps.estimate import ESTIMATE_PHASES

log = logging.getLogger(__name__)

EVERY_S = 60.0
POLL_S = 2.0
# the Tune experiment folder of each phase that runs trials
TRIAL_FOLDERS = {"search": "tune", "confirmation": "confirm"}
# the estimated phases, then the writing of what the sweep found
ORDER = (*ESTIMATE_PHASES, "report")


def current_phase(state_phase: str, milestones: list[str], builds_scorers: bool = True) -> str:
    """The sweep's phase from its ``sweep.json`` phase and the milestones this run has
    logged since it started (``builds_scorers``: whether it has fine-tunes to do)."""
    if state_phase == "finished":
        return "done"
    if state_phase == "confirming":
        return "report" if "confirming-done" in milestones else "confirmation"
    if state_phase == "tuning":
        return "report" if "tuning-done" in milestones else "search"
    if state_phase == "planned" and builds_scorers and "scorers-ready" not in milestones:
        return "scorers"
    return "setup"


def _json_lines(path: Path) -> list[dict]:
    """The complete JSON lines of ``path`` (a trial's ``result.json``), skipping any that do
    not parse."""
    try:
        text = path.read_text()
    except OSError:
        return []
    rows = []
    for line in text.split("\n")[:-1]:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return [r for r in rows if isinstance(r, dict)]


def trial_rates(folder: Path) -> list[float]:
    """Each trial's latest training rate (images/s) in a Tune experiment folder."""
    rates = []
    for result in sorted(Path(folder).glob("*/result.json")):
        rows = _json_lines(result)
        rate = rows[-1].get("images_per_s") if rows else None
        if isinstance(rate, (int, float)) and rate > 0:
            rates.append(float(rate))
    return rates


def minutes_left(phase: str, elapsed_min: float, phases: dict, ratio: float) -> tuple[float, float]:
    """(minutes left of the whole sweep, minutes the current phase is past its estimate).
    ``ratio``: how much slower the trials run than the estimate assumed (1: as assumed)."""
    if phase == "done":
        return 0.0, 0.0
    scaled = {k: v * (ratio if k in TRIAL_FOLDERS else 1.0) for k, v in phases.items()}
    here = scaled.get(phase, 0.0)
    later = sum(scaled.get(k, 0.0) for k in ORDER[ORDER.index(phase) + 1:])
    over = max(0.0, elapsed_min - here) if phase in phases else 0.0  # report: not estimated
    return max(0.0, here - elapsed_min) + later, over


class SweepProgress:
    """Follows the sweep in ``plan.sweep_dir``; ``line()`` describes it now."""

    def __init__(self, plan, clock=time.time):
        self.plan, self.clock = plan, clock
        self.sweep_dir = Path(plan.sweep_dir)
        self.started = clock()
        self.phase, self.phase_since = None, self.started
        self.durations: dict = {}  # minutes each finished phase took
        self.lock = threading.Lock()
        self.planned_rate = plan.trial_rate

    def observe(self) -> bool:
        """Read the sweep's phase; True if it changed."""
        try:
            state = sweep_record.read_state(self.sweep_dir).get("phase", "planned")
        except (OSError, ValueError):  # not written yet
            return False
        events = sweep_record.read_phases(self.sweep_dir)
        names, since = [], False
        for event in events:
            since = since or (event["phase"] == "start" and event["time"] >= self.started - 1)
            if since:
                names.append(event["phase"])
        phase = current_phase(state, names, self.plan.estimate_phases.get("scorers", 0) > 0)
        with self.lock:
            if phase == self.phase:
                return False
            now = self.clock()
            if self.phase is not None:
                self.durations[self.phase] = self.durations.get(self.phase, 0.0) + (
                    now - self.phase_since) / 60
            self.phase, self.phase_since = phase, now
            return True

    def ratio(self, phase: str) -> tuple[float, float | None]:
        """(planned rate / measured rate, the measured rate) for ``phase``'s trials."""
        folder = TRIAL_FOLDERS.get(phase)
        rates = trial_rates(self.sweep_dir / folder) if folder else []
        if not rates:
            return 1.0, None
        measured = statistics.median(rates)
        return self.planned_rate / measured, measured

    def compare(self) -> str:
        """Each phase this run went through: the minutes it took against its estimate."""
        with self.lock:
            durations = dict(self.durations)
        estimated = self.plan.estimate_phases
        parts = [f"{k} {v:.1f} (estimated {estimated[k]:.1f})"
                 for k, v in durations.items() if k in estimated]
        return "; ".join(parts) or "not estimated"

    def line(self) -> str:
        with self.lock:
            phase, since = self.phase, self.phase_since
        now = self.clock()
        elapsed = (now - since) / 60
        text = (f"progress: {phase} ({elapsed:.1f} min in this phase, "
                f"{(now - self.started) / 60:.1f} in all)")
        if not self.plan.estimate_phases:  # a sweep.json from before phases were estimated
            return text
        ratio, measured = self.ratio(phase)
        left, over = minutes_left(phase, elapsed, self.plan.estimate_phases, ratio)
        if measured is not None:
            text += (f"; trials train {measured:.0f} images/s, the estimate assumed "
                     f"{self.planned_rate:.0f}")
        if over > 0.05:
            text += f"; {over:.1f} min past this phase's estimate"
        return text + f"; about {left:.0f} min left"


@contextmanager
def following(plan, out=functools.partial(print, flush=True), every_s: float = EVERY_S,
              poll_s: float = POLL_S):
    """While the body runs, print the progress line at each phase change and every
    ``every_s`` seconds."""
    progress = SweepProgress(plan)
    stop = threading.Event()

    def run():
        last = 0.0
        while not stop.wait(poll_s):
            try:
                changed = progress.observe()
                if progress.phase is not None and (changed or time.time() - last >= every_s):
                    out(progress.line())
                    last = time.time()
            except Exception as exc:  # the line is a courtesy: never the sweep's end
                log.debug("progress line: %s", exc)

    thread = threading.Thread(target=run, name="gensweep-progress", daemon=True)
    thread.start()
    try:
        yield progress
    finally:
        stop.set()
        thread.join(timeout=5)
        if not thread.is_alive():  # the phase the body ended in gets its minutes too
            try:
                progress.observe()
            except Exception as exc:
                log.debug("progress line: %s", exc)
