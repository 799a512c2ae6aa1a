"""A sweep's Ray Tune ``Tuner`` from its plan: Optuna search, scheduler, resources, callbacks.

``build_tuner`` only assembles objects (no Ray cluster needed, nothing runs), so tests can
inspect a sweep without fitting it; ``sweeps.sweep`` prepares scorers and MLflow and fits it.
The search space holds hyperparameters only; what every trial shares (the training
constants, the scorer actors' names, the sample counts) reaches the trial through
``tune.with_parameters`` as a ``TrialPlan``.
"""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from scorers.keys import OBJECTIVES, cas_key, probe_key, scheduler_key, score_key
from sweeps.confirm import CONFIRMS
from sweeps.databases import ensure_optuna_store
from sweeps.search import score_search_class
from sweeps.spaces import SPACES, with_conditional
from sweeps.trial import TrialPlan, sweep_trial

log = logging.getLogger(__name__)


def search_space(plan) -> dict:
    """The searched hyperparameters (nothing else rides in a trial's config)."""
    return with_conditional(SPACES[plan.request.space](plan.preset), plan.request.conditional)


def trial_plan(plan, ceiling: dict | None = None) -> TrialPlan:
    """What every trial shares; ``ceiling`` (the real-data ceiling) gives the CAS its ratio."""
    ceiling, n = ceiling or {}, max(plan.ns)
    components = OBJECTIVES[plan.request.objective]

    def real(c: str):
        """The ceiling at the probe's own sample count where the sweep scored it (IS and TS
        at probe_n when it is one of ns; the CAS ceiling exists at the largest n only)."""
        keys = [cas_key(k) if c == "cas" else score_key(c, k, "mean")
                for k in (plan.probe_n, n) if k in plan.ns]
        return next((ceiling[key] for key in keys if ceiling.get(key)), None)

    ceilings = {c: real(c) for c in components}
    return TrialPlan(constants=dict(plan.trial_constants), actor_names=dict(plan.actor_names),
                     namespace=plan.namespace, ns=tuple(plan.ns), probe_n=plan.probe_n,
                     probe_components=components,
                     probe_ceilings={c: v for c, v in ceilings.items() if v},
                     cas_ceiling=ceiling.get(cas_key(n)))


def make_searcher(plan):
    """Seeded TPE (or multi-objective TPE for is+ts) over a persistent Optuna study."""
    import optuna
    from ray.tune.search import ConcurrencyLimiter

    metrics, modes = list(plan.objective), list(plan.modes)
    if not plan.request.optuna_storage:
        Path(plan.sweep_dir).mkdir(parents=True, exist_ok=True)
    ensure_optuna_store(plan.optuna_url)
    storage = optuna.storages.RDBStorage(plan.optuna_url)
    # The study names its objectives, so optuna-dashboard shows ts_5k_mean, not "Objective 0";
    # Ray's OptunaSearch then loads this study (load_if_exists).
    study = optuna.create_study(study_name=plan.study_name, storage=storage,
                                directions=["maximize"] * len(metrics), load_if_exists=True)
    if study.metric_names is None:
        study.set_metric_names(metrics)
    # The paper's point is the study's first trial. Enqueued here, into the study, rather than
    # given to Ray as points_to_evaluate: a resumed sweep sets its pickled searcher up again,
    # and Ray would enqueue the points a second time (a WAITING trial no Tune trial takes).
    study.enqueue_trial(dict(plan.paper_point), skip_if_exists=True)
    sampler = optuna.samplers.TPESampler(seed=plan.request.seed,
                                         multivariate=len(metrics) == 1)
    searcher = score_search_class()(
        metric=metrics if len(metrics) > 1 else metrics[0],
        mode=modes if len(modes) > 1 else modes[0],
        sampler=sampler,
        study_name=plan.study_name, storage=storage)
    if plan.request.max_concurrent:
        searcher = ConcurrencyLimiter(searcher, max_concurrent=plan.request.max_concurrent)
    return searcher


