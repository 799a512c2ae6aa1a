"""Typed training configuration, with the paper's defaults (section 4.2) per model and dataset."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from trainables.datasets import DATASETS

MODELS = ("vae", "vaegan")
ARCHS = ("paper", "small")
# Where the decoder's z comes from (trainables.samples.draw_samples): the prior N(0, I), as
# the paper scores its models, or a Gaussian mixture fitted to where the encoder puts the
# training images (ex-post density estimation, Ghosh et al. 2020; pythae's
# GaussianMixtureSampler), the paper's "latent space distribution of VAE".
SAMPLERS = ("prior", "latent-gmm")
LR_SCHEDULES = ("constant", "cosine")

# Section 4.2: Adam, batch 256, MSE reconstruction; VAE lr 1e-3; VAE-GAN lr 1e-4 (MNIST) and
# 1e-3 (Fashion-MNIST); latent 16 (MNIST) / 32 (Fashion-MNIST); 67 / 85 epochs (the paper
# gives epochs for the VAE only, so the VAE-GAN uses the same).
PAPER = {
    ("vae", "mnist"): dict(lr=1e-3, latent_dim=16, epochs=67),
    ("vae", "fashion-mnist"): dict(lr=1e-3, latent_dim=32, epochs=85),
    ("vaegan", "mnist"): dict(lr=1e-4, latent_dim=16, epochs=67),
    ("vaegan", "fashion-mnist"): dict(lr=1e-3, latent_dim=32, epochs=85),
}


class ConfigError(ValueError):
    """A training setting is out of range; the message names it and the accepted values."""


@dataclass
class TrainConfig:
    """Everything one training run needs. ``None`` fields take the paper's value."""

    model: str = "vaegan"
    dataset: str = "mnist"
    arch: str = "paper"
    epochs: int | None = None
    batch_size: int = 256
    lr: float | None = None
    latent_dim: int | None = None
    # VAE-GAN only (pythae's VAEGANConfig). The paper names no values; these are pythae's own
    # MNIST benchmark config (examples/scripts/configs/mnist/vaegan_config.json), which the
    # paper's set-up follows (latent 16, MSE). -1 would mean the discriminator's last layer.
    adversarial_loss_scale: float = 0.8
    reconstruction_layer: int = 3
    equilibrium: float = 0.68
    margin: float = 0.4
    # Class-conditional networks (trainables.conditional): the label enters the encoder, the
    # decoder and the VAE-GAN's discriminator, and samples of any chosen class can be drawn.
    conditional: bool = False
    subset: int | None = None
    test_subset: int | None = None
    # An image budget: train exactly ceil(train_images / batch_size) optimizer steps, whatever
    # the data size, reporting every report_images images. None: ``epochs`` epochs, one
    # report each. A budget in images gives every trial of a sweep the same compute.
    train_images: int | None = None
    report_images: int | None = None
    # Learning rate over the run: constant (the paper's Adam), or cosine decay to 0 over the
    # whole budget, which a short budget gains most from.
    lr_schedule: str = "constant"
    sampler: str = "prior"  # SAMPLERS
    seed: int = 0
    n_samples: tuple[int, ...] = (1000, 5000)
    # Also draw this many labelled samples at the end, for train-on-synthetic accuracy: by
    # class from a conditional model (sample_conditional), else from per-class mixtures
    # over the encoder's codes (trainables.samples.sample_class_gmm). Generated, never
    # reconstructions of training images.
    labelled_samples: int | None = None
    data_dir: str | None = None
    device: str = "auto"
    compile: bool = False  # torch.compile the networks (GPU only; see trainables.speed)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ConfigError(f"model {self.model!r} unknown; choose one of {', '.join(MODELS)}")
        if self.dataset not in DATASETS:
            raise ConfigError(f"dataset {self.dataset!r} unknown; choose one of {', '.join(DATASETS)}")
        if self.arch not in ARCHS:
            raise ConfigError(f"arch {self.arch!r} unknown; choose one of {', '.join(ARCHS)}")
        paper = PAPER[(self.model, self.dataset)]
        for name in ("lr", "latent_dim", "epochs"):
            if getattr(self, name) is None:
                setattr(self, name, paper[name])
        self.n_samples = tuple(int(n) for n in self.n_samples)
        self._check()

    def _check(self) -> None:
        def bad(name, rule):
            raise ConfigError(f"{name}={getattr(self, name)!r} is invalid: {rule}")

        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            bad("epochs", "must be an integer >= 1")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            bad("batch_size", "must be an integer >= 1")
        if not (isinstance(self.latent_dim, int) and self.latent_dim >= 1):
            bad("latent_dim", "must be an integer >= 1")
        if not (self.lr > 0):
            bad("lr", "must be > 0")
        if self.lr_schedule not in LR_SCHEDULES:
            bad("lr_schedule", f"must be one of {', '.join(LR_SCHEDULES)}")
        if not 0 <= self.adversarial_loss_scale <= 1:
            bad("adversarial_loss_scale", "must be in [0, 1]")
        # The benchmark discriminators have 5 layers; -1 means the last.
        if not (self.reconstruction_layer == -1 or 1 <= self.reconstruction_layer <= 5):
            bad("reconstruction_layer", "must be -1 or 1..5")
        if self.margin < 0:
            bad("margin", "must be >= 0")
        for name in ("subset", "test_subset", "train_images", "report_images",
                     "labelled_samples"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and value >= 1):
                bad(name, "must be a positive number of images (or omitted)")
        if not isinstance(self.conditional, bool):
            bad("conditional", "must be true or false")
        if self.sampler not in SAMPLERS:
            bad("sampler", f"must be one of {', '.join(SAMPLERS)}")
        if self.sampler != "prior" and self.conditional:
            bad("sampler", "a class-conditional model draws from the prior, class by class")
        if self.conditional and self.model == "vaegan" and self.reconstruction_layer in (5, -1):
            # the conditional discriminator's last layer sees the label; its inner ones do not
            bad("reconstruction_layer", "must be 1..4 for a conditional VAE-GAN (layer 5 is "
                                        "the label-aware output)")
        if not self.n_samples or min(self.n_samples) < 0:
            bad("n_samples", "must be non-negative sample counts, e.g. (1000, 5000)")

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Build from a Tune config / JSON. An unknown key is an error naming it: a misspelt
        search-space key must not train silently with the default value."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ConfigError(f"unknown training setting(s) {', '.join(map(repr, unknown))}; "
                              f"known: {', '.join(sorted(names))}")
        known = dict(values)
        for key in ("epochs", "batch_size", "latent_dim", "reconstruction_layer", "seed",
                    "train_images", "report_images", "labelled_samples"):
            # Search spaces hand back numpy integers and floats; keep the types plain.
            if known.get(key) is not None:
                known[key] = int(known[key])
        for key in ("lr", "adversarial_loss_scale", "equilibrium", "margin"):
            if known.get(key) is not None:
                known[key] = float(known[key])
        if "conditional" in known:
            known["conditional"] = _flag(known["conditional"])
        return cls(**known)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["n_samples"] = list(self.n_samples)
        return d


def _flag(value):
    """A search space's numpy bool (or an integer 0 / 1) as a plain bool; anything else is
    left for the check to name."""
    import numpy as np

    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)) and value in (0, 1):
        return bool(value)
    return value
