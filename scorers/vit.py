"""The ViT scorer (HuggingFace transformers, torch): build, fine-tune, predict, save, load.

``init="scratch"`` builds a small ViT for 28x28 grayscale digits (``SCRATCH_CONFIG``):
7x7 patches (a 4x4 grid, 16 tokens + CLS), hidden size 128, 4 layers of 4 heads, MLP 256,
no dropout; 540k parameters. Why this size: measured on the shared 2-core dev CPU
(4 epochs on 10,000 MNIST images, batch 128, lr 2e-3), it trains at 500-1,200 images/s and
reached 87.6% on 2,000 test images; a full 60,000-image epoch plus the 10,000-image test
pass took 2-3.5 minutes with other jobs on the same cores. With an MLP of 512 it was
slower (~470 images/s) and worse (82.9%); with 4x4 patches (49 tokens, MLP 512) it ran at
~140 images/s and reached 78.2%. The table is in docs/scorers.md.

Any other init is a pretrained ViT (a HuggingFace id or a local directory, safetensors
only): images are resized to the model's input size and repeated to its channel count,
and the classification head is replaced with a fresh 10-class one.

Preprocessing is the same for both: x in [0, 1] -> (x - 0.5) / 0.5, the normalisation of
Google's ViT checkpoints. Training: AdamW (weight decay 0.05), linear warm-up over the
first 5% of steps then cosine decay, gradient clipping at 1.0, the usual recipe for
ViTs. Penultimate features are the final CLS hidden state after the last layer norm.

torch and transformers are imported inside the functions, so importing this module is cheap.
"""
from __future__ import annotations

import inspect
import logging
import math
import os
import re
from pathlib import Path

import numpy as np

from scorers.spec import N_CLASSES, init_error
from trainables.device import pick_device
from trainables.speed import Speed

log = logging.getLogger(__name__)

