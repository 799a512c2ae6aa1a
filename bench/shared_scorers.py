"""Shared named scorer actors vs one classifier copy per trial: wall time and memory.

    .venv/bin/python bench/shared_scorers.py [--full] [--ks 1 2 4] [--samples 1000] [--json PATH]

Why: a sweep scores every trial with Inception v3 (IS) and ViT (TS). The design under test
(``sweeps.trial``) has ONE named ``ScorerActor`` per scorer that every trial calls; the
alternative is each trial loading both classifiers itself. This measures, for K concurrent
trials that each score ``--samples`` images with both scorers, on a real local Ray
(``ray.init(num_cpus=2)``):

* shared: both actors started fresh for each K (``start_scorer_actor``, 1 CPU each, named,
  as the sweep does), then K trial tasks (0 CPU: they only wait) send their samples to them.
  Wall time is reported without and with the actors' start-up (loading the classifiers).
* own: K trial tasks of 2/K CPUs each (so all K run at once on the 2 CPUs, like K
  concurrent trials), ``max_calls=1`` (a fresh process per trial), each loading both scorer
  folders and calling ``score_images`` itself.

Memory: every process that hosts classifiers reports its own peak RSS (``VmHWM`` from
/proc/<pid>/status; read by the driver for the actors, by the task itself at its end).
Classifier memory of a process = VmHWM - the RSS a Ray worker has without classifiers
(for tasks: their own RSS at task start; for actors: the VmHWM of an idle probe actor).
A driver thread also samples the summed RSS of all Ray worker processes of this run
(descendants of the driver whose title starts with ``ray::``) every 0.1 s; its peak above
the pre-run level is the node-level concurrent footprint.

Samples: the first n images of the real MNIST *ceiling* half (``scorers.realsplit``; never
the reference half the scores compare against) plus Gaussian noise (sigma 25 grey levels,
seed = trial index), clipped to uint8; the same arrays go to both designs. Scorers: small
ones fine-tuned once into ``$GENSWEEP_CACHE_DIR`` (1 epoch on 1,000 images, evaluated on all
10,000 test images so every real reference feature is stored and no design predicts real
images at score time). Timings on a shared machine are noisy: the designs alternate order
per K, and ratios within one run are what counts.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)
KINDS = ("inception", "vit")
NAMESPACE = "bench_shared_scorers"
MIB = 1024 * 1024


def proc_mem(pid: int | str = "self") -> dict:
    """VmRSS and VmHWM (peak RSS) of ``pid`` in MiB, from /proc/<pid>/status."""
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) / 1024  # kB -> MiB
    return {"rss_mib": out.get("VmRSS", 0.0), "hwm_mib": out.get("VmHWM", 0.0)}


def ray_worker_rss(root: int) -> float:
    """Summed RSS (MiB) of the ``ray::`` worker processes descending from ``root``."""
    parent, titles = {}, {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                stat = fh.read()
            parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                titles[int(entry)] = fh.read(64)
        except (OSError, IndexError, ValueError):
            continue
    ours, frontier = set(), {root}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - ours
        ours |= frontier
    total = 0.0
    for pid in ours:
        if titles.get(pid, b"").startswith(b"ray::"):
            try:
                total += proc_mem(pid)["rss_mib"]
            except OSError:
                pass
    return total


class RssSampler(threading.Thread):
    """Peak of ``ray_worker_rss(driver)`` while running, sampled every ``interval`` s."""

    def __init__(self, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.interval, self.peak, self._stop_evt = interval, 0.0, threading.Event()
        self.start_level = ray_worker_rss(os.getpid())

    def run(self) -> None:
        while not self._stop_evt.is_set():
            self.peak = max(self.peak, ray_worker_rss(os.getpid()))
            self._stop_evt.wait(self.interval)

    def stop(self) -> dict:
        self._stop_evt.set()
        self.join()
        return {"start_mib": self.start_level, "peak_mib": self.peak,
                "peak_above_start_mib": self.peak - self.start_level}


def write_report(path, report: dict) -> None:
    """The raw numbers of a benchmark run as JSON (the figures in docs/benchmarks.md)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=1))
    log.info("raw numbers written to %s", path)


