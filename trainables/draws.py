"""What one sampling mode draws from a trained generator: the single dispatch behind
``gensweep synthesize`` and the registered MLflow model (``sweeps.generator_pyfunc``), so a
model loaded by name draws exactly what the export writes for the same checkpoint and seed.

Modes (``MODES``): ``prior`` z ~ N(0, I), unlabelled; ``latent-gmm`` a mixture fitted to the
encoder's codes of the training images, unlabelled; ``class-gmm`` one mixture per class,
labelled by construction; ``conditional`` a class-conditional model told each class;
``reconstruction`` training images encoded and decoded (not generated data: flagged by
every caller). The mixtures are fitted afresh from the generator's own training images
(found as every gensweep tool finds a dataset), seeded, so a draw is reproducible.
"""
from __future__ import annotations

import numpy as np

from trainables.datasets import load_dataset

MODES = ("prior", "latent-gmm", "class-gmm", "conditional", "reconstruction")
UNLABELLED = ("prior", "latent-gmm")
GENERATED = ("prior", "latent-gmm", "class-gmm", "conditional")  # no training image passes


def default_mode(cfg) -> str:
    """Labelled generated data: the label input of a conditional model, else per-class
    mixtures."""
    return "conditional" if cfg.conditional else "class-gmm"


def check_mode(cfg, mode: str, label: int | None = None) -> None:
    """ValueError naming what does not fit: an unknown mode, a mode the model cannot draw,
    or a class asked of an unlabelled mode."""
    if mode not in MODES:
        raise ValueError(f"sampler {mode!r} is not one of {', '.join(MODES)}")
    if mode == "conditional" and not cfg.conditional:
        raise ValueError("sampler 'conditional' needs a model trained with --conditional; "
                         "this one was not: use class-gmm for labelled samples")
    if mode in ("class-gmm", "latent-gmm") and cfg.conditional:
        raise ValueError(f"sampler {mode!r} draws from an unconditional model's codes; this "
                         f"model is class-conditional: use conditional")
    if label is not None and (mode not in ("class-gmm", "conditional")
                              or not 0 <= label < 10):
        raise ValueError(f"class {label} of sampler {mode!r}: a class (0-9) needs a labelled "
                         f"sampler (class-gmm, conditional)")


def draw(model, cfg, mode: str, n: int, seed: int, data_dir=None, label: int | None = None):
    """(images, labels or None, sources or None) of ``mode``: uint8 (n, 28, 28) images;
    labelled samples come n / 10 per class, class by class, or all of class ``label``;
    ``sources`` (reconstructions only) index the training images each image reconstructs."""
    from trainables.samples import (balanced_labels, sample_class_gmm, sample_conditional,
                                    sample_latent_gmm, sample_prior, sample_reconstruction)

    check_mode(cfg, mode, label)
    if mode == "prior":
        return sample_prior(model, n, seed=seed), None, None
    classes = (balanced_labels(n, seed, shuffle=False) if label is None
               else np.full(n, label, np.uint8))
    if mode == "conditional":
        return (*sample_conditional(model, classes, seed), None)
    # fitted to, or reconstructing, the images the generator trained on
    data = load_dataset(cfg.dataset, data_dir or cfg.data_dir, subset=cfg.subset, seed=cfg.seed)
    if mode == "latent-gmm":
        return sample_latent_gmm(model, data.train.images, n, seed), None, None
    if mode == "class-gmm":
        return (*sample_class_gmm(model, data.train.images, data.train.labels, classes, seed),
                None)
    return sample_reconstruction(model, data.train.images, data.train.labels, n, seed)
