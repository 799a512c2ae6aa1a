"""The training run that both Ray Tune and the CLI drive: ``run_training(cfg, reporter)``.

Per epoch it reports train and test losses per component, wall time and images/s, and
checkpoints model + optimizers + RNGs (safetensors/JSON). A restarted run resumes from the
reporter's latest checkpoint instead of epoch 0. A NaN/inf loss ends the run with a
``diverged`` report instead of an exception, so a sweep's other trials carry on. At the end it
draws the prior samples (1K / 5K) and saves them, with a PNG grid, beside the final weights.

``train_vae`` / ``train_vaegan`` are the Ray Tune function trainables.
"""
from __future__ import annotations

import json
import logging
import math
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
from trainables.loop import Diverged, evaluate, make_optimizers, train_epoch
from trainables.samples import GRID_FILE, SAMPLES_FILE, load_samples, sample_prior, save_samples

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a finished (or diverged) run leaves behind."""

    status: str  # "finished" | "diverged"
    metrics: dict
    history: list = field(default_factory=list)
    samples: np.ndarray | None = None
    final_dir: Path | None = None


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _to_tensor(images: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(images).to(device).float().div_(255.0).unsqueeze(1)


def _seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    return torch.Generator().manual_seed(seed)


def _eval_losses(model, cfg, test_x) -> dict:
    # A fixed, forked RNG: test losses are comparable across epochs and do not shift training.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed + 1)
        return evaluate(model, cfg.model, test_x, max(cfg.batch_size, 500))


def _apply_test_hooks(cfg: TrainConfig, model, epoch: int) -> None:
    """Fault injection for tests: ``extra={"inject_nan_at_epoch": k}`` poisons a weight."""
    if cfg.extra.get("inject_nan_at_epoch") == epoch:
        with torch.no_grad():
            next(model.decoder.parameters()).fill_(float("nan"))


def run_training(cfg: TrainConfig, reporter, scorer: Callable[[np.ndarray], dict] | None = None,
                 ) -> TrainResult:
    """Train ``cfg`` to the end (resuming if the reporter holds a checkpoint)."""
    from trainables.datasets import load_dataset
    from trainables.networks import build_model

    device = resolve_device(cfg.device)
    generator = _seed_everything(cfg.seed)
    data = load_dataset(cfg.dataset, cfg.data_dir, subset=cfg.subset, seed=cfg.seed,
                        test_subset=cfg.test_subset)
    train_x = _to_tensor(data.train.images, device)
    test_x = _to_tensor(data.test.images, device)
    model = build_model(cfg).to(device)
    optimizers = make_optimizers(model, cfg.model, cfg.lr)

    start_epoch, history, wall = 1, [], 0.0
    with reporter.latest_checkpoint() as folder:
        if folder is not None:
            state = ckpt.load_checkpoint(folder, model, optimizers, generator)
            history, wall = state.get("history", []), state.get("wall_time_s", 0.0)
            if state.get("stage") == "final":
                # The run had finished; re-report its result rather than training again.
                samples = load_samples(Path(folder) / SAMPLES_FILE)
                reporter.report(state["final_metrics"], None)
                return TrainResult("finished", state["final_metrics"], history, samples)
            start_epoch = state["epoch"] + 1
            log.info("resuming %s at epoch %d of %d", cfg.model, start_epoch, cfg.epochs)

    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        _apply_test_hooks(cfg, model, epoch)
        try:
            train_losses = train_epoch(model, cfg.model, optimizers, train_x, cfg.batch_size,
                                       generator, epoch)
        except Diverged as exc:
            log.error("%s", exc)
            metrics = {"epoch": epoch, "diverged": 1, "status": "diverged", "error": str(exc),
                       **{f"train_{k}": v for k, v in exc.losses.items()}}
            reporter.report(metrics, None)
            return TrainResult("diverged", metrics, history)
        train_time = time.perf_counter() - t0
        test_losses = _eval_losses(model, cfg, test_x)
        wall += time.perf_counter() - t0
        metrics = {"epoch": epoch, "diverged": 0, "status": "training",
                   **{f"train_{k}": v for k, v in train_losses.items()},
                   **{f"test_{k}": v for k, v in test_losses.items()},
                   "epoch_time_s": time.perf_counter() - t0, "train_time_s": train_time,
                   "images_per_s": len(train_x) / train_time, "wall_time_s": wall}
        history.append({k: v for k, v in metrics.items() if k != "status"})
        with reporter.checkpoint_dir() as folder:
            ckpt.save_checkpoint(folder, model, optimizers, generator,
                                 {"epoch": epoch, "stage": "epoch", "history": history,
                                  "wall_time_s": wall, "config": cfg.to_dict()})
            reporter.report(metrics, folder)

    return _finish(cfg, model, optimizers, generator, reporter, history, wall, scorer)


def _finish(cfg, model, optimizers, generator, reporter, history, wall, scorer) -> TrainResult:
    n = max(cfg.n_samples) if cfg.n_samples else 0
    t0 = time.perf_counter()
    samples = sample_prior(model, n, seed=cfg.seed + 2)
    final = dict(history[-1]) if history else {}
    final.update(status="finished", sample_time_s=time.perf_counter() - t0, n_samples=n)
    if scorer is not None and n:
        final.update(scorer(samples))
    with reporter.checkpoint_dir() as folder:
        ckpt.save_checkpoint(folder, model, optimizers, generator,
                             {"epoch": cfg.epochs, "stage": "final", "history": history,
                              "wall_time_s": wall, "config": cfg.to_dict(),
                              "final_metrics": final})
        paths = save_samples(samples, folder)
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


def train(config: dict, scorer: Callable[[np.ndarray], dict] | None = None) -> TrainResult:
    """Ray Tune function trainable for either model (``config["model"]``)."""
    return run_training(TrainConfig.from_dict(config), TuneReporter(), scorer)


def train_vae(config: dict) -> None:
    """Ray Tune trainable: ``tune.Tuner(train_vae, param_space={...})``."""
    train({**config, "model": "vae"})


def train_vaegan(config: dict) -> None:
    """Ray Tune trainable: ``tune.Tuner(train_vaegan, param_space={...})``."""
    train({**config, "model": "vaegan"})
