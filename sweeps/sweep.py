"""Run a sweep end to end: Ray, the plan, shared scorers, MLflow, the Tuner, the confirmation.

Order matters for trust: the checks of ``sweeps.preflight`` pass before Ray starts, the plan
(resources included) is settled and recorded before anything expensive, and the scorers exist
before any trial starts. Each phase is recorded in ``sweep.json`` (``sweeps.sweep_record``), so
``--resume`` continues from wherever it was; ``sweeps.outcome`` writes what a sweep found.
"""
from __future__ import annotations

import json
import logging
import shutil
import signal
import threading
import time
from pathlib import Path

from scorers.actor import start_scorer_actor
from scorers.keys import ceiling_key
from scorers.scorer_cache import is_complete, scorer_dir_for
from sweeps import calibrate, confirm, report, sweep_record, tracking
from sweeps.ceiling import real_ceiling
from sweeps.outcome import finish_sweep
from sweeps.pending_calls import PendingCalls
from sweeps.plan import NAMESPACE, Cluster, SweepPlan, resolve_plan, scorers_to_build
from sweeps.preflight import SweepError, check_cluster, cluster_address
from sweeps.redact import redact_settings, redact_url
from sweeps.request import SweepRequest
from sweeps.scorer_setup import scorer_folders
from trainables.quiet import verbose

log = logging.getLogger(__name__)


def init_ray(address: str | None):
    """Ray for this sweep: the cluster at ``address`` (checked to answer first), or else always
    a new local one (``address="local"``), never whatever cluster a stale temp file names."""
    import ray

    if ray.is_initialized():
        return ray

    if not verbose():  # an informational notice at every start, not something to act on
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(
            logging.ERROR)
    previous = signal.getsignal(signal.SIGTERM)
    if address:
        address = cluster_address(address)
        check_cluster(address)
        ray.init(address=address, namespace=NAMESPACE)
    else:
        ray.init(address="local", namespace=NAMESPACE, include_dashboard=False)
    if callable(previous) and threading.current_thread() is threading.main_thread():
        # ray.init installs absl's failure-signal handler, which answers SIGTERM with a
        # stack dump and kills the driver; the sweep's own handler stops it cleanly, with
        # the resume command (sweeps/run.py).
        signal.signal(signal.SIGTERM, previous)
    return ray


def cluster_snapshot(ray) -> Cluster:
    """What the running cluster offers, as ``resolve_plan`` needs it."""
    here = ray.get_runtime_context().get_node_id()
    nodes = [n for n in ray.nodes() if n.get("Alive", True)]
    res = {n["NodeID"]: n.get("Resources", {}) for n in nodes}
    total = ray.cluster_resources()
    mine = res.get(here, {})
    return Cluster(cpus=float(total.get("CPU", 0)), gpus=float(total.get("GPU", 0)),
                   driver_cpus=float(mine.get("CPU", 0)), driver_gpus=float(mine.get("GPU", 0)),
                   max_node_cpus=max((float(r.get("CPU", 0)) for r in res.values()), default=0),
                   max_node_gpus=max((float(r.get("GPU", 0)) for r in res.values()), default=0))


def plan_sweep(request: SweepRequest, ray) -> SweepPlan:
    """Settle the plan for the cluster the started ``ray`` reports, on speeds measured here
    when the preset asks and the trials will run on this machine's CPU (``sweeps.calibrate``)."""
    cluster = cluster_snapshot(ray)
    cached = lambda spec: is_complete(scorer_dir_for(spec))  # noqa: E731
    plan = resolve_plan(request, cluster, cached)
    if not (plan.preset.measure_speed
            and calibrate.measured_here(request, cluster.gpus)):
        return plan
    print("measuring this machine's speed for the estimate ...", flush=True)
    specs = scorers_to_build(request, plan.scorer_specs, cached)
    try:
        speeds = calibrate.measure_speeds(plan.preset, plan.model, request, plan.trial_cpus,
                                          specs)
    except Exception as exc:  # TF, torch and pythae raise their own types
        # the estimate is a courtesy: the sweep goes on with the preset's rates
        log.warning("could not measure this machine's speed (%s: %s); the estimate uses "
                    "the %s preset's rates", type(exc).__name__, exc, plan.preset.name)
        return plan
    return resolve_plan(request, cluster, cached, speeds)