def make_samples(n: int, k: int, data_dir=None) -> list:
    """K perturbed copies of the first n ceiling-half MNIST test images (uint8)."""
    import numpy as np

    from scorers import realsplit
    from trainables.datasets import load_dataset

    base = load_dataset("mnist", data_dir=data_dir, allow_download=False).test.images
    base = base[realsplit.indices("ceiling", n)].astype(np.float32)
    return [np.clip(base + np.random.default_rng(i).normal(0, 25, base.shape), 0, 255)
            .astype(np.uint8) for i in range(k)]


def trial_shared(images, names: dict, ns) -> dict:
    """One trial of the shared design: ask every named actor, as ``sweeps.trial`` does."""
    import ray

    t0 = time.perf_counter()
    refs = [ray.get_actor(name, namespace=NAMESPACE).score.remote(images, ns=tuple(ns),
                                                                   dataset="mnist")
            for name in names.values()]
    scores = {}
    for part in ray.get(refs):
        scores.update(part)
    return {"seconds": time.perf_counter() - t0, "scores": scores}


def trial_own(images, dirs: dict, ns) -> dict:
    """One trial of the per-trial design: load both classifiers here and score."""
    from scorers.classifier_scores import score_images
    from scorers.scorer_cache import load_scorer

    start = proc_mem()
    t0 = time.perf_counter()
    scorers = {kind: load_scorer(path) for kind, path in dirs.items()}
    t1 = time.perf_counter()
    scores = {}
    for scorer in scorers.values():
        scores.update(score_images(scorer, images, ns=ns, dataset="mnist"))
    t2 = time.perf_counter()
    end = proc_mem()
    return {"pid": os.getpid(), "start_rss_mib": start["rss_mib"], "hwm_mib": end["hwm_mib"],
            "classifier_mib": end["hwm_mib"] - start["rss_mib"], "load_s": t1 - t0,
            "score_s": t2 - t1, "seconds": t2 - t0, "scores": scores}


class Probe:
    """An idle actor: the memory of a Ray worker process that hosts no classifier."""

    def mem(self) -> dict:
        return {"pid": os.getpid(), **proc_mem()}


