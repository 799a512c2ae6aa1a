"""Training checkpoints that cannot run code when loaded: safetensors tensors + JSON.

A checkpoint folder holds
  ``model.safetensors``   the model's state dict (encoder, decoder, discriminator, BN stats)
  ``optim.safetensors``   every optimizer's tensor state, keys ``<name>/<param-index>/<field>``
  ``state.json``          epoch, optimizer hyperparameters, RNG states, loss history, config
so a restarted trial continues bit for bit where it stopped. pythae's own save format pickles
the networks (cloudpickle); we never load that.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from trainables.config import ConfigError, TrainConfig

log = logging.getLogger(__name__)

MODEL_FILE, OPTIM_FILE, STATE_FILE = "model.safetensors", "optim.safetensors", "state.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or does not match the model it is loaded into."""


def _optim_tensors(optimizers: dict) -> tuple[dict, dict]:
    tensors, meta = {}, {}
    for name, opt in optimizers.items():
        sd = opt.state_dict()
        meta[name] = {"param_groups": sd["param_groups"], "state_fields": {}}
        for idx, fields in sd["state"].items():
            meta[name]["state_fields"][str(idx)] = {}
            for field, value in fields.items():
                if torch.is_tensor(value):
                    tensors[f"{name}/{idx}/{field}"] = value.detach().cpu().contiguous()
                    meta[name]["state_fields"][str(idx)][field] = "tensor"
                else:
                    meta[name]["state_fields"][str(idx)][field] = value
    return tensors, meta


def _restore_optim(optimizers: dict, tensors: dict, meta: dict) -> None:
    for name, opt in optimizers.items():
        if name not in meta:
            raise CheckpointError(f"checkpoint has no state for optimizer {name!r}")
        state = {}
        for idx, fields in meta[name]["state_fields"].items():
            state[int(idx)] = {f: (tensors[f"{name}/{idx}/{f}"] if v == "tensor" else v)
                               for f, v in fields.items()}
        opt.load_state_dict({"state": state, "param_groups": meta[name]["param_groups"]})


def rng_state(generator: torch.Generator) -> dict:
    """The torch RNG states that decide a run: global (sampling noise) and the shuffler's."""
    state = {"torch": torch.get_rng_state(), "shuffle": generator.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def save_checkpoint(folder, model, optimizers: dict, generator: torch.Generator,
                    state: dict) -> Path:
    """Write a complete checkpoint to ``folder`` atomically (temp folder, then rename)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  tmp / MODEL_FILE)
        opt_tensors, opt_meta = _optim_tensors(optimizers)
        rng = rng_state(generator)
        for key, value in rng.items():
            opt_tensors[f"rng/{key}"] = value
        save_file(opt_tensors, tmp / OPTIM_FILE)
        doc = dict(state, optimizers=opt_meta, rng=sorted(rng))
        (tmp / STATE_FILE).write_text(json.dumps(doc, indent=1, default=float))
        if folder.exists():
            _replace_dir(folder, tmp)
        else:
            os.replace(tmp, folder)
    except BaseException:
        _rmtree(tmp)
        raise
    return folder


def _replace_dir(folder: Path, tmp: Path) -> None:
    old = folder.with_name(f".{folder.name}.old")
    _rmtree(old)
    os.replace(folder, old)
    os.replace(tmp, folder)
    _rmtree(old)


def _rmtree(path: Path) -> None:
    import shutil
    shutil.rmtree(path, ignore_errors=True)


def is_complete(folder) -> bool:
    folder = Path(folder)
    return all((folder / f).is_file() for f in (MODEL_FILE, OPTIM_FILE, STATE_FILE))


SHAPE_KEYS = ("model", "arch", "latent_dim", "conditional")  # what the weights' shapes follow


def load_checkpoint(folder, model, optimizers: dict, generator: torch.Generator,
                    config: dict | None = None) -> dict:
    """Restore model, optimizers and RNGs from ``folder``; returns the saved ``state`` dict.
    ``config`` (the resuming run's): a checkpoint of another architecture is refused by name,
    e.g. a conditional run resumed without ``--conditional``."""
    folder = Path(folder)
    if not is_complete(folder):
        raise CheckpointError(f"{folder} is not a complete checkpoint (needs {MODEL_FILE}, "
                              f"{OPTIM_FILE}, {STATE_FILE})")
    state = json.loads((folder / STATE_FILE).read_text())
    saved = state.get("config") or {}
    differ = [f"{k}={saved.get(k)!r} there, {config[k]!r} here" for k in SHAPE_KEYS
              if config is not None and k in config and saved.get(k) != config[k]]
    if differ:
        raise CheckpointError(f"{folder} was written by another model ({'; '.join(differ)}); "
                              f"resume with the settings that started the run")
    try:
        model.load_state_dict(load_file(folder / MODEL_FILE))
    except RuntimeError as exc:
        raise CheckpointError(f"{folder}: weights do not fit this model ({exc})") from exc
    tensors = load_file(folder / OPTIM_FILE)
    _restore_optim(optimizers, tensors, state["optimizers"])
    torch.set_rng_state(tensors["rng/torch"])
    generator.set_state(tensors["rng/shuffle"])
    if "rng/cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng/cuda"])
    log.info("resumed from %s (epoch %s)", folder, state.get("epoch"))
    return state


def load_weights(folder, model) -> dict:
    """Load only the model weights (for sampling / scoring); returns ``state.json``."""
    folder = Path(folder)
    model.load_state_dict(load_file(folder / MODEL_FILE))
    path = folder / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def load_generator(folder):
    """(model in eval mode, its TrainConfig, state.json) from a checkpoint folder gensweep
    wrote; CheckpointError naming the folder and what is wrong otherwise."""
    from safetensors import SafetensorError

    from trainables.models import build_model

    folder = Path(folder)
    if not (folder / MODEL_FILE).is_file() or not (folder / STATE_FILE).is_file():
        raise CheckpointError(f"{folder} is not a gensweep checkpoint folder (needs "
                              f"{MODEL_FILE} and {STATE_FILE}, as a trial or train.py writes)")
    try:
        state = json.loads((folder / STATE_FILE).read_text())
        cfg = TrainConfig.from_dict(dict(state["config"]))
    except (OSError, ValueError, KeyError, TypeError, ConfigError) as exc:
        raise CheckpointError(f"{folder / STATE_FILE}: no usable training config ({exc})") from exc
    model = build_model(cfg)
    try:
        load_weights(folder, model)
    except (RuntimeError, SafetensorError, OSError) as exc:
        raise CheckpointError(f"{folder / MODEL_FILE}: cannot be loaded into the {cfg.model} "
                              f"({cfg.arch}) it says it is ({str(exc).splitlines()[0][:200]})"
                              ) from exc
    return model.eval(), cfg, state
