"""The VAE-GAN update is pythae's CoupledOptimizerAdversarialTrainer step, bit for bit, although
it names the parameters each backward feeds (trainables.loop._vaegan_step)."""
import copy

import pytest
import torch

from trainables.conditional import set_labels
from trainables.config import TrainConfig
from trainables.loop import _vaegan_step, make_optimizers
from trainables.models import build_model


def pythae_step(out, optimizers) -> None:
    """The oracle: pythae 0.1.2's trainer step as written there (coupled_optimizer_adversarial_
    trainer.py, lines 236-254): plain backwards into every network, zeroed per optimizer."""
    enc, dec, dis = optimizers["encoder"], optimizers["decoder"], optimizers["discriminator"]
    if out.update_encoder:
        enc.zero_grad()
        out.encoder_loss.backward(retain_graph=True)
    if out.update_decoder:
        dec.zero_grad()
        out.decoder_loss.backward(retain_graph=True)
    if out.update_discriminator:
        dis.zero_grad()
        out.discriminator_loss.backward()
    if out.update_encoder:
        enc.step()
    if out.update_decoder:
        dec.step()
    if out.update_discriminator:
        dis.step()


@pytest.mark.parametrize("conditional,layer,gated", [
    (False, 3, {(True, False), (False, True)}), (False, -1, {(True, False)}),
    (True, 2, {(True, False), (False, True)})])
def test_vaegan_step_is_pythaes_bit_for_bit(conditional, layer, gated):
    # margin 0.02 around the equilibrium (BCE starts near ln 2 = 0.69) makes the gating
    # switch the decoder or the discriminator off on some steps: every branch is taken
    cfg = TrainConfig(model="vaegan", arch="small", latent_dim=8, lr=3e-3, margin=0.02,
                      reconstruction_layer=layer, conditional=conditional)
    torch.manual_seed(0)
    ours = build_model(cfg)
    theirs = copy.deepcopy(ours)
    opt_ours, opt_theirs = make_optimizers(ours, "vaegan", 3e-3), make_optimizers(theirs, "vaegan", 3e-3)
    data = torch.rand(12 * 16, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(12 * 16) % 10
    gates = set()
    for i in range(12):
        batch = {"data": data[i * 16:(i + 1) * 16]}
        outs = []
        for model, opts, step in ((ours, opt_ours, _vaegan_step), (theirs, opt_theirs, pythae_step)):
            if conditional:
                set_labels(model, labels[i * 16:(i + 1) * 16])
            torch.manual_seed(100 + i)
            out = model(batch, epoch=1)
            step(out, opts)
            outs.append(out)
        gates.add((outs[0].update_decoder, outs[0].update_discriminator))
        assert (outs[0].update_decoder, outs[0].update_discriminator) == \
               (outs[1].update_decoder, outs[1].update_discriminator)
    assert gated <= gates, gates  # (update_decoder, update_discriminator) of the steps taken
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values()):
        assert torch.equal(a, b), name
    for key in opt_ours:
        for pa, pb in zip(opt_ours[key].param_groups[0]["params"],
                          opt_theirs[key].param_groups[0]["params"]):
            assert torch.equal(opt_ours[key].state[pa]["exp_avg"], opt_theirs[key].state[pb]["exp_avg"])