def make_scheduler(plan):
    """ASHA on the objective's own per-round probe (``scorers.keys.scheduler_key``: the TS,
    IS or CAS of the plan's ``probe_n`` samples, or their mean ratio to the real-data
    ceiling for an objective of several), with training images as its clock: a trial is judged after a quarter of its budget and again
    at half, against the trials that reached the same point, and only the better half goes
    on. Sample quality, not reconstruction error, is what the objective rewards: a VAE with
    a larger latent space reconstructs better and samples worse."""
    if plan.scheduler == "none":
        return None
    preset = plan.preset
    budget = preset.trial_images()
    if preset.epochs is not None:
        n_train = preset.subset or 60_000
        budget, grace = preset.epochs[1] * n_train, max(1, preset.epochs[0] // 2) * n_train
    else:
        grace = max(preset.report_images or budget, budget / 4)
    from sweeps.scheduler import PaperPointASHA

    # stop_last_trials=False: a trial whose last round lands exactly on max_t (batch 32
    # divides 192,000) must still draw and report its scores; it ends by itself.
    return PaperPointASHA(plan.paper_point, time_attr="images_seen",
                          metric=scheduler_key(plan.request.objective, plan.probe_n), mode="max", max_t=int(budget),
                          grace_period=int(grace), reduction_factor=2, stop_last_trials=False)


def trial_name(trial) -> str:
    """Short trial names and folders (Tune's default packs the whole config into them)."""
    return f"trial_{trial.trial_id}"


def trainable(plan, ceiling: dict | None = None):
    from ray import tune

    return tune.with_resources(
        tune.with_parameters(sweep_trial, trial_plan=trial_plan(plan, ceiling)),
        {"cpu": plan.trial_cpus, "gpu": plan.trial_gpus})


def build_tuner(plan, callbacks: list | None = None, ceiling: dict | None = None):
    """The sweep's ``tune.Tuner``, ready for ``fit()`` (nothing is started here)."""
    from ray import tune

    _tune_environment()
    # reuse_actors: a trial with the same resources runs in the process its predecessor
    # left, with torch, pythae and the dataset code already imported (3-4 s less per trial
    # on a quiet 2-core CPU, more on a busy one). Every trial seeds its own RNGs
    # (trainables.trainable), so its results do not depend on the process it got. Not with
    # --compile: torch.compile's cache would keep every earlier trial's graphs and, past
    # its recompile limit, fall back to eager code without a word.
    tune_config = tune.TuneConfig(search_alg=make_searcher(plan),
                                  scheduler=make_scheduler(plan),
                                  num_samples=plan.num_samples,
                                  reuse_actors=not plan.request.compile,
                                  trial_name_creator=trial_name,
                                  trial_dirname_creator=trial_name)
    run_config = tune.RunConfig(
        name="tune", storage_path=plan.sweep_dir, callbacks=callbacks or [],
        failure_config=tune.FailureConfig(max_failures=plan.request.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2), verbose=1,
        progress_reporter=progress_table(plan))
    return tune.Tuner(trainable(plan, ceiling), param_space=search_space(plan),
                      tune_config=tune_config, run_config=run_config)


def progress_table(plan):
    """Tune's table of trials, showing the race: each trial's hyperparameters, the
    objective's probes after every round and how far it got, then, once it is scored, the objective and the
    headline scores. Plumbing (pids, node ids, timings) stays out."""
    from ray.tune import CLIReporter

    n = max(plan.ns)
    components = OBJECTIVES[plan.request.objective]
    probes = [probe_key(plan.probe_n, c) for c in components]
    if len(components) > 1:
        probes.append(scheduler_key(plan.request.objective, plan.probe_n))
    columns = {**{key: key for key in probes}, "images_seen": "images",
               **{key: key for key in plan.objective},
               score_key("inception", n, "mean"): score_key("inception", n, "mean"),
               score_key("vit", n, "mean"): score_key("vit", n, "mean"),
               cas_key(n): cas_key(n)}
    # Not sort_by_metric: Tune sorts finished trials by the raw value, and a trial stopped
    # early by ASHA or failed as diverged has none (None < float raises, ending the sweep).
    # The ranked table comes at the end, from the sweep's own report.
    return CLIReporter(parameter_columns=list(search_space(plan)), metric_columns=columns,
                       max_report_frequency=30, max_progress_rows=12)


def _tune_environment() -> None:
    # Tune's own console table (below) rather than its newer output, whose columns cannot be
    # chosen: it shows the first four numbers a trial happens to report.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # Scores arrive only in a trial's last report; per-round reports carry losses.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    # Save the experiment state (trials + searcher) on every controller step, not every 10 s:
    # a driver killed between an Optuna "ask" and the next save would otherwise leave an
    # Optuna trial that the resumed sweep never finishes. Cheap at sweep sizes.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")


def confirmation_space(plan, points: list[dict]) -> dict:
    """The confirmation experiment's parameter space: the search space, the fresh seeds and
    the search trials confirmed (every trial is one of ``points``, set in full)."""
    from ray import tune

    return {**search_space(plan), "seed": tune.choice(list(plan.confirm_seeds)),
            CONFIRMS: tune.choice(sorted({p[CONFIRMS] for p in points}))}


def build_confirm_tuner(plan, points: list[dict], callbacks: list | None = None,
                        ceiling: dict | None = None):
    """The confirmation phase's ``tune.Tuner`` (``sweeps.confirm``): exactly ``points``,
    each trained to the end (no scheduler), ``concurrency`` at a time, in ``confirm/``."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    _tune_environment()
    tune_config = tune.TuneConfig(
        search_alg=BasicVariantGenerator(points_to_evaluate=[dict(p) for p in points],
                                         max_concurrent=plan.concurrency),
        num_samples=len(points), reuse_actors=not plan.request.compile,
        trial_name_creator=trial_name, trial_dirname_creator=trial_name)
    run_config = tune.RunConfig(
        name=CONFIRM_DIR, storage_path=plan.sweep_dir, callbacks=callbacks or [],
        failure_config=tune.FailureConfig(max_failures=plan.request.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2), verbose=1,
        progress_reporter=progress_table(plan))
    return tune.Tuner(trainable(plan, ceiling), param_space=confirmation_space(plan, points),
                      tune_config=tune_config, run_config=run_config)


def restore_confirm_tuner(plan, points: list[dict], ceiling: dict | None = None):
    """Continue an interrupted confirmation phase from ``confirm/``."""
    from ray import tune

    _tune_environment()
    path = Path(plan.sweep_dir) / CONFIRM_DIR
    if not can_resume(path, CONFIRM_GENERATOR_STATE):
        raise FileNotFoundError(f"{path} holds no Tune experiment to resume")
    return tune.Tuner.restore(str(path), trainable=trainable(plan, ceiling),
                              param_space=confirmation_space(plan, points),
                              resume_unfinished=True, resume_errored=True)


def search_results(plan, ceiling: dict | None = None):
    """The finished search's results, read back from ``tune/`` without running anything
    (a sweep resumed in its confirmation phase: an errored search trial stays as it was)."""
    from ray import tune

    _tune_environment()
    path = Path(plan.sweep_dir) / "tune"
    if not can_resume(path):
        raise FileNotFoundError(f"{path} holds no finished search to read")
    return tune.Tuner.restore(str(path), trainable=trainable(plan, ceiling),
                              param_space=search_space(plan), resume_unfinished=False,
                              resume_errored=False).get_results()


CONFIRM_DIR = "confirm"
SEARCH_GENERATOR_STATE = "search_gen_state-*.json"
CONFIRM_GENERATOR_STATE = "basic-variant-state-*.json"


# A Tune session's state files, named by the session's start (Ray 2.x's layout)
_STATE_FILE = re.compile(r"^(experiment_state|search_gen_state|searcher-state|basic-variant-state)"
                         r"-(\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d)\.(json|pkl)$")


def _whole(path: Path) -> bool:
    """Whether a state file Tune wrote is complete: JSON that parses, or a pickle that ends
    in its STOP opcode (checked without unpickling it)."""
    data = path.read_bytes()
    if path.name.startswith("experiment_state"):
        try:
            json.loads(data)
            return True
        except ValueError:
            return False
    return data.endswith(b".")


def drop_cut_short_state(tune_dir) -> list[str]:
    """Delete the state a kill cut short in ``tune_dir``; returns the files deleted.

    Tune rewrites a session's state files in place, and a kill mid-write leaves one empty.
    A restore then fails to read it, logs the error, and silently starts an empty experiment
    that runs no trial (CI, 2026-12-07: a 0-byte ``search_gen_state``, and a resumed sweep
    that "finished" with none). Every file of that session goes, so that the restore reads
    the previous session's whole set, or, with none, the folder counts as never started.
    A cut ``tuner.pkl`` (rewritten as each ``fit()`` starts) goes too: the tuning then
    starts afresh."""
    path = Path(tune_dir)
    if not path.is_dir():
        return []
    cut = {m.group(2) for f in path.iterdir()
           if (m := _STATE_FILE.match(f.name)) and not _whole(f)}
    doomed = [f for f in path.iterdir()
              if (m := _STATE_FILE.match(f.name)) and m.group(2) in cut]
    tuner = path / "tuner.pkl"
    if tuner.is_file() and not _whole(tuner):
        doomed.append(tuner)
    for f in doomed:
        f.unlink()
    if doomed:
        log.warning("resume: Tune's state in %s was cut short by the kill; deleted %s, so "
                    "the resume starts from the state saved before it", path,
                    ", ".join(sorted(f.name for f in doomed)))
    return sorted(f.name for f in doomed)


def can_resume(tune_dir, generator_state: str = SEARCH_GENERATOR_STATE) -> bool:
    """Whether Tune saved an experiment state in ``tune_dir`` that it can resume (after
    ``drop_cut_short_state`` has removed what a kill cut short).

    ``Tuner.can_restore`` only looks for the pickled Tuner, written when ``fit()`` starts,
    before the first experiment state. A sweep killed in between would "restore" into a
    Tune that finds no state, restarts with one trial and ends there (seen in
    test_kill_anywhere, 2026-12-04), so such a folder counts as never started.

    The same holds until the search generator's state is saved too: Tune writes the
    experiment state (the trials made so far) first and ``search_gen_state-*.json`` (how
    many trials to make) after it. A resume without the latter never asks the search for
    more trials, because a restored run skips ``add_configurations``: it ran only the one
    trial already made and called the sweep finished (test_kill_anywhere, 2026-12-05)."""
    from ray import tune

    path = Path(tune_dir)
    drop_cut_short_state(path)
    return (tune.Tuner.can_restore(str(path)) and any(path.glob("experiment_state-*.json"))
            and any(path.glob(generator_state)))


def restore_tuner(plan, ceiling: dict | None = None):
    """Continue an interrupted sweep from its Tune experiment folder.

    Tune restores its callbacks from its own pickled state, not from what the sweep builds
    now (ray-project/ray#41364): the MLflow callback of a resumed sweep is the one pickled
    at the start, rebuilt by ``MlflowSweepCallback.__setstate__`` with a fresh client."""
    from ray import tune

    _tune_environment()
    path = Path(plan.sweep_dir) / "tune"
    if not can_resume(path):
        raise FileNotFoundError(f"{path} holds no Tune experiment to resume")
    return tune.Tuner.restore(str(path), trainable=trainable(plan, ceiling),
                              param_space=search_space(plan),
                              resume_unfinished=True, resume_errored=True)