def wait_exit(pids, timeout: float = 60.0) -> None:
    """Wait until ``pids`` have exited, so the next run's memory baseline excludes them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in pids):
        time.sleep(0.2)


def run_shared(ray, dirs: dict, refs: list, ns, k: int, baseline_mib: float) -> dict:
    from scorers.actor import start_scorer_actor

    sampler = RssSampler()
    sampler.start()
    t0 = time.perf_counter()
    names = {kind: f"bench-{kind}-k{k}" for kind in dirs}
    handles = {kind: start_scorer_actor(path, names[kind], num_cpus=1, namespace=NAMESPACE,
                                        verify=False) for kind, path in dirs.items()}
    pids = {kind: info["pid"] for kind, info in
            zip(handles, ray.get([h.ping.remote() for h in handles.values()]))}
    t1 = time.perf_counter()
    task = ray.remote(trial_shared).options(num_cpus=0)
    trials = ray.get([task.remote(ref, names, ns) for ref in refs])
    t2 = time.perf_counter()
    actors = {kind: proc_mem(pid) for kind, pid in pids.items()}
    node = sampler.stop()
    for h in handles.values():
        ray.kill(h)
    wait_exit(pids.values())
    hwm = sum(a["hwm_mib"] for a in actors.values())
    return {"design": "shared", "k": k, "load_s": t1 - t0, "score_wall_s": t2 - t1,
            "wall_incl_load_s": t2 - t0, "trial_seconds": [t["seconds"] for t in trials],
            "actors": actors, "hosting_hwm_mib": hwm,
            "classifier_mib": hwm - len(actors) * baseline_mib, "node_rss": node,
            "scores_trial0": trials[0]["scores"]}


def run_own(ray, dirs: dict, refs: list, ns, k: int) -> dict:
    sampler = RssSampler()
    sampler.start()
    t0 = time.perf_counter()
    task = ray.remote(max_calls=1)(trial_own).options(num_cpus=2 / k)
    trials = ray.get([task.remote(ref, dirs, ns) for ref in refs])
    t1 = time.perf_counter()
    node = sampler.stop()
    wait_exit([t["pid"] for t in trials])
    return {"design": "own", "k": k, "wall_incl_load_s": t1 - t0,
            "trial_load_s": [t["load_s"] for t in trials],
            "trial_score_s": [t["score_s"] for t in trials],
            "trials": [{key: t[key] for key in ("pid", "start_rss_mib", "hwm_mib",
                                               "classifier_mib")} for t in trials],
            "hosting_hwm_mib": sum(t["hwm_mib"] for t in trials),
            "classifier_mib": sum(t["classifier_mib"] for t in trials), "node_rss": node,
            "scores_trial0": trials[0]["scores"]}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--full", action="store_true",
                   help="5,000 samples per trial scored at n=1000 and 5000, K = 1 2 4 8")
    p.add_argument("--ks", type=int, nargs="+", help="trial counts (quick: 1 2 4)")
    p.add_argument("--samples", type=int, help="samples per trial (quick: 1000)")
    p.add_argument("--data-dir", help="MNIST folder (default $GENSWEEP_DATA_DIR)")
    p.add_argument("--scorer-epochs", type=int, default=1)
    p.add_argument("--scorer-subset", type=int, default=1000)
    p.add_argument("--json", help="write the raw numbers here")
    return p


def summary_line(own: dict, shared: dict) -> str:
    k = own["k"]
    return (f"K={k}: wall shared {shared['score_wall_s']:.1f}s (+load {shared['load_s']:.1f}s"
            f" = {shared['wall_incl_load_s']:.1f}s) vs own {own['wall_incl_load_s']:.1f}s -> "
            f"own/shared(incl. load) {own['wall_incl_load_s'] / shared['wall_incl_load_s']:.2f}x; "
            f"classifier memory shared {shared['classifier_mib']:.0f} MiB vs own "
            f"{own['classifier_mib']:.0f} MiB -> shared/own {shared['classifier_mib'] / own['classifier_mib']:.3f}"
            f" (1/K = {1 / k:.3f}); node peak above start shared "
            f"{shared['node_rss']['peak_above_start_mib']:.0f} vs own "
            f"{own['node_rss']['peak_above_start_mib']:.0f} MiB")


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    ks = args.ks or ([1, 2, 4, 8] if args.full else [1, 2, 4])
    n = args.samples or (5000 if args.full else 1000)
    ns = (1000, 5000) if n >= 5000 else (n,)
    import ray

    from scorers.scorer_cache import ensure_scorer

    dirs = {kind: str(ensure_scorer("mnist", kind, epochs=args.scorer_epochs,
                                    subset=args.scorer_subset, eval_subset=None,
                                    data_dir=args.data_dir, progress=False)) for kind in KINDS}
    samples = make_samples(n, max(ks), args.data_dir)
    ray.init(num_cpus=2, include_dashboard=False, namespace=NAMESPACE,
             logging_level=logging.WARNING)
    probe = ray.remote(Probe).options(num_cpus=0).remote()
    baseline = ray.get(probe.mem.remote())
    ray.kill(probe)
    log.info("idle Ray worker: RSS %.0f MiB, peak %.0f MiB", baseline["rss_mib"],
             baseline["hwm_mib"])
    results = []
    for i, k in enumerate(ks):
        refs = [ray.put(s) for s in samples[:k]]
        pair = {}
        for design in (("shared", "own") if i % 2 == 0 else ("own", "shared")):
            log.info("K=%d: %s design", k, design)
            pair[design] = (run_shared(ray, dirs, refs, ns, k, baseline["hwm_mib"])
                            if design == "shared" else run_own(ray, dirs, refs, ns, k))
        results.extend([pair["shared"], pair["own"]])
        same = all(abs(pair["shared"]["scores_trial0"][key] - v) <= 1e-6 * max(1, abs(v))
                   for key, v in pair["own"]["scores_trial0"].items())
        print(summary_line(pair["own"], pair["shared"]) + f"; same scores: {same}", flush=True)
    ray.shutdown()
    if args.json:
        report = {"samples_per_trial": n, "ns": list(ns), "ks": ks, "scorers": dirs,
                  "idle_worker": baseline, "host": platform.node(), "cpus": os.cpu_count(),
                  "date": time.strftime("%Y-%m-%d %H:%M:%S"), "results": results}
        write_report(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
