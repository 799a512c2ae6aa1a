"""Sweep VAE / VAE-GAN configurations with Optuna on Ray Tune, scored by shared IS / TS actors.

    python sweeps/run.py --space vaegan                      # local Ray, embedded MLflow
    python sweeps/run.py --space vae --preset smoke          # 2 tiny trials, about a minute
    python sweeps/run.py --resume --storage runs/sweep-x     # continue an interrupted sweep

Every trial reports IS and TS at 1K and 5K samples (plus FID, KID, MMD, 1-NN, coverage) and is
logged as a child run in MLflow; the paper's configuration is always the first trial.
Exit codes: 0 done, 1 the sweep failed (message on stderr), 2 bad arguments, 130 interrupted.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

try:
    from scorers.keys import OBJECTIVES
    from sweeps import report, sweep_record
    from sweeps.plan import PlanError, SweepPlan
    from sweeps.preflight import SweepError, preflight
    from sweeps.presets import PRESETS
    from sweeps.progress import following
    from sweeps.redact import redact_url
    from sweeps.request import SCHEDULERS, SweepRequest
    from sweeps.spaces import CONDITIONAL, SPACES
    from sweeps.sweep import (deliver_kept_calls, init_ray, mlflow_incomplete, new_state,
                              plan_sweep, run_sweep)
    from sweeps.sweep_record import SWEEP_FILE
    from trainables.cli import (ArgumentParser, exit_interrupted, interrupts, number, positive_int,
                                setup_logging, value_range)
    from trainables.config import SAMPLERS
    from trainables.datasets import DATASETS, DatasetError
except ModuleNotFoundError as exc:  # run as a script from a checkout that was not installed
    sys.exit(f"sweeps/run.py: error: {exc}; install gensweep first: pip install -e .")

PROG = "sweeps/run.py"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    p.add_argument("--space", choices=sorted(SPACES), help="search space (required unless --resume)")
    p.add_argument("--dataset", choices=DATASETS, default="mnist")
    p.add_argument("--num-samples", type=positive_int, help="trials (default: the preset's)")
    p.add_argument("--preset", choices=sorted(PRESETS),
                   help="paper | quick | smoke (default: paper with GPUs, quick without)")
    p.add_argument("--objective", choices=sorted(OBJECTIVES), default="ts",
                   help="what to maximise: ts (Transformer Score), is (Inception Score), cas "
                        "(accuracy of a classifier trained on the samples); a '+' of them is "
                        "multi-objective (a Pareto front)")
    p.add_argument("--scheduler", choices=SCHEDULERS,
                   help="asha: stop weak trials early on a cheap TS probe of a few "
                        "samples after each round (default: the preset's; quick uses asha)")
    p.add_argument("--lr-range", type=value_range(float), metavar="LOW,HIGH",
                   help="learning-rate range (default: the preset's)")
    p.add_argument("--epochs-range", type=value_range(int), metavar="LOW,HIGH",
                   help="an epoch budget searched in this range, instead of the preset's")
    p.add_argument("--train-images", type=positive_int, metavar="N",
                   help="an image budget: every trial trains on N images, instead of the "
                        "preset's budget")
    p.add_argument("--sampler", choices=SAMPLERS,
                   help="where each trial's scored samples come from: latent-gmm (z from a "
                        "10-component Gaussian mixture fitted to the encoder's codes of the "
                        "trial's training images; the default) or prior (z ~ N(0, I); the "
                        "default of a class-conditional sweep)")
    p.add_argument("--conditional", nargs="?", const="on", choices=CONDITIONAL, default="off",
                   help="class-conditional models: on (every trial; the bare flag), search "
                        "(chosen per trial; the paper-config trial stays unconditional), or "
                        "off (the default: the paper's models)")
    p.add_argument("--address", help="Ray cluster address (e.g. auto); default: a new local Ray")
    p.add_argument("--mlflow-uri", help="tracking server (needed on multi-node clusters); "
                                        "default: SQLite store in the sweep folder")
    p.add_argument("--optuna-storage", help="SQLAlchemy URL; default: SQLite in the sweep folder")
    p.add_argument("--storage", help="sweep folder (default: runs/sweep-SPACE-DATASET-TIME)")
    p.add_argument("--resume", action="store_true", help="continue the sweep in --storage")
    p.add_argument("--gpus-per-trial", type=number(float, 0),
                   help="GPU share of a trial; fractions share a GPU (default: the preset's "
                        "when the cluster has GPUs, else 0)")
    p.add_argument("--cpus-per-trial", type=number(float, 0, strict=True),
                   help="default: the preset's (quick: 0.5, two single-thread trials per core "
                        "pair)")
    p.add_argument("--scorer-gpus", type=number(float, 0), default=0.0,
                   help="GPU share reserved for each scorer actor")
    p.add_argument("--max-concurrent", type=positive_int)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--confirm-top", type=number(int, 0), metavar="K",
                   help="after the search, train the top K configurations again on fresh "
                        "seeds (default: the preset's; 0 skips)")
    p.add_argument("--confirm-seeds", type=positive_int, metavar="S",
                   help="fresh seeds per confirmed configuration (default: the preset's)")
    p.add_argument("--scorers", help="folder with inception/ and vit/ scorer folders to use")
    p.add_argument("--data-dir", help="dataset folder (else GENSWEEP_DATA_DIR, the cache)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the networks of GPU trials (ignored on the CPU)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def request_from_args(args, parser):
    """The validated :class:`SweepRequest` (or, with --resume, the saved state);
    argument errors exit 2 via ``parser.error``."""
    if args.resume:
        if not args.storage:
            parser.error("--resume needs --storage DIR, the folder of the sweep to continue")
        if not sweep_record.holds_sweep(args.storage):
            parser.error(f"--storage {args.storage} holds no sweep to resume (no "
                         f"{sweep_record.SWEEP_FILE}); start one with --space")
        try:
            saved = sweep_record.read_state(args.storage)
        except ValueError as exc:
            parser.error(str(exc))
        return None, saved
    if not args.space:
        parser.error(f"--space is required; choose one of {', '.join(sorted(SPACES))}")
    storage = args.storage or time.strftime(f"runs/sweep-{args.space}-{args.dataset}-%Y%m%d-%H%M%S")
    if sweep_record.holds_sweep(storage):
        parser.error(f"--storage {storage} already holds a sweep; pass --resume to continue it "
                     f"or choose another folder (nothing was changed)")
    try:
        return SweepRequest(
            space=args.space, dataset=args.dataset, preset=args.preset,
            num_samples=args.num_samples, objective=args.objective, scheduler=args.scheduler,
            address=args.address, mlflow_uri=args.mlflow_uri,
            optuna_storage=args.optuna_storage, storage=storage,
            gpus_per_trial=args.gpus_per_trial, cpus_per_trial=args.cpus_per_trial,
            scorer_gpus=args.scorer_gpus, max_concurrent=args.max_concurrent, seed=args.seed,
            scorers_dir=args.scorers,
            data_dir=args.data_dir or os.environ.get("GENSWEEP_DATA_DIR"),
            lr_range=args.lr_range, epochs_range=args.epochs_range,
            train_images=args.train_images, compile=args.compile,
            conditional=args.conditional, sampler=args.sampler,
            confirm_top=args.confirm_top, confirm_seeds=args.confirm_seeds), None
    except ValueError as exc:
        parser.error(str(exc))


def describe(plan) -> str:
    """One line on what is about to run, with its estimate."""
    r, preset = plan.request, plan.preset
    chosen = "" if r.preset else f" (chosen: {'GPUs found' if plan.cluster_gpus else 'no GPU'})"
    budget = (f"{preset.train_images:,} training images each" if preset.train_images
              else f"{preset.epochs[0]}-{preset.epochs[1]} epochs each")
    span = (f"about {plan.estimate_minutes:.0f} min"
            + (f", at most {plan.estimate_max_minutes:.0f}"
               if plan.estimate_max_minutes > plan.estimate_minutes + 0.5 else ""))
    kind = {"on": " (class-conditional)", "search": " (conditional searched)"}.get(
        r.conditional, "")
    kind += f" (samples from {plan.trial_constants['sampler']})"
    confirm = (f", then the top {plan.confirm_top} again on {len(plan.confirm_seeds)} fresh "
               f"seed{'s' * (len(plan.confirm_seeds) > 1)} each" if plan.confirm_top else "")
    # whole minutes, but a phase under one still shows (0.5 would print as "0")
    phases = ", ".join(f"{k} {v:.0f}" if v >= 1 else f"{k} {v:.1f}"
                       for k, v in plan.estimate_phases.items() if v >= 0.05)
    basis = f"{phases}; {speed_basis(plan)}" if phases else speed_basis(plan)
    return (f"preset {preset.name}{chosen}: {plan.num_samples} trials of {r.space}{kind} on "
            f"{r.dataset} ({budget}, scheduler {plan.scheduler}), {plan.concurrency} at a "
            f"time{confirm}; estimated {span} ({basis})")


def speed_basis(plan) -> str:
    """What the estimate's speeds rest on: measured here, or the preset's rates."""
    s = plan.speeds
    if s is None:
        return f"the {plan.preset.name} preset's rates, not measured on this machine"
    tunes = "".join(f", {k} fine-tune {m:.1f} min" for k, m in s.scorer_minutes.items())
    return (f"measured here in {s.seconds:.0f} s: a trial trains {s.images_per_s:.0f} "
            f"images/s{tunes}")


def stop_on_signals():
    """Ctrl-C and SIGTERM end the sweep at once, at any phase, as KeyboardInterrupt: every
    phase is recorded in sweep.json and trials checkpoint every round, so ``--resume``
    continues from there. Tune's own SIGINT handling (wind down, then return as if done) is
    turned off, since a sweep that returned would be reported as finished."""
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    return interrupts()


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:  # every process the sweep starts inherits it (trainables.quiet)
        os.environ["GENSWEEP_VERBOSE"] = "1"
    setup_logging(args.verbose, fmt="%(asctime)s %(levelname)s %(name)s %(message)s")
    request, saved = request_from_args(args, parser)

    storage = args.storage or (request.storage if request else None)
    try:
        with stop_on_signals():
            if saved is not None:
                try:
                    plan = SweepPlan.from_dict(saved["plan"])
                except (KeyError, ValueError) as exc:
                    parser.error(f"--storage {storage}: its {SWEEP_FILE} holds no plan this "
                                 f"version of gensweep can resume ({exc}); start a new sweep "
                                 f"in another folder")
                request = plan.request
            preflight(request)
            if saved is not None and saved.get("phase") == "finished":
                if mlflow_incomplete(plan):
                    print("the sweep has finished, but MLflow missed calls while its tracking "
                          "server was down; delivering them", flush=True)
                    left = deliver_kept_calls(plan, saved)
                    if left:
                        print(f"error: {left} MLflow calls still could not be delivered "
                              f"(tracking server {redact_url(plan.mlflow_uri)}); they stay "
                              f"in {plan.sweep_dir}: resume again once it answers",
                              file=sys.stderr)
                        return 1
                return report_finished(plan, saved)
            ray = init_ray(request.address)
            if saved is None:
                plan = plan_sweep(request, ray)
                saved = new_state(plan)
            print(describe(plan), flush=True)
            with following(plan) as progress:
                summary = run_sweep(plan, saved)
    except PlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (SweepError, ConnectionError, DatasetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted; finished trials are kept. Continue with:\n"
              f"  python sweeps/run.py --resume --storage {storage}", file=sys.stderr)
        exit_interrupted(130)
    print()
    print(report.format_table(summary["ranked"] or summary["rows"], plan.request.space,
                              plan.request.dataset, plan.ns, summary["ceiling"]))
    if summary.get("confirmation"):
        print("\n" + summary["confirmation"]["text"])
    if summary.get("best_config"):
        print(f"\nbest configuration: {summary['best_config']}")
        if summary.get("registered_model"):
            print(f"registered model: {summary['registered_model']} (mlflow.pyfunc.load_model, "
                  f"or gensweep synthesize --model {summary['registered_model']} "
                  f"--mlflow-uri URI)")
    else:
        print("\nno trial finished with scores; see results.csv and the MLflow runs",
              file=sys.stderr)
    print(report.how_to_look(summary["sweep_dir"], summary["mlflow_uri"], plan.optuna_url,
                             summary.get("experiment_id")))
    print(f"took {summary['minutes']:.1f} min (estimated {plan.estimate_minutes:.0f}, at most "
          f"{plan.estimate_max_minutes:.0f}); by phase, minutes: {progress.compare()}")
    return 0 if summary.get("best_config") else 1


def report_finished(plan, saved: dict) -> int:
    """``--resume`` of a finished sweep: its report again, nothing run."""
    rows = [r for r in report.read_results(plan.sweep_dir) if r.get("phase") == "search"]
    metrics = list(plan.objective)
    ranked = report.rank_trials(rows, metrics)
    print(f"the sweep in {plan.sweep_dir} has finished (in {saved.get('minutes', '?')} min); "
          f"nothing to resume. Its results:\n")
    print(report.format_table(ranked or rows, plan.request.space, plan.request.dataset,
                              plan.ns, saved.get("ceiling")))
    confirmation = Path(plan.sweep_dir) / "summary" / "confirmation.txt"
    if confirmation.is_file():
        print("\n" + confirmation.read_text().rstrip())
    print(report.how_to_look(Path(plan.sweep_dir), plan.mlflow_uri, plan.optuna_url,
                             saved.get("experiment_id")))
    return 0 if ranked else 1


if __name__ == "__main__":
    sys.exit(main())
