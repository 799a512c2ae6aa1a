"""A sweep resolved once: ``resolve_plan(request, cluster) -> SweepPlan``.

Everything the rest of a sweep reads is settled here, when the cluster's resources are
known, and then passed on frozen: the preset (with the request's overrides), the sample
counts, the objective's metric names, the paper's point, the scorers as the store's own
``TrainSpec``, the trial and actor resources, the training settings every trial shares, the
names of the actors, study and experiment, and the duration estimate. Nothing downstream
re-derives any of it; ``sweep.json`` stores the plan, so ``--resume`` continues the same one.

``resolve_plan`` is pure (no Ray): ``Cluster`` is a snapshot of what Ray reported.
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from scorers.keys import OBJECTIVES, PROBE_PREFIX, objective_keys
from scorers.spec import KINDS, TrainSpec
from sweeps.calibrate import Speeds
from sweeps.confirm import fresh_seeds
from sweeps.estimate import estimate, trial_rate
from sweeps.presets import PRESETS, Preset, default_preset
from sweeps.request import SweepRequest
from sweeps.spaces import MODEL_OF_SPACE, paper_point
from sweeps.tracking_server import default_tracking_uri

NAMESPACE = "gensweep"


def sweep_sampler(request: SweepRequest) -> str:
    """Where the trials' scored samples come from: the request's sampler, else the latent
    mixture for an unconditional sweep and the prior for a class-conditional one (which
    draws class by class).

    The mixture is the default because a small VAE's encoder leaves holes in N(0, I) that
    the prior's draws fall into: on the 2-core CPU it lifted the quick MNIST VAE-GAN's best
    trial from 0.76 / 0.70 of the real-data ceiling (TS / IS) to 0.94 / 0.90, with the same
    weights (docs/results-cpu.md)."""
    if request.sampler is not None:
        return request.sampler
    return "prior" if request.conditional != "off" else "latent-gmm"


class PlanError(ValueError):
    """The request cannot run on this cluster (resources); the message says what to change."""


@dataclass(frozen=True)
class Cluster:
    """What Ray reported: totals, the driver's node (the scorer actors live there) and the
    largest node (a trial must fit on one)."""

    cpus: float
    gpus: float
    driver_cpus: float
    driver_gpus: float
    max_node_cpus: float
    max_node_gpus: float


@dataclass(frozen=True)
class SweepPlan:
    request: SweepRequest
    preset: Preset
    sweep_dir: str
    sweep_id: str
    mlflow_uri: str
    optuna_url: str
    study_name: str
    experiment_name: str
    ns: tuple
    objective: tuple  # metric names, all maximised
    paper_point: dict
    scorer_specs: dict  # kind -> TrainSpec
    actor_names: dict  # kind -> actor name
    namespace: str
    scheduler: str
    probe_n: int
    num_samples: int
    confirm_top: int  # configurations trained again on fresh seeds (sweeps.confirm)
    confirm_seeds: tuple  # the fresh seeds
    trial_cpus: float
    trial_gpus: float
    actor_cpus: float
    actor_gpus: float
    concurrency: int
    cluster_gpus: float
    trial_constants: dict  # TrainConfig fields every trial shares
    estimate_minutes: float
    estimate_max_minutes: float
    # minutes of each phase (ESTIMATE_PHASES) in the expected case, for the progress line
    estimate_phases: dict = dataclasses.field(default_factory=dict)
    speeds: Speeds | None = None  # measured on this machine (sweeps.calibrate), else None

    @property
    def model(self) -> str:
        return MODEL_OF_SPACE[self.request.space]

    @property
    def trial_rate(self) -> float:
        """Images per second the estimate assumes a trial trains at."""
        return trial_rate(self.preset, self.model, self.trial_gpus > 0, self.speeds)

    @property
    def modes(self) -> tuple:
        return ("max",) * len(self.objective)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["scorer_specs"] = {k: s.to_dict() for k, s in self.scorer_specs.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SweepPlan":
        """From ``sweep.json``; ValueError if it was written by an incompatible version."""
        d = dict(d)
        d["request"] = SweepRequest.from_dict(d["request"])
        preset = dict(d["preset"])
        for key in ("ns", "epochs", "lr_range", "batch_sizes", "latent_dims"):
            if preset.get(key) is not None:
                preset[key] = tuple(preset[key])
        d["preset"] = Preset(**preset)
        d["scorer_specs"] = {k: TrainSpec.from_dict(s) for k, s in d["scorer_specs"].items()}
        d["ns"], d["objective"] = tuple(d["ns"]), tuple(d["objective"])
        d["confirm_seeds"] = tuple(d["confirm_seeds"])
        try:
            d["speeds"] = Speeds.from_dict(d.get("speeds"))
            return cls(**d)
        except TypeError as exc:  # a field added or removed since the file was written
            raise ValueError(f"the sweep's plan does not fit this version of gensweep "
                             f"({exc}); resume it with the version that started it") from exc


def sweep_id(sweep_dir: Path) -> str:
    """Ten hex digits naming the sweep's actors and study (from its absolute folder)."""
    return hashlib.sha1(str(Path(sweep_dir).resolve()).encode()).hexdigest()[:10]


