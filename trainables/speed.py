"""GPU speed-ups for training and for the scorers' inference, resolved once per process.

* ``bf16``: the networks' forward passes under ``torch.autocast(dtype=bfloat16)`` where the
  GPU supports it. Only the networks: pythae's VAE-GAN losses use ``binary_cross_entropy``,
  which autocast refuses, and losses are better summed in float32 anyway, so each network's
  outputs are cast back to float32 before any loss sees them.
* ``channels_last``: NHWC memory layout for the convolutions (faster cuDNN kernels).
* ``cudnn_benchmark``: cuDNN picks the fastest algorithm for each input shape once.
* ``compile``: ``torch.compile`` of each network (opt-in: it costs a minute of compiling).

All of them are off on the CPU, where they would change what a run computes (bf16
rounding, other kernels) or cost more than they give; CPU results stay bit for bit those of
the plain code (``tests/test_speed.py``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Speed:
    bf16: bool = False
    channels_last: bool = False
    cudnn_benchmark: bool = False
    compile: bool = False

    @classmethod
    def resolve(cls, device_type: str, bf16_supported: bool = False,
                compile: bool = False) -> "Speed":
        """What to switch on for a device of ``device_type`` ('cuda' or 'cpu') — pure logic."""
        if device_type != "cuda":
            if compile:
                log.info("torch.compile asked for, but off on the CPU (it would change the "
                         "kernels CPU runs compute with)")
            return cls()
        return cls(bf16=bf16_supported, channels_last=True, cudnn_benchmark=True,
                   compile=compile)

    @classmethod
    def for_device(cls, device, compile: bool = False) -> "Speed":
        import torch

        cuda = device.type == "cuda"
        return cls.resolve(device.type, cuda and torch.cuda.is_bf16_supported(), compile)

    def describe(self) -> str:
        on = [k for k, v in self.__dict__.items() if v]
        return ", ".join(on) or "none"


def apply(model, speed: Speed, device):
    """Move ``model`` (a pythae VAE / VAE-GAN) to ``device`` with ``speed`` applied."""
    import torch

    if speed.cudnn_benchmark:
        torch.backends.cudnn.benchmark = True
    fmt = torch.channels_last if speed.channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt)
    for name in ("encoder", "decoder", "discriminator"):
        net = getattr(model, name, None)
        if net is None:
            continue
        if speed.bf16:
            autocast_outputs(net, device.type)
        if speed.compile:
            net.compile()  # in place: state_dict keys (and checkpoints) stay the same
    return model


def autocast_outputs(net, device_type: str) -> None:
    """Run ``net``'s forward under bf16 autocast and hand float32 tensors back."""
    import torch

    inner = net.forward

    def forward(*args, **kwargs):
        with torch.autocast(device_type, dtype=torch.bfloat16):
            out = inner(*args, **kwargs)
        for key, value in list(out.items()):
            if torch.is_tensor(value) and value.is_floating_point():
                out[key] = value.float()
        return out

    net.forward = forward


def as_input(batch, speed: Speed):
    """A batch in the memory layout the networks expect."""
    import torch

    return batch.contiguous(memory_format=torch.channels_last) if speed.channels_last else batch
