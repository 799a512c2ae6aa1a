"""Wall and CPU time of a training loop, per epoch and from each epoch's second step on.

Used by ``bench/training_throughput.py`` for both sides (our loop and pythae's trainer), so
both are timed by the same code.
"""
from __future__ import annotations

import time


def now() -> tuple[float, float]:
    """(wall, process CPU) seconds."""
    return time.perf_counter(), time.process_time()


class StepClock:
    """Wall and CPU time of each epoch's train loop, overall and from its second step on.

    A forward pre-hook on the model stamps every training step the same way on both sides,
    so "steady" leaves out the first step, which on pythae's side follows its sanity-check
    forward (warm allocator and caches) and on ours follows model construction. CPU time
    (all threads of this process) is far less disturbed than wall time by other work on the
    machine when torch runs one thread (``--threads 1``)."""

    def __init__(self, model, n_images: int, batch_size: int):
        self.stamps, self.begin = [], None
        self.totals = dict.fromkeys(("loop_s", "loop_cpu_s", "steady_s", "steady_cpu_s"), 0.0)
        self.n_steps = -(-n_images // batch_size)
        model.register_forward_pre_hook(lambda module, args: self.stamps.append(now()))

    def epoch_begin(self) -> None:
        self.begin = now()

    def epoch_end(self, end: tuple[float, float] | None = None) -> None:
        end = end or now()
        self.totals["loop_s"] += end[0] - self.begin[0]
        self.totals["loop_cpu_s"] += end[1] - self.begin[1]
        if self.n_steps > 1:
            second = self.stamps[-(self.n_steps - 1)]
            self.totals["steady_s"] += end[0] - second[0]
            self.totals["steady_cpu_s"] += end[1] - second[1]
