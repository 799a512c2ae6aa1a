"""Run a sweep end to end: checks, Ray, the plan, shared scorers, MLflow, the Tuner, the summary.

Order matters for trust: storage, the tracking server and the dataset are checked before Ray
starts, the plan (resources included) is settled and recorded before anything expensive, and
the scorers exist before any trial starts, so a typo costs seconds, not a sweep. Each phase is
recorded in ``sweep.json`` (``sweeps.sweep_record``), so ``--resume`` continues from wherever it was.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path

from scorers.actor import start_scorer_actor
from scorers.keys import ceiling_key, score_key
from scorers.scorer_cache import is_complete, read_metadata, scorer_dir_for
from scorers.spec import KINDS
from sweeps import calibrate, confirm, report, sweep_record, tracking
from sweeps.ceiling import real_ceiling
from sweeps.figures import summary_figures
from sweeps.model_registry import model_name
from sweeps.plan import NAMESPACE, Cluster, SweepPlan, resolve_plan, scorers_to_build
from sweeps.redact import redact_settings, redact_url
from sweeps.request import SweepRequest
from sweeps.scorer_setup import scorer_folders
from sweeps.tracking_server import check_reachable, default_tracking_uri
from trainables.datasets import load_dataset
from trainables.quiet import verbose

log = logging.getLogger(__name__)


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


def check_dataset(request: SweepRequest) -> None:
    """Verify the dataset's checksums once, up front: a corrupt file fails the sweep in seconds
    with the file's name and checksums, rather than failing every trial on a worker."""
    load_dataset(request.dataset, request.data_dir)


PATH_VARIABLES = ("GENSWEEP_DATA_DIR", "GENSWEEP_CACHE_DIR")


def absolute_path_variables() -> None:
    """Make the path variables absolute here, before Ray starts and its workers inherit them.

    Tune runs each trial with its own folder as working directory, so a relative
    ``GENSWEEP_DATA_DIR=../shared/data`` would be looked up from there: every trial would
    fail with "mnist not found" although the driver's checks passed."""
    for var in PATH_VARIABLES:
        if os.environ.get(var):
            os.environ[var] = str(Path(os.environ[var]).expanduser().resolve())


TRACKING_SCHEMES = ("http", "https", "sqlite", "file", "postgresql", "mysql", "mssql",
                    "databricks")


def check_urls(request: SweepRequest) -> None:
    """A tracking URI MLflow can use and an Optuna storage SQLAlchemy can parse."""
    if request.mlflow_uri:
        scheme = request.mlflow_uri.split(":", 1)[0].split("+", 1)[0] \
            if ":" in request.mlflow_uri else ""
        if scheme not in TRACKING_SCHEMES:
            raise SweepError(f"--mlflow-uri {redact_url(request.mlflow_uri)}: not a tracking "
                             f"URI ({', '.join(TRACKING_SCHEMES)}); e.g. http://127.0.0.1:5000 "
                             f"or sqlite:///mlflow.db")
    if request.optuna_storage:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(request.optuna_storage)
        except ArgumentError as exc:
            raise SweepError(f"--optuna-storage {redact_url(request.optuna_storage)}: not a "
                             f"database URL ({exc}); e.g. sqlite:///optuna.db") from exc


def check_scorers_dir(request: SweepRequest) -> None:
    """``--scorers DIR`` holds a complete scorer of each kind for the dataset."""
    if not request.scorers_dir:
        return

    for kind in KINDS:
        try:
            read_metadata(Path(request.scorers_dir) / kind, kind, request.dataset)
        except ValueError as exc:
            raise SweepError(f"--scorers {request.scorers_dir}: {exc} (expected DIR/inception "
                             f"and DIR/vit, as scorers/finetune_cli.py --out writes)") from exc


