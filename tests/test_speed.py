"""GPU speed-ups and device choice: what they switch on where, and that CPU runs compute
exactly what the plain code computes (trainables.speed, trainables.device)."""
import json

import numpy as np
import pytest
import torch

from trainables.config import TrainConfig
from trainables.device import Assignment, choose_device
from trainables.speed import Speed, apply, as_input, autocast_outputs
from trainables.trainable import LocalReporter, run_training

TINY = dict(arch="small", subset=600, test_subset=300, batch_size=100, n_samples=(64,))


def test_speed_is_all_off_on_the_cpu_and_on_for_cuda():
    assert Speed.resolve("cpu", bf16_supported=True, compile=True) == Speed()
    assert Speed.resolve("cuda", bf16_supported=True, compile=True) == Speed(True, True, True, True)
    assert Speed.resolve("cuda", bf16_supported=False) == Speed(False, True, True, False)
    assert Speed().describe() == "none"


def test_cpu_run_asking_for_every_speed_up_computes_the_plain_run(tmp_path):
    """--compile (and the GPU-only switches) change nothing a CPU run computes, bit for bit."""
    plain = run_training(TrainConfig(model="vaegan", epochs=1, **TINY),
                         LocalReporter(tmp_path / "plain"))
    asked = run_training(TrainConfig(model="vaegan", epochs=1, compile=True, **TINY),
                         LocalReporter(tmp_path / "asked"))
    for key in ("train_loss", "test_loss", "test_pixel_mse", "train_discriminator_loss"):
        assert asked.metrics[key] == plain.metrics[key], key
    np.testing.assert_array_equal(asked.samples, plain.samples)
    assert asked.metrics["speed"] == "none"


def test_bf16_autocast_wraps_the_networks_and_keeps_losses_float32():
    """The wrapper used on GPUs, run here under CPU autocast: pythae's VAE-GAN losses (BCE,
    which autocast refuses) still work, and every network output is float32 again."""
    from trainables.loop import _vaegan_step, make_optimizers
    from trainables.models import build_model

    torch.manual_seed(0)
    cfg = TrainConfig(model="vaegan", **TINY)
    model = build_model(cfg)
    reference = build_model(cfg)
    reference.load_state_dict(model.state_dict())
    for name in ("encoder", "decoder", "discriminator"):
        autocast_outputs(getattr(model, name), "cpu")
    x = torch.rand(8, 1, 28, 28)
    torch.manual_seed(1)
    out = model({"data": x}, epoch=1)
    torch.manual_seed(1)
    ref = reference({"data": x}, epoch=1)
    assert out.recon_x.dtype == torch.float32 and out.loss.dtype == torch.float32
    assert not torch.equal(out.recon_x, ref.recon_x)  # autocast was on: bf16 rounding
    assert torch.allclose(out.recon_x, ref.recon_x, atol=0.05)
    _vaegan_step(out, make_optimizers(model, "vaegan", 1e-3))  # backward through the wrapper


def test_channels_last_input_and_model_layout():
    from trainables.models import build_model

    speed = Speed(channels_last=True)
    x = as_input(torch.rand(4, 1, 28, 28), speed)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert as_input(x, Speed()) is x
    model = apply(build_model(TrainConfig(model="vae", **TINY)), speed, torch.device("cpu"))
    conv = model.encoder.layers[0][0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("requested,assignment,cuda,expected", [
    ("auto", Assignment(), True, "cuda"),
    ("auto", Assignment(), False, "cpu"),
    ("auto", Assignment(gpus=0.0, in_ray=True), True, "cpu"),  # Ray gave this trial no GPU
    ("auto", Assignment(gpus=0.25, gpu_ids=("0",), in_ray=True), True, "cuda"),
    ("auto", Assignment(gpus=1.0, gpu_ids=("0",), in_ray=True), False, "cpu"),  # logical GPU
    ("cpu", Assignment(gpus=1.0, in_ray=True), True, "cpu"),
])
def test_device_follows_rays_assignment(requested, assignment, cuda, expected):
    name, why = choose_device(requested, assignment, cuda)
    assert name == expected
    if assignment.gpus and not cuda and requested == "auto":
        assert "logical GPU" in why and "running on the CPU" in why


def test_asking_for_cuda_without_cuda_is_an_error():
    with pytest.raises(ValueError, match="CUDA is not available"):
        choose_device("cuda:0", Assignment(), cuda_available=False)


def test_vit_inference_on_the_cpu_is_float32():
    """The ViT scorer's bf16 autocast is for GPUs only: on the CPU, predict is the plain
    float32 forward pass."""
    from scorers import vit

    torch.manual_seed(0)
    model = vit.build("scratch").eval()
    x = np.random.default_rng(0).random((5, 28, 28)).astype(np.float32)
    probs, feats = vit.predict(model, x)
    with torch.inference_mode():
        logits, hidden = vit._forward(model, vit._prepare(model, x, torch.device("cpu")))
    np.testing.assert_array_equal(feats, hidden.numpy())
    np.testing.assert_allclose(probs, torch.softmax(logits.double(), 1).numpy(), rtol=1e-12)
    assert json.dumps(probs.sum(1).round(6).tolist()) == json.dumps([1.0] * 5)
