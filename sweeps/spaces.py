"""Search spaces: plain functions in a registry, so the CLI's ``--space`` choices come from here.

Each space function takes the preset and returns a Ray Tune search space over
:class:`trainables.config.TrainConfig` fields. ``paper_point`` gives the paper's configuration
for the same keys; every sweep evaluates it first (``points_to_evaluate``), so the search's
best is always shown next to the paper's setting.
"""
from __future__ import annotations

from trainables.config import PAPER, TrainConfig

LATENT_DIMS = [8, 16, 32, 64]
BATCH_SIZES = [64, 128, 256]
RECONSTRUCTION_LAYERS = [1, 2, 3, 4]


LR_RANGE = (1e-5, 1e-2)


def vae_space(preset, lr_range=LR_RANGE) -> dict:
    """VAE: learning rate (log-uniform), latent dimension, epochs, batch size."""
    from ray import tune

    lo, hi = preset.epochs
    return {
        "lr": tune.loguniform(*lr_range),
        "latent_dim": tune.choice(LATENT_DIMS),
        "epochs": tune.randint(lo, hi + 1) if hi > lo else lo,
        "batch_size": tune.choice(BATCH_SIZES),
    }


def vaegan_space(preset, lr_range=LR_RANGE) -> dict:
    """VAE-GAN: the VAE's knobs plus pythae's adversarial_loss_scale and reconstruction_layer."""
    from ray import tune

    return {
        **vae_space(preset, lr_range),
        "adversarial_loss_scale": tune.uniform(0.1, 0.9),
        "reconstruction_layer": tune.choice(RECONSTRUCTION_LAYERS),
    }


SPACES = {"vae": vae_space, "vaegan": vaegan_space}
MODEL_OF_SPACE = {"vae": "vae", "vaegan": "vaegan"}


def paper_point(space: str, dataset: str, preset) -> dict:
    """The paper's hyperparameters for ``space`` on ``dataset``, clipped to the preset's epochs."""
    model = MODEL_OF_SPACE[space]
    paper = PAPER[(model, dataset)]
    defaults = TrainConfig(model=model, dataset=dataset)
    lo, hi = preset.epochs
    point = {"lr": paper["lr"], "latent_dim": paper["latent_dim"],
             "epochs": min(max(paper["epochs"], lo), hi), "batch_size": 256}
    if model == "vaegan":
        point["adversarial_loss_scale"] = defaults.adversarial_loss_scale
        point["reconstruction_layer"] = defaults.reconstruction_layer
    if lo == hi:
        point.pop("epochs")  # a constant, not a searched parameter
    return point
