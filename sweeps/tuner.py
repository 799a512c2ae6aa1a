"""A sweep's settings and its Ray Tune ``Tuner``: Optuna search, resources, MLflow callback.

``build_tuner`` only assembles objects (no Ray cluster needed, nothing runs), so tests can
inspect a sweep without fitting it; ``sweeps.run`` prepares scorers / MLflow and fits it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from scorers.spec import KINDS
from sweeps.presets import PRESETS, Preset
from sweeps.spaces import LR_RANGE, MODEL_OF_SPACE, SPACES, paper_point

log = logging.getLogger(__name__)

OBJECTIVES = ("ts", "is", "is+ts")
SCHEDULERS = ("none", "asha")
SCORER_KINDS = KINDS  # one ScorerActor per scorer kind
SWEEP_FILE = "sweep.json"


def n_label(n: int) -> str:
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def objective_metrics(objective: str, ns) -> tuple[list[str], list[str]]:
    """The metrics Optuna optimises (all maximised) at the largest sample count."""
    label = n_label(max(ns))
    prefixes = {"ts": ["ts"], "is": ["is"], "is+ts": ["is", "ts"]}[objective]
    return [f"{p}_{label}_mean" for p in prefixes], ["max"] * len(prefixes)


@dataclass
class SweepSettings:
    """Everything ``python sweeps/run.py`` was asked for, after validation and defaults."""

    space: str
    dataset: str = "mnist"
    preset: str = "quick"
    num_samples: int | None = None
    objective: str = "ts"
    scheduler: str = "none"
    address: str | None = None
    mlflow_uri: str | None = None
    optuna_storage: str | None = None
    storage: str = "runs/sweep"
    gpus_per_trial: float = 0.0
    cpus_per_trial: float = 1.0
    scorer_cpus: float = 0.5
    scorer_gpus: float = 0.0
    max_concurrent: int | None = None
    seed: int = 0
    scorers_dir: str | None = None
    data_dir: str | None = None
    max_failures: int = 2
    lr_range: tuple[float, float] = LR_RANGE
    epochs_range: tuple[int, int] | None = None

    def __post_init__(self):
        if self.space not in SPACES:
            raise ValueError(f"unknown space {self.space!r}; choose one of {', '.join(SPACES)}")
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"unknown objective {self.objective!r}; choose one of "
                             f"{', '.join(OBJECTIVES)}")
        lo, hi = self.lr_range
        if not 0 < lo <= hi:
            raise ValueError(f"lr range {lo},{hi} is invalid: need 0 < low <= high")
        if self.epochs_range is not None and not 1 <= self.epochs_range[0] <= self.epochs_range[1]:
            raise ValueError(f"epochs range {self.epochs_range[0]},{self.epochs_range[1]} is "
                             f"invalid: need 1 <= low <= high")
        # Trials run in their own folders: a relative path must mean what it meant here.
        if self.data_dir:
            self.data_dir = str(Path(self.data_dir).expanduser().resolve())
        if self.scorers_dir:
            self.scorers_dir = str(Path(self.scorers_dir).expanduser().resolve())
        if self.num_samples is None:
            self.num_samples = self.preset_obj.num_samples
        if self.num_samples < 1:
            raise ValueError(f"num_samples {self.num_samples} is invalid: need at least 1 trial")

    @property
    def preset_obj(self) -> Preset:
        preset = PRESETS[self.preset]
        if self.epochs_range is not None:
            preset = dataclasses.replace(preset, epochs=tuple(self.epochs_range))
        return preset

    @property
    def sweep_dir(self) -> Path:
        return Path(self.storage).resolve()

    @property
    def sweep_id(self) -> str:
        return hashlib.sha1(str(self.sweep_dir).encode()).hexdigest()[:10]

    @property
    def optuna_url(self) -> str:
        return self.optuna_storage or f"sqlite:///{self.sweep_dir / 'optuna.db'}"

    @property
    def study_name(self) -> str:
        return f"gensweep-{self.space}-{self.dataset}-{self.sweep_id}"

    def actor_names(self) -> dict:
        return {kind: f"gensweep-{kind}-{self.sweep_id}" for kind in SCORER_KINDS}

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "SweepSettings":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: (tuple(v) if isinstance(v, list) else v)
                      for k, v in values.items() if k in names})


def param_space(settings: SweepSettings, actor_names: dict | None, namespace: str | None) -> dict:
    """Searched hyperparameters plus the constants every trial of this sweep shares."""
    preset = settings.preset_obj
    model = MODEL_OF_SPACE[settings.space]
    space = SPACES[settings.space](preset, tuple(settings.lr_range))
    constants = {"model": model, "dataset": settings.dataset, "arch": preset.arch,
                 "subset": preset.subset, "test_subset": preset.test_subset,
                 "seed": settings.seed, "n_samples": list(preset.ns),
                 "data_dir": settings.data_dir,
                 "_ns": list(preset.ns), "_namespace": namespace,
                 "_scorers": dict(actor_names or {})}
    return {**constants, **space}


def make_searcher(settings: SweepSettings):
    """Seeded TPE (or multi-objective TPE for is+ts) over a persistent Optuna study."""
    import optuna
    from ray.tune.search import ConcurrencyLimiter

    from sweeps.search import score_search_class

    metrics, modes = objective_metrics(settings.objective, settings.preset_obj.ns)
    if not settings.optuna_storage:
        settings.sweep_dir.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(settings.optuna_url)
    sampler = optuna.samplers.TPESampler(seed=settings.seed, multivariate=len(metrics) == 1)
    searcher = score_search_class()(
        metric=metrics if len(metrics) > 1 else metrics[0],
        mode=modes if len(modes) > 1 else modes[0],
        points_to_evaluate=[paper_point(settings.space, settings.dataset, settings.preset_obj)],
        sampler=sampler, study_name=settings.study_name, storage=storage)
    if settings.max_concurrent:
        searcher = ConcurrencyLimiter(searcher, max_concurrent=settings.max_concurrent)
    return searcher


def make_scheduler(settings: SweepSettings):
    """ASHA on the per-epoch test reconstruction error: a cheap signal, reported every epoch."""
    if settings.scheduler == "none":
        return None
    from ray.tune.schedulers import ASHAScheduler

    lo, hi = settings.preset_obj.epochs
    return ASHAScheduler(time_attr="epoch", metric="test_pixel_mse", mode="min",
                         max_t=max(hi, 1), grace_period=max(1, lo // 2 or 1), reduction_factor=2)


def trial_name(trial) -> str:
    """Short trial names and folders (Tune's default packs the whole config into them)."""
    return f"trial_{trial.trial_id}"


def trainable_with_resources(settings: SweepSettings):
    from ray import tune

    from sweeps.trial import sweep_trial

    return tune.with_resources(sweep_trial, {"cpu": settings.cpus_per_trial,
                                             "gpu": settings.gpus_per_trial})


def build_tuner(settings: SweepSettings, *, actor_names: dict | None = None,
                namespace: str | None = None, callbacks: list | None = None):
    """The sweep's ``tune.Tuner``, ready for ``fit()`` (nothing is started here)."""
    from ray import tune

    _tune_environment()
    tune_config = tune.TuneConfig(search_alg=make_searcher(settings),
                                  scheduler=make_scheduler(settings),
                                  num_samples=settings.num_samples, reuse_actors=False,
                                  trial_name_creator=trial_name,
                                  trial_dirname_creator=trial_name)
    run_config = tune.RunConfig(
        name="tune", storage_path=str(settings.sweep_dir), callbacks=callbacks or [],
        failure_config=tune.FailureConfig(max_failures=settings.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2), verbose=1)
    return tune.Tuner(trainable_with_resources(settings),
                      param_space=param_space(settings, actor_names, namespace),
                      tune_config=tune_config, run_config=run_config)


def _tune_environment() -> None:
    # Scores arrive only in a trial's last report; per-epoch reports carry losses.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    # Save the experiment state (trials + searcher) on every controller step, not every 10 s:
    # a driver killed between an Optuna "ask" and the next save would otherwise leave an
    # Optuna trial that the resumed sweep never finishes. Cheap at sweep sizes.
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "0")


def restore_tuner(settings: SweepSettings, actor_names: dict, namespace: str):
    """Continue an interrupted sweep from its Tune experiment folder."""
    from ray import tune

    _tune_environment()
    path = settings.sweep_dir / "tune"
    if not tune.Tuner.can_restore(str(path)):
        raise FileNotFoundError(f"{path} holds no Tune experiment to resume")
    return tune.Tuner.restore(str(path), trainable=trainable_with_resources(settings),
                              param_space=param_space(settings, actor_names, namespace),
                              resume_unfinished=True, resume_errored=True)


def write_sweep_file(settings: SweepSettings, extra: dict) -> Path:
    path = settings.sweep_dir / SWEEP_FILE
    tmp = path.with_suffix(".tmp")
    # Owner-only: the URLs in it may carry passwords (everything logged is redacted instead).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(json.dumps({"settings": settings.to_dict(), **extra}, indent=1))
    tmp.replace(path)
    return path


def read_sweep_file(sweep_dir: Path) -> dict:
    return json.loads((Path(sweep_dir) / SWEEP_FILE).read_text())
