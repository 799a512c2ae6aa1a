"""How torch's idle OpenMP threads should wait, measured on the ViT scorer's training loop.

Each measurement is a fresh process (libgomp reads its settings once, at start-up) that trains
the scratch ViT (``scorers.vit.fit``, batch 64, two threads) on random images and prints its
time. Three wait settings, in three situations:

* settings: ``OMP_WAIT_POLICY=PASSIVE`` (sleep at once), ``GOMP_SPINCOUNT=10000`` (the short
  spin ``scorers/vit.py`` sets), libgomp's default (spin 300,000 rounds);
* situations: a quiet machine (a sweep's scorer fine-tune: nothing else runs yet); beside two
  single-threaded busy processes (a sweep's trials); beside a second two-thread run of the
  same training (two fine-tunes at once).

Rounds interleave the settings so that the machine's noise hits all alike; medians and their
ratios to PASSIVE are printed::

    .venv/bin/python bench/omp_wait.py --images 6000 --rounds 2
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"passive": {"OMP_WAIT_POLICY": "PASSIVE"},
            "spin 10k": {"GOMP_SPINCOUNT": "10000"},  # GOMP_SPINCOUNT wins over the policy
            "default": {}}
SITUATIONS = ("quiet", "beside 2 busy threads", "beside a 2nd fine-tune")
BUSY = "while True: pass"


def worker(images: int) -> None:
    sys.path.insert(0, str(REPO))
    import numpy as np

    from scorers import vit

    x = np.random.default_rng(0).random((images, 28, 28), dtype=np.float32)
    y = np.arange(images) % 10
    model = vit.build("scratch")
    start = time.perf_counter()
    vit.fit(model, x, y, epochs=1, batch_size=64, lr=1e-3, seed=0,
            epoch_end=lambda epoch, logs: None, progress=False)
    print(time.perf_counter() - start)


def env_for(setting: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")}
    # An empty OMP_WAIT_POLICY keeps libgomp's default and stops scorers/vit.py from adding
    # its own spin count (libgomp warns about the empty value on stderr, which is discarded).
    return {**env, "OMP_WAIT_POLICY": "", **SETTINGS[setting]}


def run_once(setting: str, situation: str, images: int) -> float:
    cmd = [sys.executable, __file__, "--worker", "--images", str(images)]
    env = env_for(setting)
    background = []
    if situation == "beside 2 busy threads":
        background = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(2)]
    try:
        procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True,
                                  stderr=subprocess.DEVNULL)]
        if situation == "beside a 2nd fine-tune":
            procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True,
                                          stderr=subprocess.DEVNULL))
        times = []
        for proc in procs:
            out, _ = proc.communicate()
            if proc.returncode:
                raise SystemExit(f"worker failed ({setting}, {situation}): exit {proc.returncode}")
            times.append(float(out.strip().splitlines()[-1]))
        return statistics.mean(times)
    finally:
        for proc in background:
            proc.kill()
            proc.wait()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=6000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args.images)
        return 0
    times = {(s, w): [] for w in SITUATIONS for s in SETTINGS}
    for _ in range(args.rounds):
        for situation in SITUATIONS:
            for setting in SETTINGS:
                times[setting, situation].append(run_once(setting, situation, args.images))
    print(f"ViT training, {args.images} images, batch 64, 2 threads, median of {args.rounds} "
          "rounds (seconds; ratio to passive)")
    for situation in SITUATIONS:
        base = statistics.median(times["passive", situation])
        cells = [f"{s} {statistics.median(times[s, situation]):5.1f} s "
                 f"({statistics.median(times[s, situation]) / base:.2f}x)" for s in SETTINGS]
        print(f"  {situation:>24}: " + "; ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
