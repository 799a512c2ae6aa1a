"""Run a sweep end to end: Ray, MLflow parent run, shared scorers, the Tuner, the summary.

Order matters for trust: the tracking server is checked and the scorers exist before any
trial starts, so a typo'd URI or a missing scorer costs seconds, not a sweep.
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from sweeps import report, tracking
from sweeps.presets import default_preset
from sweeps.redact import redact_settings, redact_url
from sweeps.spaces import paper_point
from sweeps.tuner import (SweepSettings, build_tuner, objective_metrics,
                          read_sweep_file, restore_tuner, write_sweep_file)

log = logging.getLogger(__name__)
NAMESPACE = "gensweep"


class SweepError(RuntimeError):
    """The sweep cannot start or go on; the message says why and what to do."""


def check_writable(folder: Path) -> None:
    """Create ``folder`` and prove a file can be written there, before anything else runs."""
    probe = folder / ".write-test"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as fh:
            fh.write(b"x" * 4096)
            fh.flush()
            os.fsync(fh.fileno())
        probe.unlink()
    except OSError as exc:
        try:  # a half-written probe must not linger on a full disk
            probe.unlink(missing_ok=True)
        except OSError:
            pass
        raise SweepError(f"storage folder {folder} is not writable ({exc.strerror or exc}); "
                         f"choose another --storage or free space") from exc


def check_dataset(settings: SweepSettings) -> None:
    """Verify the dataset's checksums once, up front: a corrupt file fails the sweep in seconds
    with the file's name and checksums, rather than failing every trial on a worker."""
    from trainables.datasets import load_dataset

    load_dataset(settings.dataset, settings.data_dir)


def init_ray(address: str | None):
    import ray

    if ray.is_initialized():
        return ray
    if address:
        ray.init(address=address, namespace=NAMESPACE)
    else:
        ray.init(namespace=NAMESPACE, include_dashboard=False)
    return ray


def resolve_preset(preset: str | None, address: str | None) -> tuple[str, float]:
    """The preset asked for, or ``paper`` on a cluster with GPUs and ``quick`` otherwise."""
    ray = init_ray(address)
    gpus = float(ray.cluster_resources().get("GPU", 0))
    return (preset or default_preset(gpus)), gpus


