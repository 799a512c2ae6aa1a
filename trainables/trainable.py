"""The training run that both Ray Tune and the CLI drive: ``run_training(cfg, reporter)``.

Training goes in rounds: an epoch each, or, under an image budget (``train_images``), a
fixed number of optimizer steps each. Per round it reports train and test losses per
component, steps and images seen, wall time and images/s, the device, and checkpoints model
+ optimizers + RNGs (safetensors/JSON). A restarted run resumes from the reporter's latest
checkpoint at the step it reached. A NaN/inf loss ends the run with a ``diverged`` report
instead of an exception, so a sweep's other trials carry on. At the end it draws the prior
samples (1K / 5K) and saves them, with a PNG grid, beside the final weights.

``train`` is the Ray Tune function trainable (the sweep wraps it with its scorers).
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from trainables import checkpoint as ckpt
from trainables.config import TrainConfig
from trainables.datasets import load_dataset
from trainables.device import pick_device, ray_assignment
from trainables.loop import (Diverged, batches_per_epoch, cosine_lr, evaluate, make_optimizers,
                             train_steps)
from trainables.models import build_model
from trainables.samples import (SAMPLES_FILE, balanced_labels, draw_samples, load_samples,
                                sample_class_gmm, sample_conditional, save_labelled, save_samples)
from trainables.speed import Speed
from trainables.speed import apply as apply_speed

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a finished (or diverged) run leaves behind."""

    status: str  # "finished" | "diverged"
    metrics: dict
    history: list = field(default_factory=list)
    samples: np.ndarray | None = None
    final_dir: Path | None = None