def preflight(request: SweepRequest) -> None:
    """The checks that need neither Ray nor the scorers: storage, the stores' URLs and the
    tracking server, the scorer folders given, the dataset."""
    absolute_path_variables()
    check_urls(request)
    check_writable(request.sweep_dir)
    check_reachable(request.mlflow_uri or default_tracking_uri(request.sweep_dir))
    check_scorers_dir(request)
    check_dataset(request)


CONNECT_TIMEOUT_S = 10.0
CURRENT_CLUSTER_FILE = Path("/tmp/ray/ray_current_cluster")  # where `ray start` leaves it


def cluster_address(address: str) -> str:
    """``address`` as host:port; ``auto`` is what $RAY_ADDRESS or `ray start` left behind."""
    if address != "auto":
        return address
    found = os.environ.get("RAY_ADDRESS")
    if not found and CURRENT_CLUSTER_FILE.is_file():
        found = CURRENT_CLUSTER_FILE.read_text().strip()
    if not found:
        raise SweepError("--address auto found no running Ray cluster on this machine; start "
                         "one with `ray start --head`, or omit --address for a local Ray")
    return found


def check_cluster(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail in seconds, not after minutes of Ray's retries, if nothing answers at ``address``."""
    import re
    import socket

    plain = address[len("ray://"):] if address.startswith("ray://") else address
    if not re.fullmatch(r"[\w.\-\[\]:]+:\d+", plain):
        return  # another form (a URL): Ray itself says what is wrong with it
    host, _, port = plain.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as exc:
        why = getattr(exc, "strerror", None) or exc
        raise SweepError(f"Ray cluster at {address} is unreachable ({why}); check that it "
                         f"runs (`ray status --address {plain}`) and the address is right, or "
                         f"omit --address for a local Ray") from exc


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
    speeds = calibrate.measure_speeds(plan.preset, plan.model, request, plan.trial_cpus, specs)
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
        if saved["phase"] == "tuning" and can_resume(sweep_dir / "tune"):
            tuner = restore_tuner(plan, ceiling)
        else:
            if saved["phase"] == "tuning":  # killed before Tune saved its first state
                fresh_tuning(plan, tracker)
            callback = MlflowSweepCallback(tracker, plan.trial_constants)
            tuner = build_tuner(plan, callbacks=[callback], ceiling=ceiling)
            saved = sweep_record.advance(sweep_dir, saved, "tuning")
        grid = tuner.fit()
        close_orphan_trials(plan.study_name, plan.optuna_url)
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
    return (Path(plan.sweep_dir) / tracking.JOURNAL).is_file()


def deliver_kept_calls(plan: SweepPlan, saved: dict) -> int:
    """For a finished sweep: replay what MLflow missed; returns how many calls are still
    kept (the server is still down)."""
    return tracking.SweepTracker(plan.mlflow_uri, plan.sweep_dir, saved["experiment_id"],
                                 saved["parent_run_id"]).close()


def register_winner(plan: SweepPlan, saved: dict, best: dict, confirmation: dict | None,
                    tracker) -> None:
    """Register the winner's checkpoint (the confirmed winner's search trial, else the
    top-ranked one) as ``gensweep-DATASET-SPACE``, its version tagged with the scores (the
    fresh seeds' means and spreads when confirmed), whether a winner was declared, the
    trial, the sweep and the scorers. A registration that cannot be prepared is a warning:
    the sweep's results stand without it."""
    try:
        checkpoint, _ = sweep_record.trial_checkpoint(Path(plan.sweep_dir), best["trial_id"])
        mine = next((e for e in (confirmation or {}).get("entries", [])
                     if e["confirms"] == best["trial_id"]), None)
        if mine:
            scores = {**{f"confirmed_{k}_mean": v for k, v in mine["mean"].items()},
                      **{f"confirmed_{k}_sd": v for k, v in mine["sd"].items()}}
        else:
            scores = {k: best[k] for k in (*plan.objective, *confirm.headline(plan.ns))
                      if k in best}
        declared = bool(confirmation and confirmation["decision"]["winner"])
        tags = {**{k: f"{v:.6g}" for k, v in scores.items() if isinstance(v, (int, float))},
                "trial_id": best["trial_id"], "objective": ",".join(plan.objective),
                "confirmed": bool(mine), "winner_declared": declared,
                "parent_run_id": tracker.parent_run_id,
                "dataset": plan.request.dataset, "space": plan.request.space}
        for kind, folder in (saved.get("scorers") or {}).items():
            tags[f"scorer.{kind}.id"] = read_metadata(folder).get("scorer_id")
    except (ValueError, OSError, KeyError) as exc:
        log.warning("the winner is not registered in MLflow: %s", exc)
        return
    tracker.register_generator(checkpoint, model_name(plan.request.dataset, plan.request.space),
                               tags, plan.sweep_id)


def finish_sweep(plan: SweepPlan, saved: dict, rows: list[dict], ranked: list[dict],
                 confirm_rows: list[dict], ceiling: dict, tracker, started: float) -> dict:
    """Write results.csv (search and confirmation trials), the confirmed verdict,
    best_config.json and the summary figures, log them on the parent run, and record the
    sweep as finished."""
    sweep_dir = Path(plan.sweep_dir)
    metrics = list(plan.objective)
    for row in rows:
        row["phase"] = "search"
    for row in confirm_rows:
        row.update(phase="confirm", confirms=row["_config"].get(confirm.CONFIRMS),
                   seed=row["_config"].get("seed"))
    files = [report.write_results(sweep_dir, rows + confirm_rows)]
    summary = {"rows": rows, "ranked": ranked, "ceiling": ceiling, "metrics": metrics,
               "mlflow_uri": plan.mlflow_uri, "parent_run_id": tracker.parent_run_id,
               "experiment_id": tracker.experiment_id,
               "sweep_dir": sweep_dir, "minutes": (time.time() - started) / 60}
    best, confirmation = (ranked[0] if ranked else None), None
    if confirm_rows:
        entries = confirm.summarise(confirm_rows, rows, plan.ns)
        decision = confirm.verdict(entries, metrics, plan.ns)
        confirmation = {"decision": decision, "text": confirm.table(entries, decision,
                                                                    metrics[0], plan.ns),
                        "entries": entries}
        files.append(confirm.write_confirmed(sweep_dir, entries, plan.ns))
        text = sweep_dir / "summary" / "confirmation.txt"
        text.parent.mkdir(exist_ok=True)
        text.write_text(confirmation["text"] + "\n")
        files.append(text)
        chosen = decision["winner"] or (decision["ranking"] or [None])[0]
        best = next((r for r in rows if r["trial_id"] == chosen), best)
        mine = next((e for e in entries if e["confirms"] == chosen), None)
        if mine:
            tracker.log_metrics({**{f"confirmed_{k}_mean": v for k, v in mine["mean"].items()},
                                 **{f"confirmed_{k}_sd": v for k, v in mine["sd"].items()}})
        summary["confirmation"] = confirmation
    if best is not None:
        summary["best_config"] = report.write_best_config(
            sweep_dir, best, metrics, confirm.best_config_block(confirmation, best))
        files.append(summary["best_config"])
        tracker.log_metrics({f"best_{m}": best[m] for m in metrics if m in best})
        tracker.tag_ranks(ranked)
        register_winner(plan, saved, best, confirmation, tracker)

    both = [score_key(k, max(plan.ns), "mean") for k in ("inception", "vit")]
    front = report.pareto_front(rows, both)
    files += summary_figures(sweep_dir / "summary", rows, ranked, front, ceiling, plan)
    tracker.log_artifacts(files, "summary")
    tracker.finish("FINISHED" if ranked else "FAILED")
    summary["estimate_minutes"] = plan.estimate_minutes
    tracker.close()
    summary["registered_model"] = tracker.registered
    sweep_record.advance(sweep_dir, saved, "finished", minutes=round(summary["minutes"], 2))
    return summary
