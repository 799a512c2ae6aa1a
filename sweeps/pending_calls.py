"""The MLflow calls a sweep could not deliver: ``mlflow_pending.jsonl`` in the sweep folder.

``sweeps.tracking.SweepTracker`` keeps a call here when the tracking server does not answer,
and replays the file, in order, when it does again (``--resume`` replays what is left). One
JSON object per line, ``{"op": name, "args": [...]}``, appended as calls fail, so a kill
loses at most the line it was writing; that cut-short line is skipped, not fatal.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

FILENAME = "mlflow_pending.jsonl"


class PendingCalls:
    """The kept calls of the sweep in ``sweep_dir``, oldest first."""

    def __init__(self, sweep_dir):
        self.path = Path(sweep_dir) / FILENAME

    def __bool__(self) -> bool:
        return self.path.is_file()

    def add(self, op: str, args) -> None:
        line = json.dumps({"op": op, "args": list(args)}, default=str) + "\n"
        with open(self.path, "a+b") as fh:
            if fh.tell() and (fh.seek(-1, os.SEEK_END), fh.read(1))[1] != b"\n":
                line = "\n" + line  # after a line a kill cut short: start a new one
            fh.write(line.encode())

    def read(self) -> list[dict]:
        if not self.path.is_file():
            return []
        entries = []
        for line in self.path.read_text().splitlines():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:  # the line a kill cut short: that call was lost
                log.warning("skipped a cut-short line in %s: %.60s", self.path, line)
        return entries

    def rewrite(self, entries: list[dict]) -> None:
        """Keep only ``entries`` (atomically: a kill leaves the old file or the new)."""
        if not entries:
            self.path.unlink(missing_ok=True)
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(e) + "\n" for e in entries))
        os.replace(tmp, self.path)
