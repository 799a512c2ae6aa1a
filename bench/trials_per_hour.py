"""Trials per hour when 1, 2 or 4 trials share one accelerator (or one CPU share).

    .venv/bin/python bench/trials_per_hour.py [--resource gpu|cpu] [--shares 1,0.5,0.25]
        [--space vae] [--preset quick] [--trials 8] [--epochs 2] [--json PATH]

Why: small VAE trials leave most of a GPU idle, and Ray Tune can pack several onto one
(``--gpus-per-trial 0.5`` or ``0.25``). This bench runs the same sweep once per share, one
after another in this process's machine, with every trial at the same epoch count
(``--epochs-range E,E``) so trials cost the same whatever Optuna samples, and reports:

* trials per hour = finished trials / (last trial end - first trial start) x 3600, from
  each trial's Tune ``timestamp`` and ``time_total_s`` (so Ray start-up and scorer loading,
  the same for every share, stay out of it);
* utilisation of the resource over that window: ``nvidia-smi`` GPU utilisation and memory
  (``--resource gpu``) or the machine's CPU use (``--resource cpu``), sampled every second;
* the ratio of each share's trials per hour to the first share's (target on a GPU: at least
  2.5x at 0.25 against 1).

On a CPU-only machine ``--resource cpu`` runs the same comparison with ``--cpus-per-trial``
(the shares are of the CPUs left beside the scorer actors); it exercises the bench and shows
what packing does on a CPU, not the GPU figure. The scorers come from the cache (fine-tuned
by the first sweep if missing; that happens before any trial starts, so outside the window).
"""
from __future__ import annotations

import argparse
import csv
import logging
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

log = logging.getLogger(__name__)


class UtilisationSampler:
    """Samples GPU (nvidia-smi) or CPU utilisation once a second in a thread, with times."""

    def __init__(self, resource: str):
        self.resource, self.samples = resource, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._cpu_last = None

    @staticmethod
    def _cpu_times() -> tuple[float, float]:
        """(busy, total) jiffies of all CPUs since boot, from /proc/stat (Linux)."""
        fields = [float(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
        return sum(fields) - idle, sum(fields)

    def _sample(self):
        if self.resource == "cpu":
            busy, total = self._cpu_times()
            last_busy, last_total = self._cpu_last
            self._cpu_last = (busy, total)
            return {"util": 100.0 * (busy - last_busy) / max(total - last_total, 1e-9)}
        out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu,memory.used",
                              "--format=csv,noheader,nounits"], capture_output=True, text=True,
                             timeout=10)
        util, mem = (float(v) for v in out.stdout.splitlines()[0].split(","))
        return {"util": util, "mem_mib": mem}

    def _run(self):
        while not self._stop.wait(1.0):
            try:
                self.samples.append({"t": time.time(), **self._sample()})
            except (OSError, ValueError, IndexError, subprocess.SubprocessError) as exc:
                log.warning("utilisation sample failed: %s", exc)

    def __enter__(self):
        if self.resource == "cpu":
            self._cpu_last = self._cpu_times()  # utilisation is over each 1 s interval
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=15)

    def summary(self, start: float, end: float) -> dict:
        inside = [s for s in self.samples if start <= s["t"] <= end]
        if not inside:
            return {"samples": 0}
        out = {"samples": len(inside), "util_mean": statistics.mean(s["util"] for s in inside)}
        if "mem_mib" in inside[0]:
            out["mem_mib_max"] = max(s["mem_mib"] for s in inside)
        return out


def trial_window(results_csv: Path) -> tuple[int, float, float]:
    """(finished trials, first start, last end) in epoch seconds from a sweep's results.csv."""
    with open(results_csv) as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("status") == "finished"]
    if not rows:
        raise RuntimeError(f"no finished trial in {results_csv}")
    ends = [float(r["timestamp"]) for r in rows]
    starts = [float(r["timestamp"]) - float(r["time_total_s"]) for r in rows]
    return len(rows), min(starts), max(ends)


