"""Scorer actors under load: N callers at once, each in its own process as trials are.

    GENSWEEP_DATA_DIR=... python bench/actor_load.py --scorer-dir DIR [--kind vit]
        [--callers 1,4,16] [--n 1000,5000] [--kill] [--json out.json]

For each N and sample count n, N Ray tasks (separate worker processes, like N trials) send
one score request each to one named ``ScorerActor`` at the same moment. Reported per (N, n):
latency p50 / p99 (request sent to result back), the actor's peak memory (VmHWM of its
process), and whether every result equals the one the same actor computed alone. With
``--kill`` the actor is SIGKILLed while it serves the requests (once it has spent
``BUSY_CPU_S`` of CPU on them; ``unfinished_at_kill`` counts the requests not yet
answered): Ray restarts it and retries the calls (``max_restarts=-1``,
``max_task_retries``), and the results must still equal.

An actor serves one request at a time (the score maths is not thread-safe to overlap, and
its CPU share is reserved): N requests take about N times one; the p99 shows that queue.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

NAMESPACE = "actor-load"


def caller(name: str, images, ns, sent_at: float):
    """Runs in a Ray worker process: one score request, timed from ``sent_at``."""
    import ray

    handle = ray.get_actor(name, namespace=NAMESPACE)
    result = ray.get(handle.score.remote(images, ns=tuple(ns)))
    return result, time.time() - sent_at


def max_rel_diff(a: dict, b: dict) -> float:
    """The largest relative difference between two score dicts' shared values."""
    diffs = [abs(a[k] - b[k]) / max(abs(b[k]), 1e-12) for k in a.keys() & b.keys()
             if np.isfinite(a[k]) and np.isfinite(b[k])]
    return float(max(diffs, default=0.0))


BUSY_CPU_S = 0.3  # CPU seconds the actor spends on the requests before --kill kills it


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (/proc/PID/stat fields 14, 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_memory_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def run(scorer_dir: str, callers: list, ns: list, kill: bool, cpus: float = 0.5) -> list:
    import ray

    from scorers.actor import start_scorer_actor
    from scorers.classifier_scores import score_images
    from scorers.scorer_cache import load_scorer
    from trainables.datasets import load_dataset

    ray.init(address="local", namespace=NAMESPACE, include_dashboard=False,
             log_to_driver=False)
    task = ray.remote(num_cpus=0)(caller)
    scorer = load_scorer(scorer_dir)
    test = load_dataset(scorer.dataset).test.images
    rows = []
    for n in ns:
        images = test[:n]
        in_driver = score_images(scorer, images, (n,))
        for k in callers:
            name = f"load-{n}-{k}"
            handle = start_scorer_actor(scorer_dir, name, num_cpus=cpus, namespace=NAMESPACE)
            pid = ray.get(handle.ping.remote())["pid"]
            # "alone" is one request to the same actor: the driver runs torch on more
            # threads, whose sums differ in the last bits (reported as max_rel_diff_driver)
            alone = ray.get(handle.score.remote(images, ns=(n,)))
            sent = time.time()
            refs = [task.remote(name, images, (n,), sent) for _ in range(k)]
            killed_pid, unfinished, busy = None, None, None
            if kill:
                # kill while a request is being served: once the actor has burnt CPU on it
                # (a fixed sleep could land before the requests arrive, or after the last)
                start_cpu, deadline = cpu_seconds(pid), time.time() + 120
                while cpu_seconds(pid) - start_cpu < BUSY_CPU_S and time.time() < deadline:
                    time.sleep(0.01)
                busy = round(cpu_seconds(pid) - start_cpu, 2)
                unfinished = len(ray.wait(refs, num_returns=len(refs), timeout=0)[1])
                killed_pid = pid
                os.kill(pid, signal.SIGKILL)
            out = ray.get(refs, timeout=3600)
            lat = np.array([t for _, t in out])
            new_pid = ray.get(handle.ping.remote())["pid"]
            rows.append({"n": n, "callers": k, "p50_s": round(float(np.percentile(lat, 50)), 2),
                         "p99_s": round(float(np.percentile(lat, 99)), 2),
                         "wall_s": round(time.time() - sent, 2),
                         "actor_peak_mb": peak_memory_mb(new_pid),
                         "all_equal_alone": all(r == alone for r, _ in out),
                         "max_rel_diff_driver": max_rel_diff(alone, in_driver),
                         "killed_actor": killed_pid is not None,
                         "unfinished_at_kill": unfinished,
                         "actor_cpu_s_at_kill": busy,
                         "restarted": killed_pid is not None and new_pid != killed_pid})
            print(json.dumps(rows[-1]), flush=True)
            ray.kill(handle)
    ray.shutdown()
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench/actor_load.py", description=__doc__.split("\n")[0])
    p.add_argument("--scorer-dir", required=True)
    p.add_argument("--callers", default="1,4,16")
    p.add_argument("--n", default="1000,5000")
    p.add_argument("--kill", action="store_true")
    p.add_argument("--json")
    args = p.parse_args(argv)
    rows = run(args.scorer_dir, [int(x) for x in args.callers.split(",")],
               [int(x) for x in args.n.split(",")], args.kill)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0 if all(r["all_equal_alone"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
