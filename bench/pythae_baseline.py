"""pythae's own ``TrainingPipeline`` as the baseline for ``bench/training_throughput.py``.

Builds the trainer config that matches a :class:`trainables.config.TrainConfig` (Adam, one
learning rate for encoder / decoder / discriminator, batch size, epochs; checkpoints and
predictions off), times its train loop with a callback driving a :class:`StepClock`, and
measures what its ``DataLoader`` costs per batch next to our tensor slicing.
"""
from __future__ import annotations

import tempfile
import time

import torch
from step_clock import StepClock, now  # noqa: E402


def _pythae_timer(clock: StepClock):
    """A pythae callback driving ``clock``: train_step begin to the epoch's last step end."""
    from pythae.trainers.training_callbacks import TrainingCallback

    class LoopTimer(TrainingCallback):
        def __init__(self):
            self.last, self.logs = None, {}

        def on_train_step_begin(self, training_config, **kwargs):
            clock.epoch_begin()

        def on_train_step_end(self, training_config, **kwargs):
            self.last = now()

        def on_epoch_end(self, training_config, **kwargs):
            # Runs after the keep-best deepcopy, so the loop end is the last step's end.
            clock.epoch_end(self.last)

        def on_log(self, training_config, logs, **kwargs):
            self.logs = dict(logs)

    return LoopTimer()


def pythae_config(cfg, out_dir: str, seed: int):
    """pythae's trainer config for ``cfg``: same optimiser, lr, batch, epochs; saving off."""
    from pythae.trainers import BaseTrainerConfig, CoupledOptimizerAdversarialTrainerConfig

    common = dict(output_dir=out_dir, per_device_train_batch_size=cfg.batch_size,
                  per_device_eval_batch_size=cfg.batch_size, num_epochs=cfg.epochs,
                  steps_saving=None, steps_predict=None, seed=seed,
                  no_cuda=not torch.cuda.is_available())
    if cfg.model == "vae":
        return BaseTrainerConfig(optimizer_cls="Adam", learning_rate=cfg.lr, **common)
    return CoupledOptimizerAdversarialTrainerConfig(
        encoder_optimizer_cls="Adam", decoder_optimizer_cls="Adam",
        discriminator_optimizer_cls="Adam", encoder_learning_rate=cfg.lr,
        decoder_learning_rate=cfg.lr, discriminator_learning_rate=cfg.lr, **common)


def run_pythae(model, cfg, data: torch.Tensor, seed: int) -> dict:
    """Train ``model`` for ``cfg`` (a TrainConfig) with pythae's ``TrainingPipeline``; its
    output folder is a temp dir, removed afterwards."""
    from pythae.pipelines import TrainingPipeline

    clock = StepClock(model, len(data), cfg.batch_size)
    timer = _pythae_timer(clock)
    with tempfile.TemporaryDirectory(prefix="bench-pythae-") as out_dir:
        pipeline = TrainingPipeline(model=model, training_config=pythae_config(cfg, out_dir, seed))
        t0 = time.perf_counter()
        pipeline(train_data=data, callbacks=[timer])
        e2e = time.perf_counter() - t0
    logs = timer.logs
    return {**clock.totals, "e2e_s": e2e, "loss": logs["train_epoch_loss"], "losses": logs}


def batch_assembly_ms(data: torch.Tensor, batch_size: int, rounds: int = 5) -> dict:
    """Per-batch cost of getting a batch, model excluded: our slice of a shuffled index vs
    pythae's DataLoader over its dict dataset (per-item ``__getitem__`` + collate). Best of
    ``rounds`` epochs, so contention inflates it least."""
    from pythae.data.datasets import collate_dataset_output
    from pythae.data.preprocessors import DataProcessor
    from torch.utils.data import DataLoader

    loader = DataLoader(DataProcessor.to_dataset(data), batch_size=batch_size, shuffle=True,
                        collate_fn=collate_dataset_output)
    n_batches, best = len(loader), {"ours": float("inf"), "pythae": float("inf")}
    for _ in range(rounds):
        t0 = time.perf_counter()
        order = torch.randperm(len(data))
        for start in range(0, len(data), batch_size):
            data[order[start:start + batch_size]]
        t1 = time.perf_counter()
        for _batch in loader:
            pass
        t2 = time.perf_counter()
        best = {"ours": min(best["ours"], t1 - t0), "pythae": min(best["pythae"], t2 - t1)}
    return {k: 1e3 * v / n_batches for k, v in best.items()}
