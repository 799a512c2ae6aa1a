"""The paper's Figure 3 networks (pythae's MNIST benchmark nets) and a narrow copy for CPUs.

``arch="paper"`` uses pythae's own ``Encoder_Conv_VAE_MNIST``, ``Decoder_Conv_AE_MNIST`` and
``Discriminator_Conv_MNIST``. ``arch="small"`` keeps every layer, kernel, stride and output
shape but divides the channel counts by 8, so tests and CPU sweeps run in seconds while the
discriminator layers keep the same numbering (``reconstruction_layer`` means the same thing).
"""
from __future__ import annotations

import torch
from pythae.models.base.base_utils import ModelOutput
from pythae.models.nn import BaseDecoder, BaseDiscriminator, BaseEncoder
from torch import nn

PAPER_WIDTHS = (128, 256, 512, 1024)
SMALL_WIDTHS = (16, 32, 64, 128)


def _layer_outputs(layers, x, levels, flatten_before=None, reshape_after_first=None):
    """Run ``layers`` and collect ``embedding_layer_i`` outputs as pythae's nets do."""
    depth = len(layers)
    max_depth = depth if not levels or -1 in levels else max(levels)
    if levels and not all(depth >= lv > 0 or lv == -1 for lv in levels):
        raise ValueError(f"cannot output layer deeper than depth ({depth}); got {levels}")
    out, collected = x, {}
    for i in range(max_depth):
        if flatten_before is not None and i == flatten_before:
            out = out.reshape(x.shape[0], -1)
        out = layers[i](out)
        if reshape_after_first is not None and i == 0:
            out = out.reshape(x.shape[0], *reshape_after_first)
        if levels and i + 1 in levels:
            collected[i + 1] = out
    # Like pythae: the final output exists only when every layer ran.
    return (out if max_depth == depth else None), collected


class ConvEncoder(BaseEncoder):
    """Figure 3 encoder: four Conv(4, 2)+BN+ReLU blocks, then mean and log-variance heads."""

    def __init__(self, latent_dim: int, widths=SMALL_WIDTHS):
        super().__init__()
        self.input_dim, self.latent_dim, self.n_channels = (1, 28, 28), latent_dim, 1
        chans = (1, *widths)
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Conv2d(chans[i], chans[i + 1], 4, 2, padding=1),
                          nn.BatchNorm2d(chans[i + 1]), nn.ReLU())
            for i in range(4))
        self.depth = 4
        self.embedding = nn.Linear(widths[-1], latent_dim)
        self.log_var = nn.Linear(widths[-1], latent_dim)

    def forward(self, x: torch.Tensor, output_layer_levels=None):
        out, collected = _layer_outputs(self.layers, x, output_layer_levels)
        output = ModelOutput(**{f"embedding_layer_{k}": v for k, v in collected.items()})
        if out is not None:
            flat = out.reshape(x.shape[0], -1)
            output["embedding"] = self.embedding(flat)
            output["log_covariance"] = self.log_var(flat)
        return output


class ConvDecoder(BaseDecoder):
    """Figure 3 decoder: Linear to a 4x4 map, two ConvT+BN+ReLU, ConvT + Sigmoid to 28x28."""

    def __init__(self, latent_dim: int, widths=SMALL_WIDTHS):
        super().__init__()
        self.input_dim, self.latent_dim, self.n_channels = (1, 28, 28), latent_dim, 1
        w = widths
        self.layers = nn.ModuleList([
            nn.Linear(latent_dim, w[3] * 4 * 4),
            nn.Sequential(nn.ConvTranspose2d(w[3], w[2], 3, 2, padding=1),
                          nn.BatchNorm2d(w[2]), nn.ReLU()),
            nn.Sequential(nn.ConvTranspose2d(w[2], w[1], 3, 2, padding=1, output_padding=1),
                          nn.BatchNorm2d(w[1]), nn.ReLU()),
            nn.Sequential(nn.ConvTranspose2d(w[1], 1, 3, 2, padding=1, output_padding=1),
                          nn.Sigmoid()),
        ])
        self.depth = 4
        self._first_shape = (w[3], 4, 4)

    def forward(self, z: torch.Tensor, output_layer_levels=None):
        out, collected = _layer_outputs(self.layers, z, output_layer_levels,
                                        reshape_after_first=self._first_shape)
        output = ModelOutput(**{f"reconstruction_layer_{k}": v for k, v in collected.items()})
        if out is not None:
            output["reconstruction"] = out
        return output


class ConvDiscriminator(BaseDiscriminator):
    """pythae's MNIST discriminator (no BN; ReLU, Tanh, ReLU, ReLU, then Linear + Sigmoid)."""

    def __init__(self, widths=SMALL_WIDTHS):
        super().__init__()
        self.input_dim, self.n_channels = (1, 28, 28), 1
        chans = (1, *widths)
        acts = (nn.ReLU, nn.Tanh, nn.ReLU, nn.ReLU)
        blocks = [nn.Sequential(nn.Conv2d(chans[i], chans[i + 1], 4, 2, padding=1), acts[i]())
                  for i in range(4)]
        self.layers = nn.ModuleList([*blocks, nn.Sequential(nn.Linear(widths[-1], 1), nn.Sigmoid())])
        self.depth = 5

    def forward(self, x: torch.Tensor, output_layer_levels=None):
        out, collected = _layer_outputs(self.layers, x, output_layer_levels, flatten_before=4)
        output = ModelOutput(**{f"embedding_layer_{k}": v for k, v in collected.items()})
        if out is not None:
            output["embedding"] = out
        return output


def build_networks(arch: str, latent_dim: int, with_discriminator: bool):
    """(encoder, decoder, discriminator-or-None) for ``arch`` in {"paper", "small"}."""
    if arch == "paper":
        from pythae.models import VAEConfig
        from pythae.models.nn.benchmarks.mnist import (Decoder_Conv_AE_MNIST,
                                                       Discriminator_Conv_MNIST,
                                                       Encoder_Conv_VAE_MNIST)
        cfg = VAEConfig(input_dim=(1, 28, 28), latent_dim=latent_dim)
        disc = Discriminator_Conv_MNIST(cfg) if with_discriminator else None
        return Encoder_Conv_VAE_MNIST(cfg), Decoder_Conv_AE_MNIST(cfg), disc
    if arch == "small":
        disc = ConvDiscriminator(SMALL_WIDTHS) if with_discriminator else None
        return ConvEncoder(latent_dim, SMALL_WIDTHS), ConvDecoder(latent_dim, SMALL_WIDTHS), disc
    raise ValueError(f"arch {arch!r} unknown; choose 'paper' or 'small'")
