"""Which device a trial or scorer runs on, following what Ray assigned to it.

Inside a Ray worker that was given GPUs, Ray sets ``CUDA_VISIBLE_DEVICES`` to them, so
``cuda`` is the assigned GPU. A GPU can also be only *logical* (``ray start --num-gpus 1``
on a machine without one, as CI does to take the GPU code paths): then the work runs on the
CPU, with one log line saying so, never a crash. A fractional share (``--gpus-per-trial
0.25``) also bounds the process's GPU memory to that share, so trials that share a GPU, and
TensorFlow beside torch in one process, cannot take all of it.

``torch`` is imported inside the functions; Ray is only consulted if this process already
imported it (a Ray worker has).
"""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Assignment:
    """What Ray gave this process: a GPU share (0 outside Ray or without GPUs) and ids."""

    gpus: float = 0.0
    gpu_ids: tuple = ()
    in_ray: bool = False
    node_id: str = ""


def ray_assignment() -> Assignment:
    """The GPUs Ray assigned to the current worker (nothing outside a Ray worker)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return Assignment()
    try:
        ctx = ray.get_runtime_context()
        resources = ctx.get_assigned_resources()
        ids = tuple(str(i) for i in ctx.get_accelerator_ids().get("GPU", ()))
    except Exception:  # the driver itself, or an older Ray: no assignment to follow
        return Assignment()
    return Assignment(gpus=float(resources.get("GPU", 0.0)), gpu_ids=ids, in_ray=True,
                      node_id=ctx.get_node_id() or "")


def choose_device(requested: str, assignment: Assignment, cuda_available: bool) -> tuple[str, str]:
    """(device name, why) for ``requested`` ('auto', 'cpu', 'cuda', 'cuda:N') — pure logic.

    'auto' inside Ray follows the assignment: the assigned GPU if CUDA exists, the CPU when
    the GPU is only logical, the CPU when no GPU was assigned. Outside Ray: CUDA if present.
    """
    if requested != "auto":
        if requested.startswith("cuda") and not cuda_available:
            raise ValueError(f"device {requested!r} asked for, but CUDA is not available here; "
                             f"use --device auto or cpu")
        return requested, "asked for"
    if assignment.in_ray:
        if assignment.gpus <= 0:
            return "cpu", "Ray assigned no GPU"
        if not cuda_available:
            return "cpu", (f"Ray assigned GPU share {assignment.gpus:g} (ids "
                           f"{','.join(assignment.gpu_ids) or '-'}) but CUDA is not available "
                           f"in this process (a logical GPU?); running on the CPU")
        return "cuda", f"Ray assigned GPU share {assignment.gpus:g}"
    return ("cuda", "CUDA found") if cuda_available else ("cpu", "no CUDA")


def pick_device(requested: str = "auto"):
    """The torch device to use, logging one line when a Ray GPU falls back to the CPU, and
    bounding GPU memory to a fractional share."""
    import torch

    assignment = ray_assignment()
    name, why = choose_device(requested, assignment, torch.cuda.is_available())
    if name == "cpu" and assignment.gpus > 0:
        log.warning("%s", why)
    device = torch.device(name)
    if device.type == "cuda" and 0 < assignment.gpus < 1:
        torch.cuda.set_per_process_memory_fraction(assignment.gpus, device)
    return device


def gpu_share() -> float:
    """This process's GPU share for memory bounds: Ray's fraction, else 1 (a whole GPU)."""
    assignment = ray_assignment()
    return assignment.gpus if 0 < assignment.gpus < 1 else 1.0
