"""Ray Tune overhead: a training trial inside ``tune.Tuner`` against the same run bare.

    GENSWEEP_DATA_DIR=/work/shared/data python bench/tune_overhead.py \\
        [--model vae] [--arch small] [--subset 4096] [--epochs 2] [--repeats 3] [--json out.json]

One process starts a local Ray (``ray.init(address="local", num_cpus=2)``) and then, for each
repeat, interleaved (bare first on even repeats, Tune first on odd ones):

* bare: ``run_training(cfg, LocalReporter(tmp))`` in this driver process;
* tune: ``tune.Tuner(trainables.trainable.train, param_space=cfg)`` with ``RunConfig(storage_path=
  tmp)``, the trainable reporting and checkpointing every epoch as in a sweep;
* null: a trial that only imports what the real one imports (torch, pythae, trainables) and
  reports once: Tune's fixed per-trial cost (actor and worker process start, imports,
  bookkeeping) without any training.

Both training sides do exactly the same work (data load, epochs with eval, a safetensors
checkpoint per epoch, prior samples and a final checkpoint). Reported:

* epoch overhead: the trial's own ``epoch_time_s`` / ``train_time_s`` against bare. Epoch 1
  in a trial runs in a fresh worker process (first-call kernel set-up lands in it), so epochs
  >= 2 are shown separately as the steady state a long sweep sees;
* per-trial overhead beyond start-up: tune wall - bare wall - null-trial wall, as % of the
  bare run's epoch time (reporting, checkpoint persistence, any slowdown);
* fixed start-up: ``ray.init``, the first (cold) trial, and a warm null trial.

The trial gets ``--cpus-per-trial`` (default 2, the whole machine) so Ray gives its worker the
same torch thread count as the driver (Ray sets OMP_NUM_THREADS to the trial's CPUs); the null
trial reports the thread count it saw.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Tune's rich console output ignores RunConfig(verbose=0) unless the legacy reporter is used.
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")

from trainables.config import ARCHS, MODELS, TrainConfig  # noqa: E402

log = logging.getLogger("bench.tune_overhead")


def _null_trial(config: dict) -> None:
    """A Tune trial that trains nothing: imports as the real one does, reports once."""
    import pythae.models  # noqa: F401
    import torch
    from ray import tune

    import trainables.trainable  # noqa: F401

    tune.report({"torch_threads": torch.get_num_threads(), "pid": os.getpid()})


def trial_config(args, seed: int) -> dict:
    data_dir = args.data_dir or os.environ.get("GENSWEEP_DATA_DIR")
    return {"model": args.model, "arch": args.arch, "subset": args.subset,
            "test_subset": args.test_subset, "epochs": args.epochs, "seed": seed,
            "n_samples": [args.n_samples], "data_dir": data_dir}


def run_bare(config: dict, workdir: Path) -> dict:
    """``run_training`` with a LocalReporter, in this process."""
    from trainables.trainable import LocalReporter, run_training

    out = Path(tempfile.mkdtemp(prefix="bare-", dir=workdir))
    t0 = time.perf_counter()
    result = run_training(TrainConfig.from_dict(config), LocalReporter(out))
    wall = time.perf_counter() - t0
    shutil.rmtree(out, ignore_errors=True)
    if result.status != "finished":
        raise RuntimeError(f"bare run ended {result.status}: {result.metrics}")
    return {"wall_s": wall, "epochs": _epoch_rows(result.history)}


def _epoch_rows(rows) -> list:
    keys = ("epoch", "epoch_time_s", "train_time_s", "images_per_s", "train_loss")
    return [{k: float(row[k]) for k in keys} for row in rows]


def cpu_snapshot() -> dict:
    """CPU seconds so far of this process and every process it started (Ray's GCS, raylet,
    agents and workers all descend from a local ``ray.init``), read from /proc (Linux; on
    other systems this returns {} and the background-CPU line reads 0)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    procs = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1: text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        # fields[1] = ppid, fields[11], fields[12] = utime, stime (clock ticks)
        procs[int(stat.parent.name)] = (int(fields[1]), name,
                                        (int(fields[11]) + int(fields[12])) / tick)
    mine, frontier = {}, {os.getpid()}
    while frontier:
        mine.update({pid: procs[pid][1:] for pid in frontier if pid in procs})
        frontier = {pid for pid, (ppid, _, _) in procs.items() if ppid in frontier} - set(mine)
    return mine


def background_cpu(before: dict, after: dict) -> dict:
    """CPU seconds, by process name, of the processes alive across a fit: the driver and Ray's
    daemons, not the trial's worker (it exits with the trial)."""
    used = {}
    for pid, (name, cpu) in after.items():
        if pid in before:
            used[name] = used.get(name, 0.0) + cpu - before[pid][1]
    return used