SCRATCH_CONFIG = {"image_size": 28, "patch_size": 7, "num_channels": 1, "hidden_size": 128,
                  "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 256,
                  "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}
WEIGHT_DECAY = 0.05
WARMUP_FRACTION = 0.05
GRAD_CLIP = 1.0
PREDICT_BATCH = 256
MODEL_DIR = "model"
PREPROCESSING = {"input": "28x28 grayscale in [0, 1]",
                 "resize": "bilinear to the model's image_size (none for scratch: 28)",
                 "channels": "repeated to the model's num_channels (1 for scratch)",
                 "normalise": "(x - 0.5) / 0.5"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def _offline() -> bool:
    # Read at call time: huggingface_hub reads HF_HUB_OFFLINE only once, at import.
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def check_init(init: str) -> None:
    """Fail fast, before torch is imported, on inits that cannot work."""
    if init == "scratch":
        return
    if init == "imagenet":
        raise init_error("vit", init, "'imagenet' names the Keras weights of the inception scorer")
    path = Path(init)
    if path.is_absolute() or path.exists():
        if not path.is_dir():
            raise init_error("vit", init, "no such directory")
        missing = [f for f in ("config.json", "model.safetensors") if not (path / f).is_file()
                   and not (f == "model.safetensors" and (path / "model.safetensors.index.json").is_file())]
        if missing:
            extra = " (pickled pytorch_model.bin weights are refused)" if (
                path / "pytorch_model.bin").exists() else ""
            raise init_error("vit", init, f"the directory has no {' or '.join(missing)}{extra}")
        return
    if not _HUB_ID.match(init):
        raise init_error("vit", init, "it is neither 'scratch', an existing directory nor a "
                         "HuggingFace model id like owner/name")


# libgomp's spin before an idle OpenMP thread sleeps (GOMP_SPINCOUNT, in rounds).
SPIN_COUNT = 10_000


def _torch():
    # Between torch's many small parallel regions, idle OpenMP threads either spin or sleep.
    # Sleeping at once (OMP_WAIT_POLICY=PASSIVE) nearly halves ViT training on a quiet CPU,
    # where the scorers are fine-tuned; libgomp's default spin (300,000 rounds) wastes the
    # cores when other busy processes share them. A short spin keeps most of the quiet speed
    # and costs nothing beside single-threaded work such as the trials
    # (``bench/omp_wait.py`` prints the ratios). Effective only if torch is not imported yet,
    # and never overrides the user's own setting.
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", str(SPIN_COUNT))
    import torch

    return torch


def device():
    """The device Ray assigned (a logical GPU falls back to the CPU with one log line)."""
    _torch()

    return pick_device("auto")


def build(init: str = "scratch", seed: int = 0):
    """A ViTForImageClassification with 10 outputs, from scratch or from pretrained weights."""
    check_init(init)
    torch = _torch()
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(seed)
    if init == "scratch":
        return ViTForImageClassification(ViTConfig(num_labels=N_CLASSES, **SCRATCH_CONFIG))
    local = Path(init).is_dir()
    try:
        config = ViTConfig.from_pretrained(init, local_files_only=local or _offline())
        if getattr(config, "model_type", None) != "vit":
            raise ValueError(f"model_type is {config.model_type!r}, not 'vit'")
        model = ViTForImageClassification.from_pretrained(
            init, num_labels=N_CLASSES, ignore_mismatched_sizes=True, use_safetensors=True,
            local_files_only=local or _offline())
    except Exception as exc:  # OSError offline, EnvironmentError without safetensors, ...
        hint = " (HF_HUB_OFFLINE is set and the model is not in the HF cache)" if _offline() else ""
        raise init_error("vit", init, f"loading it failed{hint}: {type(exc).__name__}: "
                         f"{str(exc).strip().splitlines()[0][:300]}") from exc
    model.config.id2label = {i: str(i) for i in range(N_CLASSES)}
    model.config.label2id = {str(i): i for i in range(N_CLASSES)}
    return model


def _prepare(model, x: np.ndarray, dev):
    """(N, 28, 28) float [0, 1] numpy -> normalised (N, C, S, S) tensor on ``dev``."""
    torch = _torch()
    t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[:, None].to(dev)
    size = model.config.image_size
    if size != t.shape[-1]:
        t = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear",
                                            align_corners=False)
    if model.config.num_channels != 1:
        t = t.repeat(1, model.config.num_channels, 1, 1)
    return (t - 0.5) / 0.5


def _forward(model, pixels):
    """Logits and CLS features from one pass (the classifier reads the same CLS state)."""
    hidden = model.vit(pixel_values=pixels).last_hidden_state[:, 0, :]
    return model.classifier(hidden), hidden


def fit(model, images: np.ndarray, labels: np.ndarray, *, epochs: int, batch_size: int,
        lr: float, seed: int, epoch_end, progress: bool = True,
        schedule: str = "warmup-cosine", augment=None, batch_end=None) -> None:
    """Train on (N, 28, 28) float [0, 1] ``images``; ``epoch_end(epoch, logs)`` evaluates;
    ``augment(images, epoch)`` gives each epoch's training images (default: themselves);
    ``batch_end()`` runs after every batch (``scorers.speed_probe`` times them)."""
    torch = _torch()
    from tqdm.auto import tqdm

    dev = device()
    model.to(dev)
    gen = torch.Generator().manual_seed(seed)
    y_all = torch.from_numpy(labels.astype(np.int64))
    steps_per_epoch = -(-len(images) // batch_size)
    total = max(1, epochs * steps_per_epoch)
    warmup = max(1, int(WARMUP_FRACTION * total))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=WEIGHT_DECAY)

    def factor(step: int) -> float:
        if schedule == "constant":
            return 1.0
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    loss_fn = torch.nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        epoch_images = images if augment is None else augment(images, epoch)
        order = torch.randperm(len(images), generator=gen).numpy()
        seen = correct = 0
        loss_sum = 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"vit epoch {epoch + 1}/{epochs}", unit="batch",
                   disable=not progress, leave=False)
        for step in bar:
            idx = np.sort(order[step * batch_size:(step + 1) * batch_size])
            pixels = _prepare(model, epoch_images[idx], dev)
            y = y_all[idx].to(dev)
            logits, _ = _forward(model, pixels)
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            opt.step()
            sched.step()
            seen += len(idx)
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y).sum())
            if batch_end is not None:
                batch_end()
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        bar.close()
        model.eval()
        epoch_end(epoch, {"train_loss": loss_sum / seen, "train_accuracy": correct / seen})


