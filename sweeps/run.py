"""Sweep VAE / VAE-GAN configurations with Optuna on Ray Tune, scored by shared IS / TS actors.

    python sweeps/run.py --space vaegan                      # local Ray, embedded MLflow
    python sweeps/run.py --space vae --preset smoke          # 2 tiny trials, ~3 minutes
    python sweeps/run.py --resume --storage runs/sweep-x     # continue an interrupted sweep

Every trial reports IS and TS at 1K and 5K samples (plus FID, KID, MMD, 1-NN, coverage) and is
logged as a child run in MLflow; the paper's configuration is always the first trial.
Exit codes: 0 done, 1 the sweep failed (message on stderr), 2 bad arguments.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweeps.presets import PRESETS  # noqa: E402
from sweeps.spaces import LR_RANGE, SPACES  # noqa: E402
from sweeps.tuner import OBJECTIVES, SCHEDULERS, SWEEP_FILE  # noqa: E402
from trainables.datasets import DATASETS  # noqa: E402

log = logging.getLogger("sweeps.run")


def _number(kind, minimum=None, strict=False):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
        if minimum is not None and (value <= minimum if strict else value < minimum):
            raise argparse.ArgumentTypeError(
                f"{text} must be {'>' if strict else '>='} {minimum}")
        return value
    return parse


def _range(kind):
    def parse(text):
        try:
            lo, hi = (kind(x) for x in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not LOW,HIGH") from None
        if lo <= 0 or hi <= 0:
            raise argparse.ArgumentTypeError(f"{text}: bounds must be positive")
        if lo > hi:
            raise argparse.ArgumentTypeError(f"{text}: low bound is above the high bound")
        return (lo, hi)
    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sweeps/run.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--space", choices=sorted(SPACES), help="search space (required unless --resume)")
    p.add_argument("--dataset", choices=DATASETS, default="mnist")
    p.add_argument("--num-samples", type=_number(int, 1), help="trials (default: the preset's)")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="paper | quick | smoke (default: paper with GPUs, quick without)")
    p.add_argument("--objective", choices=OBJECTIVES, default="ts",
                   help="ts, is, or is+ts (multi-objective, Pareto front)")
    p.add_argument("--scheduler", choices=SCHEDULERS, default="none",
                   help="asha: stop weak trials early on the per-epoch test error")
    p.add_argument("--lr-range", type=_range(float), default=LR_RANGE, metavar="LOW,HIGH")
    p.add_argument("--epochs-range", type=_range(int), metavar="LOW,HIGH",
                   help="overrides the preset's epoch range")
    p.add_argument("--address", help="Ray cluster address (e.g. auto); default: local Ray")
    p.add_argument("--mlflow-uri", help="tracking server (needed on multi-node clusters); "
                                        "default: SQLite store in the sweep folder")
    p.add_argument("--optuna-storage", help="SQLAlchemy URL; default: SQLite in the sweep folder")
    p.add_argument("--storage", help="sweep folder (default: runs/sweep-SPACE-DATASET-TIME)")
    p.add_argument("--resume", action="store_true", help="continue the sweep in --storage")
    p.add_argument("--gpus-per-trial", type=_number(float, 0), default=0.0,
                   help="fractional values let small trials share a GPU")
    p.add_argument("--cpus-per-trial", type=_number(float, 0, strict=True), default=1.0)
    p.add_argument("--scorer-gpus", type=_number(float, 0), default=0.0,
                   help="GPU share reserved for each scorer actor")
    p.add_argument("--max-concurrent", type=_number(int, 1))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scorers", help="folder with inception/ and vit/ scorer folders to use")
    p.add_argument("--data-dir", help="dataset folder (else GENSWEEP_DATA_DIR, the cache)")
    return p


def settings_from_args(args, parser):
    """Validated :class:`SweepSettings`; argument errors exit 2 via ``parser.error``."""
    from sweeps.tuner import SweepSettings, read_sweep_file

    if args.resume:
        if not args.storage:
            parser.error("--resume needs --storage DIR, the folder of the sweep to continue")
        if not (Path(args.storage) / SWEEP_FILE).is_file():
            parser.error(f"--storage {args.storage} holds no sweep to resume (no {SWEEP_FILE})")
        saved = read_sweep_file(Path(args.storage))["settings"]
        saved.update(storage=args.storage, address=args.address or saved.get("address"))
        return SweepSettings.from_dict(saved)
    if not args.space:
        parser.error(f"--space is required; choose one of {', '.join(sorted(SPACES))}")
    storage = args.storage or time.strftime(f"runs/sweep-{args.space}-{args.dataset}-%Y%m%d-%H%M%S")
    if (Path(storage) / SWEEP_FILE).is_file():
        parser.error(f"--storage {storage} already holds a sweep; pass --resume to continue it "
                     f"or choose another folder (nothing was changed)")
    try:
        return _settings(args, storage)
    except ValueError as exc:
        parser.error(str(exc))


def _settings(args, storage):
    from sweeps.tuner import SweepSettings

    return SweepSettings(
        space=args.space, dataset=args.dataset, preset=args.preset or "quick",
        num_samples=args.num_samples, objective=args.objective, scheduler=args.scheduler,
        address=args.address, mlflow_uri=args.mlflow_uri, optuna_storage=args.optuna_storage,
        storage=storage, gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial,
        scorer_gpus=args.scorer_gpus, max_concurrent=args.max_concurrent, seed=args.seed,
        scorers_dir=args.scorers, data_dir=args.data_dir, lr_range=args.lr_range,
        epochs_range=args.epochs_range)


def choose_preset(settings, args):
    """Settle the preset (asking Ray for GPUs when none was given) and print the plan.

    Starts Ray, so it runs only after the pre-flight checks passed."""
    from sweeps.sweep import concurrent_trials, resolve_preset

    preset, gpus = resolve_preset(args.preset, args.address)
    settings = dataclasses.replace(settings, preset=preset, num_samples=args.num_samples)
    concurrent = concurrent_trials(settings, gpus)
    minutes = settings.preset_obj.estimate_minutes(settings.num_samples, concurrent, gpus > 0)
    chosen = "" if args.preset else f" (chosen: {'GPUs found' if gpus else 'no GPU'})"
    print(f"preset {preset}{chosen}: {settings.num_samples} trials of {settings.space} on "
          f"{settings.dataset}, {concurrent} at a time, estimated {minutes:.0f} min", flush=True)
    return settings


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = settings_from_args(args, parser)

    from sweeps import report
    from sweeps.sweep import SweepError, preflight, run_sweep
    from trainables.datasets import DatasetError

    try:
        # Storage, tracking server and dataset are checked before Ray starts: a full disk or
        # a typo'd URI is a one-line error in seconds, not a traceback from Ray's own start-up.
        preflight(settings)
        if not args.resume:
            settings = choose_preset(settings, args)
        summary = run_sweep(settings, resume=args.resume, checked=True)
    except (SweepError, ConnectionError, DatasetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted; finished trials are kept. Continue with:\n"
              f"  python sweeps/run.py --resume --storage {settings.storage}", file=sys.stderr)
        return 130
    print()
    print(report.format_table(summary["ranked"] or summary["rows"], settings.space,
                              settings.dataset, settings.preset_obj.ns, summary["ceiling"]))
    if summary.get("best_config"):
        print(f"\nbest configuration: {summary['best_config']}")
    else:
        print("\nno trial finished with scores; see results.csv and the MLflow runs",
              file=sys.stderr)
    print(report.how_to_look(summary["sweep_dir"], summary["mlflow_uri"], settings.optuna_url))
    return 0 if summary.get("best_config") else 1


if __name__ == "__main__":
    sys.exit(main())
