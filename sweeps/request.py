"""What a sweep was asked for: ``SweepRequest``, validated once, before anything starts.

Fields left ``None`` are decided when the cluster is known (``sweeps.plan.resolve_plan``):
the preset (``paper`` with GPUs, ``quick`` without), the scheduler, and the trial resources
come from the preset. The request is what ``sweep.json`` records as the sweep's intent, so
``--resume`` continues exactly what was asked.
"""
from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass
from pathlib import Path

from scorers.keys import OBJECTIVES
from sweeps.presets import PRESETS
from sweeps.spaces import CONDITIONAL, SPACES
from trainables.config import SAMPLERS

SCHEDULERS = ("none", "asha")


@dataclass(frozen=True)
class SweepRequest:
    space: str
    dataset: str = "mnist"
    preset: str | None = None
    num_samples: int | None = None
    objective: str = "ts"
    scheduler: str | None = None
    address: str | None = None
    mlflow_uri: str | None = None
    optuna_storage: str | None = None
    storage: str = "runs/sweep"
    gpus_per_trial: float | None = None
    cpus_per_trial: float | None = None
    scorer_cpus: float = 0.5
    scorer_gpus: float = 0.0
    max_concurrent: int | None = None
    seed: int = 0
    scorers_dir: str | None = None
    data_dir: str | None = None
    max_failures: int = 2
    lr_range: tuple[float, float] | None = None
    epochs_range: tuple[int, int] | None = None
    train_images: int | None = None
    compile: bool = False
    conditional: str = "off"  # sweeps.spaces.CONDITIONAL
    # trainables.config.SAMPLERS; None: the sweep's default (sweeps.plan.sweep_sampler)
    sampler: str | None = None
    confirm_top: int | None = None  # None: the preset's (sweeps.confirm)
    confirm_seeds: int | None = None

    def __post_init__(self):
        def fail(what: str):
            raise ValueError(what)

        if self.space not in SPACES:
            fail(f"unknown space {self.space!r}; choose one of {', '.join(SPACES)}")
        if self.preset is not None and self.preset not in PRESETS:
            fail(f"unknown preset {self.preset!r}; choose one of {', '.join(PRESETS)}")
        if self.objective not in OBJECTIVES:
            fail(f"unknown objective {self.objective!r}; choose one of {', '.join(OBJECTIVES)}")
        if self.conditional not in CONDITIONAL:
            fail(f"conditional {self.conditional!r} unknown; choose one of "
                 f"{', '.join(CONDITIONAL)}")
        if self.sampler is not None and self.sampler not in SAMPLERS:
            fail(f"unknown sampler {self.sampler!r}; choose one of {', '.join(SAMPLERS)}")
        if self.sampler not in (None, "prior") and self.conditional != "off":
            fail(f"sampler {self.sampler!r} draws unconditional samples; a class-conditional "
                 f"sweep (--conditional {self.conditional}) draws from the prior, class by "
                 f"class: use --sampler prior or --conditional off")
        if self.scheduler is not None and self.scheduler not in SCHEDULERS:
            fail(f"unknown scheduler {self.scheduler!r}; choose one of {', '.join(SCHEDULERS)}")
        if self.lr_range is not None:
            lo, hi = self.lr_range
            if not 0 < lo <= hi:
                fail(f"lr range {lo},{hi} is invalid: need 0 < low <= high")
        if self.epochs_range is not None and not 1 <= self.epochs_range[0] <= self.epochs_range[1]:
            fail(f"epochs range {self.epochs_range[0]},{self.epochs_range[1]} is invalid: "
                 f"need 1 <= low <= high")
        if self.confirm_top is not None and self.confirm_top < 0:
            fail(f"confirm_top {self.confirm_top} is invalid: need >= 0 (0 skips the "
                 f"confirmation)")
        if self.confirm_seeds is not None and self.confirm_seeds < 1:
            fail(f"confirm_seeds {self.confirm_seeds} is invalid: need at least 1 seed")
        if self.num_samples is not None and self.num_samples < 1:
            fail(f"num_samples {self.num_samples} is invalid: need at least 1 trial")
        if self.train_images is not None and self.train_images < 1:
            fail(f"train_images {self.train_images} is invalid: need at least 1 image")
        for name in ("gpus_per_trial", "scorer_gpus", "scorer_cpus"):
            value = getattr(self, name)
            if value is not None and value < 0:
                fail(f"{name} {value} is invalid: need >= 0")
        if self.cpus_per_trial is not None and self.cpus_per_trial <= 0:
            fail(f"cpus_per_trial {self.cpus_per_trial} is invalid: need > 0")
        # Trials run in their own folders: a relative path must mean what it meant here.
        for name in ("data_dir", "scorers_dir"):
            if getattr(self, name):
                object.__setattr__(self, name, str(Path(getattr(self, name)).expanduser()
                                                   .resolve()))
        for name in ("lr_range", "epochs_range"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(getattr(self, name)))

    @property
    def sweep_dir(self) -> Path:
        return Path(self.storage).resolve()

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "SweepRequest":
        """From ``sweep.json``; an unknown key is an error naming it (never silently dropped)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown sweep setting(s) {', '.join(map(repr, unknown))}")
        return cls(**values)