def _to_tensor(images: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(images).to(device).float().div_(255.0).unsqueeze(1)


def _seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


def _labels(labels: np.ndarray, cfg: TrainConfig, device):
    # Only a conditional model is given the labels: an unconditional one never sees them.
    return torch.from_numpy(labels.astype(np.int64)).to(device) if cfg.conditional else None


def _eval_losses(model, cfg, test_x, speed, test_y=None) -> dict:
    # A fixed, forked RNG: test losses are comparable across rounds and do not shift training.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 1)
        return evaluate(model, cfg.model, test_x, max(cfg.batch_size, 500), speed, test_y)


def round_steps(cfg: TrainConfig, n_train: int) -> list[int]:
    """Optimizer steps of each reporting round. An image budget (``train_images``) trains
    ceil(train_images / batch) steps whatever the data size, in rounds of ``report_images``;
    otherwise one round is one epoch of the training data."""
    per_epoch = batches_per_epoch(n_train, cfg.batch_size)
    if cfg.train_images is None:
        return [per_epoch] * cfg.epochs
    total = -(-cfg.train_images // cfg.batch_size)
    every = max(1, -(-(cfg.report_images or cfg.train_images) // cfg.batch_size))
    return [min(every, total - done) for done in range(0, total, every)]


@dataclass(frozen=True)
class Probe:
    """A cheap look at sample quality after every round: ``score(samples, labelled)`` of
    ``n`` samples, and with ``labelled`` also n labelled ones (for a utility probe), so a
    sweep's scheduler can stop trials whose samples are poor on what it optimises."""

    n: int
    score: Callable[..., dict]
    labelled: bool = False


def run_training(cfg: TrainConfig, reporter, scorer: Callable | None = None,
                 probe: Probe | None = None) -> TrainResult:
    """Train ``cfg`` to the end (resuming if the reporter holds a checkpoint).

    ``scorer(samples, labelled) -> metrics`` judges the final samples (``cfg.sampler``), and
    the labelled samples ``(images, labels)`` when ``cfg.labelled_samples`` asks for them
    (else None)."""
    device = pick_device(cfg.device)
    speed = Speed.for_device(device, compile=cfg.compile)
    generator = _seed_everything(cfg.seed)
    data = load_dataset(cfg.dataset, cfg.data_dir, subset=cfg.subset, seed=cfg.seed,
                        test_subset=cfg.test_subset)
    train_x = _to_tensor(data.train.images, device)
    test_x = _to_tensor(data.test.images, device)
    train_y, test_y = (_labels(data.train.labels, cfg, device),
                       _labels(data.test.labels, cfg, device))
    model = apply_speed(build_model(cfg), speed, device)
    optimizers = make_optimizers(model, cfg.model, cfg.lr)
    rounds = round_steps(cfg, len(train_x))
    lr_at = cosine_lr(cfg.lr, sum(rounds)) if cfg.lr_schedule == "cosine" else None
    assigned = ray_assignment()
    where = {"device": device.type, "gpus_assigned": assigned.gpus,
             "gpu_ids": ",".join(assigned.gpu_ids), "node_id": assigned.node_id,
             "speed": speed.describe()}

    start_round, step, images, history, wall = 1, 0, 0, [], 0.0
    with reporter.latest_checkpoint() as folder:
        if folder is not None:
            state = ckpt.load_checkpoint(folder, model, optimizers, generator, cfg.to_dict())
            history, wall = state.get("history", []), state.get("wall_time_s", 0.0)
            if state.get("stage") == "final":
                # The run had finished; re-report its result rather than training again.
                samples = load_samples(Path(folder) / SAMPLES_FILE)
                reporter.report(state["final_metrics"], None)
                return TrainResult("finished", state["final_metrics"], history, samples)
            done = state["round"]
            start_round, step, images = done + 1, state["step"], state["images_seen"]
            log.info("resuming %s at round %d of %d", cfg.model, start_round, len(rounds))

    for round_ in range(start_round, len(rounds) + 1):
        t0 = time.perf_counter()
        try:
            train_losses, taken = train_steps(model, cfg.model, optimizers, train_x,
                                              cfg.batch_size, cfg.seed, step,
                                              rounds[round_ - 1], speed, lr_at=lr_at,
                                              labels=train_y)
        except Diverged as exc:
            log.error("%s", exc)
            metrics = {"round": round_, "epoch": exc.epoch, "diverged": 1,
                       "status": "diverged", "error": str(exc),
                       **{f"train_{k}": v for k, v in exc.losses.items()}}
            reporter.report(metrics, None)
            return TrainResult("diverged", metrics, history)
        step += rounds[round_ - 1]
        images += taken
        train_time = time.perf_counter() - t0
        test_losses = _eval_losses(model, cfg, test_x, speed, test_y)
        wall += time.perf_counter() - t0
        metrics = {"round": round_, "step": step, "images_seen": images,
                   "epoch": round(images / len(train_x), 3), "diverged": 0, "status": "training",
                   **{f"train_{k}": v for k, v in train_losses.items()},
                   **{f"test_{k}": v for k, v in test_losses.items()},
                   "round_time_s": time.perf_counter() - t0, "train_time_s": train_time,
                   "images_per_s": taken / train_time,
                   "wall_time_s": wall, **where}
        if probe is not None:
            # its own seeded generator: the probe never shifts the training RNG
            probe_set = draw_samples(model, cfg.sampler, probe.n, cfg.seed + 3, data.train.images)
            labelled = (draw_labelled(model, cfg, data, probe.n, cfg.seed + 5)
                        if probe.labelled else None)
            metrics.update(probe.score(probe_set, labelled))
        history.append({k: v for k, v in metrics.items() if k != "status"})
        with reporter.checkpoint_dir() as folder:
            ckpt.save_checkpoint(folder, model, optimizers, generator,
                                 {"round": round_, "step": step, "images_seen": images,
                                  "epoch": round_,
                                  "stage": "round", "history": history, "wall_time_s": wall,
                                  "config": cfg.to_dict()})
            reporter.report(metrics, folder)

    return _finish(cfg, model, optimizers, generator, reporter, history, wall, scorer, data)


def draw_labelled(model, cfg: TrainConfig, data, n: int, seed: int):
    """``n`` generated labelled samples, balanced over the classes: a conditional model is
    asked for each class; any other draws from each class's mixture over its encoder codes."""
    classes = balanced_labels(n, seed)
    if cfg.conditional:
        return sample_conditional(model, classes, seed=seed)
    return sample_class_gmm(model, data.train.images, data.train.labels, classes, seed=seed)


def _finish(cfg, model, optimizers, generator, reporter, history, wall, scorer,
            data) -> TrainResult:
    n = max(cfg.n_samples) if cfg.n_samples else 0
    t0 = time.perf_counter()
    samples = draw_samples(model, cfg.sampler, n, cfg.seed + 2, data.train.images)
    labelled = (draw_labelled(model, cfg, data, cfg.labelled_samples, cfg.seed + 4)
                if cfg.labelled_samples else None)
    final = dict(history[-1]) if history else {}
    final.update(status="finished", sample_time_s=time.perf_counter() - t0, n_samples=n)
    files = {}
    if scorer is not None and n:
        final.update(scorer(samples, labelled))
        files = final.pop("_artifacts", {})  # pictures the scorer made, kept with the samples
    with reporter.checkpoint_dir() as folder:
        ckpt.save_checkpoint(folder, model, optimizers, generator,
                             {"round": len(history), "epoch": cfg.epochs, "stage": "final",
                              "history": history, "wall_time_s": wall,
                              "config": cfg.to_dict(), "final_metrics": final})
        save_samples(samples, folder)
        if labelled is not None:
            save_labelled(*labelled, folder)
        for name, blob in files.items():
            (Path(folder) / name).write_bytes(blob)
        reporter.report(final, folder)
        final_dir = reporter.persisted(folder)
    log.info("finished: %s", {k: v for k, v in final.items() if not isinstance(v, str)})
    return TrainResult("finished", final, history, samples, final_dir)


class LocalReporter:
    """Reporter for the CLI: checkpoints under ``out/checkpoints``, metrics in ``metrics.jsonl``."""

    def __init__(self, out_dir, resume: bool = False, keep: int = 2):
        self.out = Path(out_dir)
        self.ckpt_root = self.out / "checkpoints"
        self.keep, self.resume, self._n = keep, resume, 0
        existing = self._checkpoints()
        if existing and not resume:
            raise FileExistsError(
                f"{self.out} already holds checkpoints ({existing[-1].name}); pass --resume to "
                f"continue that run, or choose another --out (nothing was overwritten)")
        self.out.mkdir(parents=True, exist_ok=True)
        self._n = int(existing[-1].name.split("_")[1]) if existing else 0

    def _checkpoints(self) -> list[Path]:
        if not self.ckpt_root.is_dir():
            return []
        return sorted(p for p in self.ckpt_root.glob("ckpt_*") if ckpt.is_complete(p))

    @contextmanager
    def latest_checkpoint(self):
        found = self._checkpoints()
        yield found[-1] if (self.resume and found) else None

    @contextmanager
    def checkpoint_dir(self):
        self._n += 1
        yield self.ckpt_root / f"ckpt_{self._n:05d}"

    def report(self, metrics: dict, folder) -> None:
        with open(self.out / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(metrics, default=float) + "\n")
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in metrics.items()
                 if k.startswith(("epoch", "train_loss", "test_loss", "images", "status", "is_",
                                  "ts_"))}
        log.info("%s", shown)
        if folder is not None:
            for old in self._checkpoints()[: -self.keep]:
                shutil.rmtree(old, ignore_errors=True)

    def persisted(self, folder) -> Path:
        return Path(folder)


class TuneReporter:
    """Reporter inside a Ray Tune trial: ``tune.report`` with a checkpoint every epoch, and
    resume from ``tune.get_checkpoint()`` when Tune restarts the trial."""

    @contextmanager
    def latest_checkpoint(self):
        from ray import tune

        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as folder:
            yield Path(folder)

    @contextmanager
    def checkpoint_dir(self):
        # Tune copies the folder into the trial's storage during report(); ours is scratch.
        tmp = Path(tempfile.mkdtemp(prefix="gensweep-ckpt-"))
        try:
            yield tmp / "checkpoint"
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def report(self, metrics: dict, folder) -> None:
        from ray import tune

        checkpoint = tune.Checkpoint.from_directory(str(folder)) if folder is not None else None
        tune.report({k: v for k, v in metrics.items() if _reportable(v)}, checkpoint=checkpoint)

    def persisted(self, folder):
        return None


def _reportable(value) -> bool:
    # Tune results must be plain scalars; arrays and dicts stay in the checkpoint.
    return isinstance(value, (int, float, str, bool))


def train(config: dict, scorer: Callable | None = None,
          probe: Probe | None = None) -> TrainResult:
    """Ray Tune function trainable for either model (``config["model"]``); ``config`` holds
    :class:`TrainConfig` fields only."""
    return run_training(TrainConfig.from_dict(config), TuneReporter(), scorer, probe)