def _fit(trainable, config: dict, workdir: Path, cpus: float, name: str):
    from ray import tune

    snap, t0 = cpu_snapshot(), time.perf_counter()
    # Same Tune settings as sweeps/tuner.py: a fresh actor per trial, keep 2 checkpoints.
    tuner = tune.Tuner(
        tune.with_resources(trainable, {"cpu": cpus}), param_space=config,
        tune_config=tune.TuneConfig(num_samples=1, reuse_actors=False),
        run_config=tune.RunConfig(name=name, storage_path=str(workdir), verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=2)))
    result = tuner.fit()[0]
    wall = time.perf_counter() - t0
    result.background_cpu = background_cpu(snap, cpu_snapshot())
    if result.error:
        raise RuntimeError(f"trial {name} failed: {result.error}")
    return wall, result


def run_tune(config: dict, workdir: Path, cpus: float, name: str) -> dict:
    """The real trainable inside a Tune trial; epoch numbers as the trial reported them."""
    from trainables.trainable import train

    wall, result = _fit(train, config, workdir, cpus, name)
    df = result.metrics_dataframe
    rows = df[df["status"] == "training"].to_dict("records")
    if result.metrics.get("status") != "finished" or len(rows) != config["epochs"]:
        raise RuntimeError(f"trial {name} did not finish: {result.metrics}")
    return {"wall_s": wall, "epochs": _epoch_rows(rows), "background_cpu": result.background_cpu}


def run_null(workdir: Path, cpus: float, name: str) -> dict:
    wall, result = _fit(_null_trial, {}, workdir, cpus, name)
    return {"wall_s": wall, "torch_threads": int(result.metrics["torch_threads"])}


def _sum(run: dict, key: str, first: int = 1) -> float:
    return sum(e[key] for e in run["epochs"] if e["epoch"] >= first)


def summarize(pairs: list, startup: dict) -> dict:
    """Medians over the interleaved repeats of each overhead."""
    med = lambda xs: statistics.median(xs) if xs else float("nan")
    pct = lambda t, b: 100.0 * (t / b - 1.0)
    s = {}
    for key in ("epoch_time_s", "train_time_s"):
        s[f"{key}_overhead_pct_all"] = [pct(_sum(p["tune"], key), _sum(p["bare"], key))
                                        for p in pairs]
        later = [p for p in pairs if len(p["bare"]["epochs"]) > 1]
        s[f"{key}_overhead_pct_steady"] = [pct(_sum(p["tune"], key, 2), _sum(p["bare"], key, 2))
                                           for p in later]
    s["beyond_startup_s"] = [p["tune"]["wall_s"] - p["bare"]["wall_s"] - p["null"]["wall_s"]
                             for p in pairs]
    s["beyond_startup_pct_of_epochs"] = [
        100.0 * b / _sum(p["bare"], "epoch_time_s") for b, p in zip(s["beyond_startup_s"], pairs)]
    s["wall_diff_s"] = [p["tune"]["wall_s"] - p["bare"]["wall_s"] for p in pairs]
    s["null_trial_s"] = [p["null"]["wall_s"] for p in pairs]
    s["background_cores"] = [sum(p["tune"]["background_cpu"].values()) / p["tune"]["wall_s"]
                             for p in pairs]
    s["median"] = {k: med(v) for k, v in s.items() if isinstance(v, list)}
    s["startup"] = startup
    return s