def run_share(args, share: float, folder: Path) -> dict:
    """One sweep with ``share`` of the resource per trial; its throughput and utilisation."""
    flag = "--gpus-per-trial" if args.resource == "gpu" else "--cpus-per-trial"
    cmd = [sys.executable, "sweeps/run.py", "--space", args.space, "--preset", args.preset,
           "--num-samples", str(args.trials), "--epochs-range", f"{args.epochs},{args.epochs}",
           flag, str(share), "--max-concurrent", str(args.trials), "--seed", "0",
           "--storage", str(folder)]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    print(f"share {share}: {' '.join(cmd[1:])}", flush=True)
    log_path = folder.parent / f"{folder.name}.log"  # not with_suffix: "share-0.5" has a dot
    t0 = time.time()
    with UtilisationSampler(args.resource) as sampler, open(log_path, "w") as fh:
        proc = subprocess.run(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT)
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"sweep with share {share} exited {proc.returncode}; see {log_path}")
    n, start, end = trial_window(folder / "results.csv")
    row = {"share": share, "trials": n, "window_s": end - start, "sweep_wall_s": wall,
           "trials_per_hour": 3600.0 * n / (end - start), **sampler.summary(start, end)}
    print(f"share {share}: {n} trials in {end - start:.0f} s of trials ({wall:.0f} s in all) "
          f"-> {row['trials_per_hour']:.1f} trials/h, {args.resource} utilisation "
          f"{row.get('util_mean', float('nan')):.0f}%", flush=True)
    return row


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--resource", choices=("gpu", "cpu"), default="gpu")
    p.add_argument("--shares", default="1,0.5,0.25", help="resource per trial, comma-separated")
    p.add_argument("--space", default="vae")
    p.add_argument("--preset", default="quick")
    p.add_argument("--trials", type=int, default=8, help="trials per sweep (a multiple of 4)")
    p.add_argument("--epochs", type=int, default=2, help="epochs of every trial")
    p.add_argument("--data-dir", help="dataset folder (default $GENSWEEP_DATA_DIR)")
    p.add_argument("--out", default="runs/bench-trials-per-hour", help="sweep folders go here")
    p.add_argument("--json", help="write the raw numbers here")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        shares = [float(s) for s in args.shares.split(",")]
    except ValueError:
        shares = []
    if not shares or any(not 0 < s <= 1 for s in shares):
        print(f"error: --shares {args.shares!r}: expected numbers in (0, 1], e.g. 1,0.5,0.25",
              file=sys.stderr)
        return 2
    if args.trials < 1 or args.epochs < 1:
        print(f"error: --trials {args.trials} and --epochs {args.epochs} must be at least 1",
              file=sys.stderr)
        return 2
    if args.resource == "gpu" and shutil.which("nvidia-smi") is None:
        print("error: --resource gpu needs nvidia-smi (no NVIDIA GPU here); use --resource cpu",
              file=sys.stderr)
        return 2
    out = Path(args.out) / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True)
    rows = [run_share(args, s, out / f"share-{s:g}") for s in shares]
    base = rows[0]["trials_per_hour"]
    print(f"\n{args.space}, preset {args.preset}, {args.trials} trials of {args.epochs} epochs, "
          f"{args.resource} shares per trial:")
    for r in rows:
        r["ratio_to_first"] = r["trials_per_hour"] / base
        print(f"  {r['share']:g}: {r['trials_per_hour']:7.1f} trials/h  x{r['ratio_to_first']:.2f}"
              f"  utilisation {r.get('util_mean', float('nan')):5.1f}%"
              + (f"  memory max {r['mem_mib_max']:.0f} MiB" if "mem_mib_max" in r else ""))
    if args.json:
        from shared_scorers import write_report

        write_report(args.json, {"args": vars(args), "cpus": os.cpu_count(), "rows": rows,
                                 "date": time.strftime("%Y-%m-%d %H:%M:%S"), "folder": str(out)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