def start_actors(plan: SweepPlan, scorer_dirs: dict) -> dict:
    """One named ``ScorerActor`` per scorer, pinned to this (driver) node where the folders are,
    with resources reserved up front so trials can never starve them."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    handles = {}
    for kind, name in plan.actor_names.items():
        try:
            handles[kind] = start_scorer_actor(
                str(scorer_dirs[kind]), name, num_cpus=plan.actor_cpus,
                num_gpus=plan.actor_gpus, namespace=plan.namespace, scheduling_strategy=here,
                expected_dataset=plan.request.dataset)
        except ValueError as exc:  # an unloadable or mismatched scorer folder
            raise SweepError(str(exc)) from exc
    infos = ray.get([h.info.remote() for h in handles.values()])
    return {"handles": handles, "info": dict(zip(handles, infos))}


def parent_run_fields(plan: SweepPlan, scorer_info: dict) -> tuple[dict, dict]:
    """The sweep's MLflow params and tags, with any password in a URL masked."""
    tags = {"space": plan.request.space, "preset": plan.preset.name,
            "dataset": plan.request.dataset, "objective": plan.request.objective,
            "search": "optuna-tpe", "scheduler": plan.scheduler,
            "optuna_storage": redact_url(plan.optuna_url), "study": plan.study_name}
    for kind, info in scorer_info.items():
        tags[f"scorer.{kind}.id"] = info.get("scorer_id")
        tags[f"scorer.{kind}.test_accuracy"] = info.get("test_accuracy")
        tags[f"scorer.{kind}.test_images"] = info.get("test_images")
        tags[f"scorer.{kind}.placement"] = json.dumps(info.get("placement") or {})
    params = redact_settings(plan.request.to_dict())
    params.update(preset=plan.preset.name, scheduler=plan.scheduler,
                  num_samples=plan.num_samples, trial_cpus=plan.trial_cpus,
                  trial_gpus=plan.trial_gpus)
    return params, tags


def recorded_scorers(saved: dict) -> dict | None:
    """The scorer folders a resumed sweep recorded, if they are all still complete."""
    dirs = {k: Path(v) for k, v in (saved.get("scorers") or {}).items()}
    return dirs if dirs and all(is_complete(d) for d in dirs.values()) else None


def new_state(plan: SweepPlan) -> dict:
    """Record the sweep's intent before any expensive step (scorers, MLflow, trials)."""
    return sweep_record.advance(plan.sweep_dir, {"request": plan.request.to_dict(),
                                          "plan": plan.to_dict()}, "planned")


def fresh_tuning(plan: SweepPlan, tracker) -> None:
    """Before a Tuner is built from scratch in a folder whose earlier start was killed before
    Tune saved any state: forget what that start left (the Optuna study's unfinished trials,
    the MLflow child runs of trials Tune will not know), so trials are counted once."""
    import optuna

    try:
        study = optuna.load_study(study_name=plan.study_name, storage=plan.optuna_url)
    except KeyError:
        study = None
    if study is not None and study.trials:
        log.info("resume: the study held %d trials from a start Tune never saved; starting "
                 "it afresh", len(study.trials))
        optuna.delete_study(study_name=plan.study_name, storage=plan.optuna_url)
    tracker.delete_children()
    tune_dir = Path(plan.sweep_dir) / "tune"
    if tune_dir.is_dir():
        shutil.rmtree(tune_dir)


def forget_unknown_trials(tracker, grid) -> None:
    """After a resumed search: delete the child runs of trials Tune's saved state did not
    hold (started in MLflow just before a kill), so each trial is counted once. A failure
    here is a warning: the search's results stand."""
    known = {Path(r.path).name.removeprefix("trial_") for r in grid if r.path}
    try:
        gone = tracker.delete_unknown_children(known)
    except Exception as exc:  # the MLflow client raises its own types
        log.warning("could not check MLflow for runs of unsaved trials: %s", exc)
        return
    if gone:
        log.info("resume: deleted %d MLflow run(s) of trials the saved search did not hold",
                 gone)


