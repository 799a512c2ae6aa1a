"""``build_model(cfg)``: the pythae ``VAE`` or ``VAEGAN`` a :class:`TrainConfig` describes,
on the benchmark networks (:mod:`trainables.networks`) or, with ``cfg.conditional``, on
their class-conditional versions (:mod:`trainables.conditional`)."""
from __future__ import annotations

from trainables.conditional import build_conditional_networks
from trainables.networks import PAPER_WIDTHS, SMALL_WIDTHS, build_networks


def build_model(cfg):
    """The model for ``cfg``. A conditional model carries its :class:`ClassCondition` as
    ``model.condition`` (set the batch's labels with ``conditional.set_labels``)."""
    from pythae.models import VAE, VAEGAN, VAEConfig, VAEGANConfig

    with_disc = cfg.model == "vaegan"
    condition = None
    if cfg.conditional:
        # pythae's paper-size nets take no label; ours have the same layers at these widths
        widths = PAPER_WIDTHS if cfg.arch == "paper" else SMALL_WIDTHS
        enc, dec, disc, condition = build_conditional_networks(widths, cfg.latent_dim, with_disc)
    else:
        enc, dec, disc = build_networks(cfg.arch, cfg.latent_dim, with_disc)
    if cfg.model == "vae":
        mc = VAEConfig(input_dim=(1, 28, 28), latent_dim=cfg.latent_dim, reconstruction_loss="mse")
        model = VAE(mc, encoder=enc, decoder=dec)
    else:
        mc = VAEGANConfig(input_dim=(1, 28, 28), latent_dim=cfg.latent_dim,
                          reconstruction_loss="mse",
                          adversarial_loss_scale=cfg.adversarial_loss_scale,
                          reconstruction_layer=cfg.reconstruction_layer,
                          equilibrium=cfg.equilibrium, margin=cfg.margin)
        model = VAEGAN(mc, encoder=enc, decoder=dec, discriminator=disc)
    model.condition = condition
    return model