def effective_preset(request: SweepRequest, name: str) -> Preset:
    """The preset, with the budget of the request's model on its dataset and the request's
    overrides (ranges, budget) applied."""
    preset = PRESETS[name].for_sweep(MODEL_OF_SPACE[request.space], request.dataset)
    changes = {}
    if request.lr_range is not None:
        changes["lr_range"] = tuple(request.lr_range)
    if request.epochs_range is not None:
        changes.update(epochs=tuple(request.epochs_range), train_images=None,
                       report_images=None)
    if request.train_images is not None:
        # a preset of epochs reports each epoch; on an image budget it reports each quarter,
        # so a scheduler has rounds to judge
        every = preset.report_images or max(1, request.train_images // 4)
        changes.update(train_images=request.train_images, epochs=None,
                       report_images=min(every, request.train_images))
    return dataclasses.replace(preset, **changes) if changes else preset


def _resources(request: SweepRequest, preset: Preset, cluster: Cluster) -> dict:
    trial_gpus = request.gpus_per_trial
    if trial_gpus is None:
        trial_gpus = min(preset.gpus_per_trial, cluster.max_node_gpus) if cluster.gpus else 0.0
    trial_cpus = request.cpus_per_trial or preset.cpus_per_trial
    if trial_gpus > cluster.max_node_gpus:
        where = (f"the largest node has {cluster.max_node_gpus:g}" if cluster.gpus
                 else "the cluster has no GPU")
        raise PlanError(f"--gpus-per-trial {trial_gpus:g} asks for more GPUs than any node "
                        f"offers ({where}); lower it (fractions share a GPU) or add GPUs")
    if trial_cpus > cluster.max_node_cpus:
        raise PlanError(f"--cpus-per-trial {trial_cpus:g} asks for more CPUs than any node "
                        f"offers (the largest has {cluster.max_node_cpus:g}); lower it")
    actors = len(KINDS)
    if actors * request.scorer_gpus > cluster.driver_gpus:
        raise PlanError(f"--scorer-gpus {request.scorer_gpus:g} reserves "
                        f"{actors * request.scorer_gpus:g} GPUs for the {actors} scorer actors "
                        f"on the driver's node, which has {cluster.driver_gpus:g}; lower it")
    # A cluster head kept free of trials offers no CPUs: the actors then reserve none.
    actor_cpus = (request.scorer_cpus
                  if cluster.driver_cpus >= actors * request.scorer_cpus else 0.0)
    free_cpus = cluster.cpus - actors * actor_cpus
    n = max(1, int(free_cpus // trial_cpus))
    if trial_gpus > 0:
        free_gpus = cluster.gpus - actors * request.scorer_gpus
        n = min(n, max(1, int(round(free_gpus / trial_gpus, 6))))
    n = min(n, request.max_concurrent or n)
    return dict(trial_cpus=float(trial_cpus), trial_gpus=float(trial_gpus),
                actor_cpus=float(actor_cpus), actor_gpus=float(request.scorer_gpus),
                concurrency=n)


def scorers_to_build(request: SweepRequest, specs: dict,
                     scorer_cached: Callable[[TrainSpec], bool]) -> list[TrainSpec]:
    """The scorer specs the store must still fine-tune (none with ``--scorers DIR``)."""
    if request.scorers_dir:
        return []
    return [spec for spec in specs.values() if not scorer_cached(spec)]


def resolve_plan(request: SweepRequest, cluster: Cluster,
                 scorer_cached: Callable[[TrainSpec], bool] = lambda spec: False,
                 speeds: Speeds | None = None) -> SweepPlan:
    """Settle every derived setting of ``request`` for ``cluster`` (PlanError if it cannot
    run there). ``scorer_cached(spec)``: whether the store already holds that scorer (the
    estimate counts the fine-tunes still to do); ``--scorers DIR`` needs none. ``speeds``:
    measured on this machine (``sweeps.calibrate``), replacing the preset's rates."""
    name = request.preset or default_preset(cluster.gpus)
    preset = effective_preset(request, name)
    specs = {kind: preset.scorer_spec(request.dataset, kind) for kind in KINDS}
    to_build = len(scorers_to_build(request, specs, scorer_cached))
    sweep_dir = request.sweep_dir
    sid = sweep_id(sweep_dir)
    model = MODEL_OF_SPACE[request.space]
    res = _resources(request, preset, cluster)
    trials = request.num_samples or preset.num_samples
    scheduler = request.scheduler or preset.scheduler
    unprobed = [c for c in OBJECTIVES[request.objective] if c not in PROBE_PREFIX]
    if scheduler == "asha" and unprobed:
        raise PlanError(f"--objective {request.objective}: early stopping needs a per-round "
                        f"probe of every score it optimises, and {', '.join(unprobed)} has "
                        f"none; pass --scheduler none, or choose an objective of "
                        f"{', '.join(PROBE_PREFIX)}")
    confirm_top = preset.confirm_top if request.confirm_top is None else request.confirm_top
    seeds = preset.confirm_seeds if request.confirm_seeds is None else request.confirm_seeds
    confirm_seeds = tuple(fresh_seeds(request.seed, seeds)) if confirm_top else ()
    expected, worst, phases = estimate(preset, model, request.dataset, trials,
                                       res["concurrency"], res["trial_gpus"] > 0, scheduler,
                                       to_build, min(confirm_top, trials) * len(confirm_seeds),
                                       speeds)
    constants = {"model": model, "dataset": request.dataset, "arch": preset.arch,
                 "subset": preset.subset, "test_subset": preset.test_subset,
                 "train_images": preset.train_images, "report_images": preset.report_images,
                 "seed": request.seed, "n_samples": list(preset.ns),
                 "labelled_samples": max(preset.ns),
                 "data_dir": request.data_dir, "compile": request.compile,
                 "sampler": sweep_sampler(request)}
    if request.conditional == "on":
        constants["conditional"] = True
    if preset.epochs is not None and preset.epochs[0] == preset.epochs[1]:
        constants["epochs"] = preset.epochs[0]

    return SweepPlan(
        request=request, preset=preset, sweep_dir=str(sweep_dir), sweep_id=sid,
        mlflow_uri=request.mlflow_uri or default_tracking_uri(sweep_dir),
        optuna_url=request.optuna_storage or f"sqlite:///{sweep_dir / 'optuna.db'}",
        study_name=f"gensweep-{request.space}-{request.dataset}-{sid}",
        experiment_name=f"gensweep-{request.space}-{request.dataset}",
        ns=tuple(preset.ns), objective=objective_keys(request.objective, preset.ns),
        paper_point=paper_point(request.space, request.dataset, preset, request.conditional),
        scorer_specs=specs,
        actor_names={kind: f"gensweep-{kind}-{sid}" for kind in KINDS},
        namespace=NAMESPACE, scheduler=scheduler, probe_n=preset.probe_samples,
        num_samples=trials, confirm_top=confirm_top, confirm_seeds=confirm_seeds,
        cluster_gpus=float(cluster.gpus),
        trial_constants=constants, estimate_minutes=round(expected, 1),
        estimate_max_minutes=round(worst, 1),
        estimate_phases={k: round(v, 2) for k, v in phases.items()}, speeds=speeds, **res)
