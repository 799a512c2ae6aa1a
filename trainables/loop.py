"""VAE / VAE-GAN training steps over data held as a tensor on the training device.

pythae's ``TrainingPipeline`` wraps every batch in a ``DataLoader`` of dict samples; here the
whole (subset of the) dataset is one float tensor already on the device and each batch is a
slice of a shuffled index, so the loop costs nothing beyond the model. The VAE-GAN step is
pythae's ``CoupledOptimizerAdversarialTrainer`` step (same backward order, same equilibrium
gating), so results are comparable with pythae's own trainer.
"""
from __future__ import annotations

import math

import torch

from trainables.conditional import clears_labels, set_labels
from trainables.speed import as_input

VAE_KEYS = ("loss", "recon_loss", "reg_loss")
VAEGAN_KEYS = ("loss", "recon_loss", "encoder_loss", "decoder_loss", "discriminator_loss")


class Diverged(RuntimeError):
    """A loss became NaN or infinite; ``.losses`` holds the offending values."""

    def __init__(self, losses: dict, epoch: int, step: int, detail: str = ""):
        self.losses, self.epoch, self.step = losses, epoch, step
        bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
        super().__init__(f"diverged at epoch {epoch}, step {step}: {bad}"
                         + (f" ({detail})" if detail else ""))


def make_optimizers(model, model_kind: str, lr: float) -> dict:
    """Adam for the VAE; three Adams (encoder, decoder, discriminator) sharing ``lr`` for the
    VAE-GAN, since pythae gives each its own learning rate and one swept lr sets all three."""
    if model_kind == "vae":
        return {"model": torch.optim.Adam(model.parameters(), lr=lr)}
    return {
        "encoder": torch.optim.Adam(model.encoder.parameters(), lr=lr),
        "decoder": torch.optim.Adam(model.decoder.parameters(), lr=lr),
        "discriminator": torch.optim.Adam(model.discriminator.parameters(), lr=lr),
    }


def _params(optimizer) -> list:
    return [p for group in optimizer.param_groups for p in group["params"]]


def _vaegan_step(out, optimizers) -> None:
    """One VAE-GAN update with exactly the gradients of pythae's trainer, computed for less.

    pythae zeroes each network's gradients just before "its" loss's backward and lets every
    backward accumulate into every network, then steps all three. So, at step time, the
    encoder holds the gradient of encoder_loss (+ decoder_loss when the decoder updates),
    the decoder that of decoder_loss (+ discriminator_loss when the discriminator updates:
    pythae's quirk, kept for comparability), the discriminator that of discriminator_loss;
    everything else those backwards compute is zeroed before use. Naming the parameters each
    backward feeds (``inputs=``) lets autograd skip that work (the decoder's weight
    gradients in the encoder's pass, the real images' discriminator pass in the decoder's),
    in the same order, so the result is bit for bit pythae's (``tests/test_vaegan_step.py``)
    at 1.13-1.18x the speed per step on one CPU thread (``bench/vaegan_step.py``).
    """
    enc, dec, dis = optimizers["encoder"], optimizers["decoder"], optimizers["discriminator"]
    enc_p = _params(enc) if out.update_encoder else []
    dec_p = _params(dec) if out.update_decoder else []
    # Every backward before any step, so each loss sees the same weights.
    if out.update_encoder:
        enc.zero_grad()
        out.encoder_loss.backward(retain_graph=True, inputs=enc_p)
    if out.update_decoder:
        dec.zero_grad()
        out.decoder_loss.backward(retain_graph=True, inputs=enc_p + dec_p)
    if out.update_discriminator:
        dis.zero_grad()
        out.discriminator_loss.backward(inputs=_params(dis) + dec_p)
    if out.update_encoder:
        enc.step()
    if out.update_decoder:
        dec.step()
    if out.update_discriminator:
        dis.step()


def _losses(out, keys) -> dict:
    return {k: out[k].detach() for k in keys if k in out and out[k] is not None}


def cosine_lr(base: float, total_steps: int, warmup: int = 0):
    """``lr_at(step)``: linear warm-up over ``warmup`` steps, then cosine decay from ``base``
    to 0 at ``total_steps``."""
    def lr_at(step: int) -> float:
        if step < warmup:
            return base * (step + 1) / warmup
        done = (step - warmup) / max(1, total_steps - warmup)
        return base * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))
    return lr_at


