"""Class-conditional versions of the benchmark networks (``TrainConfig.conditional``).

The label enters all three networks:

* the decoder reads ``[z, onehot(y)]`` (its first Linear takes ``latent_dim + 10`` inputs),
  so a sample of class c is ``decoder(z, c)`` with z ~ N(0, I);
* the encoder's mean and log-variance heads read ``[features(x), onehot(y)]``, so q(z|x, y)
  need not spend latent dimensions on the class (a conditional VAE, Sohn et al. 2015);
* the VAE-GAN's discriminator is a projection discriminator (Miyato & Koyama 2018): its
  logit is ``w . f(x) + embed(y) . f(x) + b`` on its last features, so it judges whether an
  image looks like *its* class, not only like a digit. Its layers 1-4 (the ones
  ``reconstruction_layer`` may pick in a conditional VAE-GAN; layer 5 is refused) do not see
  the label, so the feature-space reconstruction loss means what it means unconditionally.

pythae's ``VAE`` and ``VAEGAN`` call ``encoder(x)``, ``decoder(z)`` and ``discriminator(x)``
with no room for a label. One :class:`ClassCondition` shared by the three networks carries
the labels of the batch in flight; :func:`set_labels` sets it before each forward pass. Every
call pythae makes inside one forward pass has the batch's size, so the VAE-GAN's prior draws
take the batch's labels, as in a conditional GAN trained on real labels. A conditional
network called without labels, or with labels of another size, raises :class:`LabelsMissing`
instead of guessing.
"""
from __future__ import annotations

import functools

import torch
from pythae.models.base.base_utils import ModelOutput
from torch import nn
from torch.nn import functional as F

from trainables.networks import ConvDecoder, ConvDiscriminator, ConvEncoder, _layer_outputs

N_CLASSES = 10


class LabelsMissing(RuntimeError):
    """A conditional network ran without the labels of its batch."""


class ClassCondition:
    """The one-hot labels of the batch in flight, read by the conditional networks."""

    def __init__(self, n_classes: int = N_CLASSES):
        self.n_classes = n_classes
        self.labels: torch.Tensor | None = None

    def set(self, labels: torch.Tensor | None) -> None:
        self.labels = None if labels is None else labels.long()

    def labels_for(self, n: int, device) -> torch.Tensor:
        """The labels of a batch of ``n``; LabelsMissing if none, or another batch's, are set."""
        if self.labels is None or len(self.labels) != n:
            got = "none" if self.labels is None else f"{len(self.labels)}"
            raise LabelsMissing(f"a conditional network got a batch of {n} without its labels "
                                f"({got} set); call trainables.conditional.set_labels first")
        return self.labels.to(device)

    def onehot(self, n: int, device) -> torch.Tensor:
        return F.one_hot(self.labels_for(n, device), self.n_classes).float()


def set_labels(model, labels: torch.Tensor | None) -> None:
    """Give a conditional model the labels of the next batch (no-op for an unconditional one)."""
    condition = getattr(model, "condition", None)
    if condition is not None:
        condition.set(labels)


def is_conditional(model) -> bool:
    return getattr(model, "condition", None) is not None


def clears_labels(fn):
    """Decorate ``fn(model, ...)`` so the model's labels are cleared when it returns or
    raises: labels set for one call never feed a later one of the same batch size."""
    @functools.wraps(fn)
    def wrapper(model, *args, **kwargs):
        try:
            return fn(model, *args, **kwargs)
        finally:
            set_labels(model, None)
    return wrapper


class ConditionalEncoder(ConvEncoder):
    def __init__(self, latent_dim: int, widths, condition: ClassCondition):
        super().__init__(latent_dim, widths)
        self.condition = condition
        self.embedding = nn.Linear(widths[-1] + condition.n_classes, latent_dim)
        self.log_var = nn.Linear(widths[-1] + condition.n_classes, latent_dim)

    def forward(self, x: torch.Tensor, output_layer_levels=None):
        out, collected = _layer_outputs(self.layers, x, output_layer_levels)
        output = ModelOutput(**{f"embedding_layer_{k}": v for k, v in collected.items()})
        if out is not None:
            flat = out.reshape(x.shape[0], -1)
            joint = torch.cat([flat, self.condition.onehot(len(x), x.device)], dim=1)
            output["embedding"] = self.embedding(joint)
            output["log_covariance"] = self.log_var(joint)
        return output


class ConditionalDecoder(ConvDecoder):
    def __init__(self, latent_dim: int, widths, condition: ClassCondition):
        super().__init__(latent_dim, widths)
        self.condition = condition
        self.layers[0] = nn.Linear(latent_dim + condition.n_classes, widths[3] * 4 * 4)

    def forward(self, z: torch.Tensor, output_layer_levels=None):
        joint = torch.cat([z, self.condition.onehot(len(z), z.device)], dim=1)
        return super().forward(joint, output_layer_levels)


class ConditionalDiscriminator(ConvDiscriminator):
    def __init__(self, widths, condition: ClassCondition):
        super().__init__(widths)
        self.condition = condition
        self.projection = nn.Embedding(condition.n_classes, widths[-1])

    def forward(self, x: torch.Tensor, output_layer_levels=None):
        levels = output_layer_levels
        if levels and -1 not in levels and max(levels) < self.depth:
            return super().forward(x, levels)  # features only: the label is not needed
        inner = sorted({lv for lv in (levels or []) if lv not in (-1, self.depth)})
        output = super().forward(x, [*inner, self.depth - 1])
        features = output[f"embedding_layer_{self.depth - 1}"].reshape(x.shape[0], -1)
        y = self.condition.labels_for(len(x), x.device)
        logit = self.layers[-1][0](features) + (self.projection(y) * features).sum(1, keepdim=True)
        score = torch.sigmoid(logit)
        if levels and (self.depth in levels or -1 in levels):
            output[f"embedding_layer_{self.depth}"] = score
        output["embedding"] = score
        return output


def build_conditional_networks(widths, latent_dim: int, with_discriminator: bool):
    """(encoder, decoder, discriminator-or-None, condition) sharing one :class:`ClassCondition`."""
    condition = ClassCondition()
    disc = ConditionalDiscriminator(widths, condition) if with_discriminator else None
    return (ConditionalEncoder(latent_dim, widths, condition),
            ConditionalDecoder(latent_dim, widths, condition), disc, condition)