def print_report(pairs: list, summary: dict, meta: dict) -> None:
    print(f"\nTune overhead: {meta['model']} ({meta['arch']} nets), subset {meta['subset']}, "
          f"{meta['epochs']} epoch(s), trial cpus {meta['cpus_per_trial']}, torch threads: "
          f"driver {meta['driver_threads']}, trial {meta['trial_threads']}")
    print(f"{'rep':>3} {'side':5} {'wall s':>8} {'epoch s (per epoch)':>26} "
          f"{'train s (per epoch)':>26} {'img/s ep1':>10}")
    for p in pairs:
        for side in p["order"]:
            run = p[side]
            ep = ", ".join(f"{e['epoch_time_s']:.2f}" for e in run["epochs"])
            tr = ", ".join(f"{e['train_time_s']:.2f}" for e in run["epochs"])
            print(f"{p['repeat']:>3} {side:5} {run['wall_s']:8.2f} {ep:>26} {tr:>26} "
                  f"{run['epochs'][0]['images_per_s']:10.1f}")
        print(f"{p['repeat']:>3} {'null':5} {p['null']['wall_s']:8.2f}")
    m, st = summary["median"], summary["startup"]
    print("\nmedians over repeats (per-repeat values in --json):")
    print(f"  epoch overhead, all epochs      (tune/bare epoch_time_s - 1): "
          f"{m['epoch_time_s_overhead_pct_all']:+6.2f} %  (train only "
          f"{m['train_time_s_overhead_pct_all']:+.2f} %)")
    if summary["epoch_time_s_overhead_pct_steady"]:
        print(f"  epoch overhead, epochs >= 2     (steady state):              "
              f"{m['epoch_time_s_overhead_pct_steady']:+6.2f} %  (train only "
              f"{m['train_time_s_overhead_pct_steady']:+.2f} %)")
    print(f"  trial wall - bare wall:                                      "
          f"{m['wall_diff_s']:6.2f} s")
    print(f"  ... minus the null trial (reporting, checkpoints, slowdown): "
          f"{m['beyond_startup_s']:6.2f} s = {m['beyond_startup_pct_of_epochs']:+.1f} % of "
          f"the bare epochs")
    print(f"  CPU used by the driver and Ray's daemons during a training trial: "
          f"{m['background_cores']:.3f} cores (of 2)")
    print(f"  fixed start-up: ray.init {st['ray_init_s']:.2f} s, import ray.tune "
          f"{st['import_tune_s']:.2f} s, first (cold) null trial {st['cold_null_trial_s']:.2f} s, "
          f"warm null trial {m['null_trial_s']:.2f} s")


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="bench/tune_overhead.py",
        description="Epoch time and wall time of a training run inside a Ray Tune trial vs "
                    "the same run bare in the driver, interleaved; prints the overhead.")
    p.add_argument("--model", choices=MODELS, default="vae")
    p.add_argument("--arch", choices=ARCHS, default="small")
    p.add_argument("--subset", type=int, default=4096, help="training images (default 4096)")
    p.add_argument("--test-subset", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=2,
                   help="epochs per run (default 2: epoch 1 is cold in a fresh trial process, "
                        "epoch 2 shows the steady state)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--n-samples", type=int, default=100,
                   help="prior samples drawn at the end of each run (both sides)")
    p.add_argument("--cpus-per-trial", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", help="default: $GENSWEEP_DATA_DIR")
    p.add_argument("--full", action="store_true",
                   help="paper nets on full MNIST and test set (hours on a 2-core CPU)")
    p.add_argument("--json", metavar="PATH", help="write raw numbers here")
    args = p.parse_args(argv)
    if args.full:
        args.arch, args.subset, args.test_subset = "paper", None, None
    if args.repeats < 1 or args.epochs < 1:
        p.error("--repeats and --epochs must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for name in ("trainables", "ray", "ray.tune"):
        logging.getLogger(name).setLevel(logging.WARNING)
    import torch

    t0 = time.perf_counter()
    import ray
    from ray import tune  # noqa: F401
    import_tune = time.perf_counter() - t0
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray_init = time.perf_counter() - t0
    workdir = Path(tempfile.mkdtemp(prefix="bench-tune-"))
    try:
        cold = run_null(workdir, args.cpus_per_trial, "cold_null")
        log.info("ray.init %.2f s, cold null trial %.2f s", ray_init, cold["wall_s"])
        # An untimed bare run warms this process (imports, kernels) as a sweep's workers are not.
        run_bare(trial_config(args, args.seed), workdir)
        pairs = []
        for r in range(args.repeats):
            config = trial_config(args, args.seed + r)
            order = ("bare", "tune") if r % 2 == 0 else ("tune", "bare")
            pair = {"repeat": r, "order": order, "seed": args.seed + r}
            for side in order:
                pair[side] = (run_bare(config, workdir) if side == "bare"
                              else run_tune(config, workdir, args.cpus_per_trial, f"trial_{r}"))
                log.info("repeat %d %s: wall %.2f s, epochs %s", r, side, pair[side]["wall_s"],
                         [round(e["epoch_time_s"], 2) for e in pair[side]["epochs"]])
            pair["null"] = run_null(workdir, args.cpus_per_trial, f"null_{r}")
            pairs.append(pair)
    finally:
        ray.shutdown()
        shutil.rmtree(workdir, ignore_errors=True)
    startup = {"ray_init_s": ray_init, "import_tune_s": import_tune,
               "cold_null_trial_s": cold["wall_s"]}
    summary = summarize(pairs, startup)
    meta = {"model": args.model, "arch": args.arch, "subset": args.subset,
            "test_subset": args.test_subset, "epochs": args.epochs, "repeats": args.repeats,
            "cpus_per_trial": args.cpus_per_trial, "driver_threads": torch.get_num_threads(),
            "trial_threads": cold["torch_threads"], "ray": ray.__version__,
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "loadavg_end": os.getloadavg(), "argv": sys.argv[1:]}
    print_report(pairs, summary, meta)
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "pairs": pairs,
                                               "summary": summary}, indent=2, default=float))
        print(f"raw numbers: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