def batches_per_epoch(n_images: int, batch_size: int) -> int:
    return -(-n_images // batch_size)


def epoch_order(n_images: int, seed: int, epoch: int) -> torch.Tensor:
    """The shuffled image order of (0-based) ``epoch``: a function of seed and epoch alone,
    so a run resumed at any step draws exactly the batches an uninterrupted one would."""
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n_images, generator=gen)


@clears_labels
def train_steps(model, model_kind: str, optimizers: dict, data: torch.Tensor, batch_size: int,
                seed: int, first_step: int, n_steps: int, speed=None,
                order=None, lr_at=None, labels=None) -> tuple[dict, int]:
    """Train global optimizer steps ``first_step`` .. ``first_step + n_steps - 1`` (step g takes
    batch g mod B of epoch g // B, B batches per epoch); returns the mean of each loss
    component over them and the number of images they took. Raises :class:`Diverged`.
    ``order(epoch)`` gives an epoch's image order (default :func:`epoch_order`; the
    pythae comparison bench passes pythae's own). ``lr_at(step)``, if given, sets every
    optimizer's learning rate before each step (a function of the step alone, so a resumed
    run follows the same schedule). ``labels`` (aligned with ``data``): each image's class,
    handed to a conditional model with its batch."""
    model.train()
    keys = VAE_KEYS if model_kind == "vae" else VAEGAN_KEYS
    per_epoch = batches_per_epoch(len(data), batch_size)
    sums = {k: torch.zeros((), device=data.device) for k in keys}
    current, order_epoch, images = None, None, 0
    for i, step in enumerate(range(first_step, first_step + n_steps)):
        epoch, b = divmod(step, per_epoch)
        if epoch != order_epoch:
            perm = order(epoch) if order is not None else epoch_order(len(data), seed, epoch)
            order_epoch, current = epoch, perm.to(data.device)
        idx = current[b * batch_size:(b + 1) * batch_size]
        batch = data[idx]
        if labels is not None:
            set_labels(model, labels[idx])
        images += len(batch)
        if lr_at is not None:
            rate = lr_at(step)
            for opt in optimizers.values():
                for group in opt.param_groups:
                    group["lr"] = rate
        if speed is not None:
            batch = as_input(batch, speed)
        try:
            out = model({"data": batch}, epoch=epoch + 1)
            if model_kind == "vae":
                opt = optimizers["model"]
                opt.zero_grad()
                out.loss.backward()
                opt.step()
            else:
                _vaegan_step(out, optimizers)
        except RuntimeError as exc:
            # NaN weights make BCE raise ("input should be between 0 and 1") before any loss
            # can be inspected; that is divergence, not a bug.
            if _weights_finite(model) and "between 0 and 1" not in str(exc):
                raise
            raise Diverged({"loss": float("nan")}, epoch + 1, step,
                           str(exc).splitlines()[0]) from exc
        losses = _losses(out, keys)
        # A sync every 50 steps (not every step) keeps the device busy yet catches NaNs early.
        if i % 50 == 0:
            _check_finite(losses, epoch + 1, step)
        for k, v in losses.items():
            sums[k] += v
    means = {k: float(v) / max(n_steps, 1) for k, v in sums.items()}
    _check_finite(means, first_step // per_epoch + 1, first_step + n_steps)
    return means, images


def _weights_finite(model) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _check_finite(losses: dict, epoch: int, step: int) -> None:
    values = {k: float(v) for k, v in losses.items()}
    if not all(math.isfinite(v) for v in values.values()):
        raise Diverged(values, epoch, step)


@torch.no_grad()
@clears_labels
def evaluate(model, model_kind: str, data: torch.Tensor, batch_size: int, speed=None,
             labels=None) -> dict:
    """Mean test losses (eval mode: BN running statistics, no parameter updates), plus
    ``pixel_mse``: per-pixel reconstruction error, comparable across models and epochs where
    the VAE-GAN's own reconstruction loss (in the moving discriminator's features) is not."""
    model.eval()
    keys = VAE_KEYS if model_kind == "vae" else VAEGAN_KEYS
    sums = {k: 0.0 for k in (*keys, "pixel_mse")}
    count = 0
    for start in range(0, len(data), batch_size):
        batch = data[start:start + batch_size]
        if labels is not None:
            set_labels(model, labels[start:start + batch_size])
        out = model({"data": batch if speed is None else as_input(batch, speed)}, epoch=0)
        for k, v in _losses(out, keys).items():
            sums[k] += float(v) * len(batch)
        sums["pixel_mse"] += float(((out.recon_x - batch) ** 2).mean()) * len(batch)
        count += len(batch)
    return {k: v / max(count, 1) for k, v in sums.items()}