def run_sweep(plan: SweepPlan, saved: dict) -> dict:
    """Run ``plan`` from the phase ``saved`` (its ``sweep.json``) reached, on the Ray that
    ``init_ray`` started; returns the summary
    the CLI prints. Every phase it passes is recorded (``sweeps.sweep_record``), so a kill at any
    moment can be resumed: a finished scorer is reused, an unfinished one built again, the
    parent run found again, and the trials restored where Tune saved them."""
    started = time.time()
    sweep_dir = Path(plan.sweep_dir)
    sweep_record.log_phase(sweep_dir, "start", resume=saved["phase"] != "planned")
    scorer_dirs = recorded_scorers(saved) or scorer_folders(plan, plan.cluster_gpus)
    if saved["phase"] == "planned":
        saved = sweep_record.advance(sweep_dir, saved, "scorers-ready",
                              scorers={k: str(v) for k, v in scorer_dirs.items()})
    actors = start_actors(plan, scorer_dirs)
    sweep_record.log_phase(sweep_dir, "actors-started")
    # a resumed sweep keeps the ceiling its parent run logged, unless its scorers changed
    ceiling, source, inputs = real_ceiling(
        plan, scorer_dirs, {"ceiling": saved.get("ceiling"), "inputs": saved.get("ceiling_inputs")})
    sweep_record.log_phase(sweep_dir, "ceiling-done", source=source)

    tracker = tracking.SweepTracker(plan.mlflow_uri, sweep_dir)
    if saved.get("parent_run_id"):
        tracker.attach(saved["experiment_id"], saved["parent_run_id"])
        if source != "sweep.json":  # measured again: the parent run shows the new one
            tracker.log_metrics({ceiling_key(k): v for k, v in ceiling.items()})
            saved = {**saved, "ceiling": ceiling, "ceiling_inputs": inputs}
            sweep_record.write_state(sweep_dir, saved)
    else:
        params, tags = parent_run_fields(plan, actors["info"])
        tracker.open(plan.experiment_name, f"sweep-{plan.sweep_id}", params, tags,
                     sweep_key=plan.sweep_id)
        sweep_record.log_phase(sweep_dir, "parent-created", run_id=tracker.parent_run_id)
        tracker.log_metrics({ceiling_key(k): v for k, v in ceiling.items()})
        saved = sweep_record.advance(sweep_dir, saved, "tracking-ready",
                              experiment_id=tracker.experiment_id,
                              parent_run_id=tracker.parent_run_id, mlflow_uri=plan.mlflow_uri,
                              ceiling=ceiling, ceiling_inputs=inputs)

    from sweeps.mlflow_callback import MlflowSweepCallback
    from sweeps.search import close_orphan_trials
    from sweeps.tuner import build_tuner, can_resume, restore_tuner, search_results

    if saved["phase"] == "confirming":  # the search is over: read it, run nothing of it
        try:
            grid = search_results(plan, ceiling)
        except FileNotFoundError as exc:
            raise SweepError(f"{exc}: the sweep in {sweep_dir} was confirming its search "
                             f"and cannot go on without it; start a new sweep") from exc
    else:
        restored = saved["phase"] == "tuning" and can_resume(sweep_dir / "tune")
        if restored:
            tuner = restore_tuner(plan, ceiling)
        else:
            if saved["phase"] == "tuning":  # killed before Tune saved its first state
                fresh_tuning(plan, tracker)
            callback = MlflowSweepCallback(tracker, plan.trial_constants)
            tuner = build_tuner(plan, callbacks=[callback], ceiling=ceiling)
            saved = sweep_record.advance(sweep_dir, saved, "tuning")
        grid = tuner.fit()
        close_orphan_trials(plan.study_name, plan.optuna_url)
        if restored:
            forget_unknown_trials(tracker, grid)
    sweep_record.log_phase(sweep_dir, "tuning-done")
    rows = report.collect_rows(grid, plan.trial_constants)
    report.mark_paper_trial(rows, plan.paper_point)
    ranked = report.rank_trials(rows, list(plan.objective))
    confirm_rows = []
    if plan.confirm_top and ranked:
        saved, confirm_rows = confirm_phase(plan, saved, ranked, tracker, ceiling)
    return finish_sweep(plan, saved, rows, ranked, confirm_rows, ceiling, tracker, started)


def confirm_phase(plan: SweepPlan, saved: dict, ranked: list[dict], tracker,
                  ceiling: dict) -> tuple[dict, list[dict]]:
    """Train the top configurations again on fresh seeds (``sweeps.confirm``), as a second
    Tune experiment; a resumed sweep continues it where Tune saved it, or starts it afresh
    (without the child runs of its unsaved start). Returns the state and its trials' rows."""
    from sweeps.mlflow_callback import MlflowSweepCallback
    from sweeps.tuner import (CONFIRM_DIR, CONFIRM_GENERATOR_STATE, build_confirm_tuner, can_resume,
                              restore_confirm_tuner, search_space)

    sweep_dir = Path(plan.sweep_dir)
    resumed = saved["phase"] == "confirming"
    if not resumed:
        points = confirm.confirmation_points(ranked, list(search_space(plan)),
                                             plan.confirm_top, list(plan.confirm_seeds))
        saved = sweep_record.advance(sweep_dir, saved, "confirming", confirm_points=points)
    points, folder = saved["confirm_points"], sweep_dir / CONFIRM_DIR
    if can_resume(folder, CONFIRM_GENERATOR_STATE):
        tuner = restore_confirm_tuner(plan, points, ceiling)
    else:
        if resumed:  # a start Tune never saved: forget its child runs and folder
            try:
                tracker.delete_children(confirmations_only=True)
            except Exception as exc:  # the MLflow client raises its own types
                raise SweepError(f"MLflow ({redact_url(plan.mlflow_uri)}) did not answer "
                                 f"while the confirmation phase restarted ({exc}); resume "
                                 f"again once it answers") from exc
        if folder.is_dir():
            shutil.rmtree(folder)
        tuner = build_confirm_tuner(plan, points, [MlflowSweepCallback(
            tracker, plan.trial_constants)], ceiling)
    grid = tuner.fit()
    sweep_record.log_phase(sweep_dir, "confirming-done")
    return saved, report.collect_rows(grid, plan.trial_constants)


def mlflow_incomplete(plan: SweepPlan) -> bool:
    """Whether MLflow still misses calls a dead tracking server did not take (kept for
    replay by the writer, ``sweeps.tracking``)."""
    return bool(PendingCalls(plan.sweep_dir))


def deliver_kept_calls(plan: SweepPlan, saved: dict) -> int:
    """For a finished sweep: replay what MLflow missed; returns how many calls are still
    kept (the server is still down)."""
    return tracking.SweepTracker(plan.mlflow_uri, plan.sweep_dir, saved["experiment_id"],
                                 saved["parent_run_id"]).close()
