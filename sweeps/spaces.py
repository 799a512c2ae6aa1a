"""Search spaces: plain functions in a registry, so the CLI's ``--space`` choices come from here.

Each space function takes the (effective) preset and returns a Ray Tune search space over
:class:`trainables.config.TrainConfig` fields, with the preset's ranges: learning rate,
latent dimension, batch size, and epochs when the preset budgets epochs (under an image
budget every trial trains on the same number of images instead). ``paper_point`` gives the
paper's configuration for the same keys; every sweep evaluates it first
(``points_to_evaluate``), so the search's best is always shown next to the paper's setting.
"""
from __future__ import annotations

from trainables.config import PAPER, TrainConfig

RECONSTRUCTION_LAYERS = [1, 2, 3, 4]
PAPER_BATCH_SIZE = 256  # section 4.2


def vae_space(preset) -> dict:
    """VAE: learning rate (log-uniform), latent dimension, batch size (and epochs)."""
    from ray import tune

    space = {
        "lr": tune.loguniform(*preset.lr_range),
        "latent_dim": tune.choice(list(preset.latent_dims)),
        "batch_size": tune.choice(list(preset.batch_sizes)),
    }
    if preset.epochs is not None and preset.epochs[1] > preset.epochs[0]:
        space["epochs"] = tune.randint(preset.epochs[0], preset.epochs[1] + 1)
    return space


def vaegan_space(preset) -> dict:
    """VAE-GAN: the VAE's knobs plus pythae's adversarial_loss_scale and reconstruction_layer."""
    from ray import tune

    return {
        **vae_space(preset),
        "adversarial_loss_scale": tune.uniform(0.1, 0.9),
        "reconstruction_layer": tune.choice(RECONSTRUCTION_LAYERS),
    }


SPACES = {"vae": vae_space, "vaegan": vaegan_space}
MODEL_OF_SPACE = {"vae": "vae", "vaegan": "vaegan"}
# Class-conditional networks: off (the paper's models), on (every trial), or searched.
CONDITIONAL = ("off", "on", "search")


def with_conditional(space: dict, conditional: str) -> dict:
    """``space`` with ``conditional`` searched (False / True) when asked to; a sweep with
    ``on`` passes it to every trial as a constant instead (sweeps.plan)."""
    if conditional != "search":
        return space
    from ray import tune

    return {**space, "conditional": tune.choice([False, True])}


def paper_point(space: str, dataset: str, preset, conditional: str = "off") -> dict:
    """The paper's hyperparameters for ``space`` on ``dataset``, clipped to the preset: its
    epochs into the preset's range (none under an image budget), its batch size to the
    preset's largest; unconditional where the sweep searches that (the paper's models are)."""
    model = MODEL_OF_SPACE[space]
    paper = PAPER[(model, dataset)]
    defaults = TrainConfig(model=model, dataset=dataset)
    point = {"lr": paper["lr"], "latent_dim": paper["latent_dim"],
             "batch_size": min(PAPER_BATCH_SIZE, max(preset.batch_sizes))}
    if preset.epochs is not None and preset.epochs[1] > preset.epochs[0]:
        lo, hi = preset.epochs
        point["epochs"] = min(max(paper["epochs"], lo), hi)
    if model == "vaegan":
        point["adversarial_loss_scale"] = defaults.adversarial_loss_scale
        point["reconstruction_layer"] = defaults.reconstruction_layer
    if conditional == "search":
        point["conditional"] = False
    return point


def is_paper_point(config: dict, point: dict) -> bool:
    """Whether a trial's ``config`` is the paper point (every one of its settings equal)."""
    return bool(point) and all(config.get(k) == v for k, v in point.items())