def predict(model, x: np.ndarray, batch_size: int = PREDICT_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N, 10) float64 and CLS features (N, hidden) float32, in bounded batches.

    On a GPU with bf16 the transformer body runs under bf16 autocast (``trainables.speed``);
    the classification head and the softmax stay in float32. On the CPU everything is float32.
    """
    torch = _torch()

    dev = next(model.parameters()).device
    bf16 = Speed.for_device(dev).bf16
    model.eval()
    probs = np.empty((len(x), N_CLASSES), np.float64)
    feats = np.empty((len(x), model.config.hidden_size), np.float32)
    with torch.inference_mode():
        for start in range(0, len(x), batch_size):
            pixels = _prepare(model, x[start:start + batch_size], dev)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                hidden = model.vit(pixel_values=pixels).last_hidden_state[:, 0, :]
            hidden = hidden.float()
            logits = model.classifier(hidden)
            end = start + len(logits)
            probs[start:end] = torch.softmax(logits.double(), dim=1).cpu().numpy()
            feats[start:end] = hidden.cpu().numpy()
    return probs, feats


def save(model, folder: Path) -> list[str]:
    target = Path(folder) / MODEL_DIR
    kwargs = {}
    if "safe_serialization" in inspect.signature(model.save_pretrained).parameters:
        kwargs["safe_serialization"] = True  # transformers 4.x; 5.x writes safetensors only
    model.save_pretrained(str(target), **kwargs)
    if not (target / "model.safetensors").is_file():
        raise RuntimeError(f"save_pretrained wrote no model.safetensors into {target}")
    return sorted(f"{MODEL_DIR}/{p.name}" for p in target.iterdir() if p.is_file())


def load(folder: Path):
    """The saved model from safetensors (never a pickle), on GPU if there is one."""
    from transformers import ViTForImageClassification

    target = Path(folder) / MODEL_DIR
    if not (target / "model.safetensors").is_file():
        raise ValueError(f"{folder}: missing {MODEL_DIR}/model.safetensors; not a vit scorer folder")
    from safetensors import SafetensorError

    try:
        model = ViTForImageClassification.from_pretrained(str(target), use_safetensors=True,
                                                          local_files_only=True)
    except (OSError, ValueError, SafetensorError) as exc:  # not safetensors, truncated, ...
        raise ValueError(f"{folder}: {MODEL_DIR}/ cannot be loaded as this scorer's model "
                         f"({type(exc).__name__}: {exc}); the folder is damaged or was not "
                         "written by gensweep: delete it to fine-tune again") from exc
    return model.to(device()).eval()


def architecture(model) -> dict:
    keys = ("image_size", "patch_size", "num_channels", "hidden_size", "num_hidden_layers",
            "num_attention_heads", "intermediate_size", "hidden_dropout_prob",
            "attention_probs_dropout_prob")
    arch = {k: getattr(model.config, k) for k in keys}
    arch["parameters"] = int(sum(p.numel() for p in model.parameters()))
    arch["features"] = f"final CLS hidden state after layernorm ({model.config.hidden_size})"
    return arch


def versions() -> dict:
    import safetensors
    import transformers

    return {"torch": _torch().__version__, "transformers": transformers.__version__,
            "safetensors": safetensors.__version__}