def concurrent_trials(settings: SweepSettings, gpus: float) -> int:
    """How many trials can run at once: Ray's CPUs (GPUs) less the scorer actors' share,
    over what one trial asks for; capped by --max-concurrent. For the printed estimate."""
    import ray

    from sweeps.scorer_setup import actor_cpus

    actors = len(settings.actor_names())
    cpus = float(ray.cluster_resources().get("CPU", 1))
    free_cpus = cpus - actors * actor_cpus(settings.scorer_cpus)
    n = max(1, int(free_cpus // settings.cpus_per_trial))
    if settings.gpus_per_trial > 0:
        n = min(n, max(1, int((gpus - actors * settings.scorer_gpus) // settings.gpus_per_trial)))
    return min(n, settings.max_concurrent or n)


def start_actors(settings: SweepSettings, scorer_dirs: dict) -> dict:
    """One named ``ScorerActor`` per scorer, pinned to this (driver) node where the folders are,
    with resources reserved up front so trials can never starve them."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from scorers.actor import start_scorer_actor
    from sweeps.scorer_setup import actor_cpus

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    cpus = actor_cpus(settings.scorer_cpus)
    handles = {}
    for kind, name in settings.actor_names().items():
        try:
            handles[kind] = start_scorer_actor(
                str(scorer_dirs[kind]), name, num_cpus=cpus,
                num_gpus=settings.scorer_gpus, namespace=NAMESPACE, scheduling_strategy=here,
                expected_dataset=settings.dataset)
        except ValueError as exc:  # an unloadable or mismatched scorer folder
            raise SweepError(str(exc)) from exc
    infos = ray.get([h.info.remote() for h in handles.values()])
    return {"handles": handles, "info": dict(zip(handles, infos))}


def real_ceiling(handles: dict, ns) -> dict:
    import ray

    merged = {}
    for part in ray.get([h.ceiling.remote(tuple(ns)) for h in handles.values()]):
        merged.update(part)
    return merged


PATH_VARIABLES = ("GENSWEEP_DATA_DIR", "GENSWEEP_CACHE_DIR")


def absolute_path_variables() -> None:
    """Make the path variables absolute here, before Ray starts and its workers inherit them.

    Tune runs each trial with its own folder as working directory, so a relative
    ``GENSWEEP_DATA_DIR=../shared/data`` would be looked up from there: every trial would
    fail with "mnist not found" although the driver's checks passed."""
    for var in PATH_VARIABLES:
        if os.environ.get(var):
            os.environ[var] = str(Path(os.environ[var]).expanduser().resolve())


def preflight(settings: SweepSettings) -> None:
    """The checks that need neither Ray nor the scorers: storage, tracking server, dataset."""
    absolute_path_variables()
    check_writable(settings.sweep_dir)
    tracking.check_reachable(settings.mlflow_uri or
                             tracking.default_tracking_uri(settings.sweep_dir))
    check_dataset(settings)


def parent_run_fields(settings: SweepSettings, scorer_info: dict) -> tuple[dict, dict]:
    """The sweep's MLflow params and tags, with any password in a URL masked."""
    tags = {"space": settings.space, "preset": settings.preset, "dataset": settings.dataset,
            "objective": settings.objective, "search": "optuna-tpe",
            "optuna_storage": redact_url(settings.optuna_url), "study": settings.study_name}
    for kind, info in scorer_info.items():
        tags[f"scorer.{kind}.id"] = info.get("scorer_id")
        tags[f"scorer.{kind}.test_accuracy"] = info.get("test_accuracy")
    return redact_settings(settings.to_dict()), tags


def run_sweep(settings: SweepSettings, resume: bool = False, checked: bool = False) -> dict:
    """Run (or resume) the sweep; returns the summary the CLI prints.

    ``checked`` says :func:`preflight` already passed (the CLI runs it before starting Ray)."""
    started = time.time()
    sweep_dir = settings.sweep_dir
    if not checked:
        preflight(settings)
    uri = settings.mlflow_uri or tracking.default_tracking_uri(sweep_dir)

    ray = init_ray(settings.address)
    from sweeps.scorer_setup import scorer_folders
    scorer_dirs = scorer_folders(settings, float(ray.cluster_resources().get("GPU", 0)))
    actors = start_actors(settings, scorer_dirs)
    ns = settings.preset_obj.ns
    ceiling = real_ceiling(actors["handles"], ns)

    if resume:
        state = read_sweep_file(sweep_dir)
        experiment_id, parent = state["experiment_id"], state["parent_run_id"]
    else:
        experiment_id = tracking.setup_experiment(
            uri, f"gensweep-{settings.space}-{settings.dataset}", sweep_dir)
        params, tags = parent_run_fields(settings, actors["info"])
        parent = tracking.start_parent_run(uri, experiment_id, f"sweep-{settings.sweep_id}",
                                           params, tags)
        tracking.log_parent_metrics(uri, parent, {f"ceiling_{k}": v for k, v in ceiling.items()})
        write_sweep_file(settings, {"experiment_id": experiment_id, "parent_run_id": parent,
                                    "mlflow_uri": uri, "scorers": {k: str(v) for k, v in
                                                                   scorer_dirs.items()}})

    callback = tracking.make_callback(uri, experiment_id, parent, sweep_dir)
    names = settings.actor_names()
    tuner = (restore_tuner(settings, names, NAMESPACE) if resume else
             build_tuner(settings, actor_names=names, namespace=NAMESPACE, callbacks=[callback]))
    grid = tuner.fit()

    rows = report.collect_rows(grid)
    report.mark_paper_trial(rows, paper_point(settings.space, settings.dataset,
                                              settings.preset_obj))
    metrics, _ = objective_metrics(settings.objective, ns)
    ranked = (report.pareto_front(rows, metrics) if len(metrics) > 1
              else report.rank(rows, metrics))
    report.write_results(sweep_dir, rows)
    summary = {"rows": rows, "ranked": ranked, "ceiling": ceiling, "metrics": metrics,
               "mlflow_uri": uri, "parent_run_id": parent, "sweep_dir": sweep_dir,
               "minutes": (time.time() - started) / 60}
    if ranked:
        summary["best_config"] = report.write_best_config(sweep_dir, ranked[0], metrics)
        tracking.log_parent_metrics(uri, parent, {f"best_{m}": ranked[0][m] for m in metrics})
    tracking.finish_parent_run(uri, parent, "FINISHED" if ranked else "FAILED")
    return summary
