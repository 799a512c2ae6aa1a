"""Training throughput: our tensor-resident loop against pythae's own ``TrainingPipeline``.

    GENSWEEP_DATA_DIR=/work/shared/data python bench/training_throughput.py \\
        [--model vae,vaegan] [--arch paper] [--subset 512] [--repeats 3] [--json out.json]

Both sides train the same pythae model class from the same initial weights (same seed; the
digest is checked) on the same stratified MNIST subset (float in [0, 1], (N, 1, 28, 28)),
with Adam, the same learning rate (encoder, decoder and discriminator alike for the VAE-GAN),
batch size and epochs, no eval set. They run in ONE process, interleaved (ours, pythae;
then pythae, ours; ...), because the machine is shared and its speed drifts; the ratio of
adjacent runs is what this benchmark is for.

RNG matching: pythae's ``DataLoader`` draws two int64 from the global torch RNG per epoch
(the iterator's base seed, then the ``RandomSampler``'s seed). The harness makes the same
two draws and hands ``train_steps`` the permutation of a generator seeded with the second, so both sides see the
same batches and the same reparametrisation noise: the final losses must then agree to float
precision, which shows the two loops do the same computation.

pythae, with checkpoints (``steps_saving``) and predictions (``steps_predict``) off, still:
copies the data through its ``DataProcessor``, runs one sanity-check forward, ``deepcopy``s
the model after every epoch whose train loss improves (no eval set => keep best on train),
and saves the final model (weights, configs, cloudpickled nets) under ``output_dir`` (a temp
dir here). Those costs are in its end-to-end time, not in its loop time. Its tqdm bar is off
(TQDM_DISABLE) and its INFO logging silenced: console output only.

The loop time of each side runs from the epoch's start to its last optimiser step; "steady"
also leaves out each epoch's first step. ``--threads 1`` makes timings far less erratic when
other work oversubscribes the cores (torch's OpenMP threads then stall at every barrier).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # pythae's progress bar: console noise only

import torch  # noqa: E402
from pythae_baseline import batch_assembly_ms, run_pythae  # noqa: E402
from step_clock import StepClock  # noqa: E402

from trainables.config import ARCHS, MODELS, TrainConfig  # noqa: E402
from trainables.loop import batches_per_epoch, make_optimizers, train_steps  # noqa: E402
from trainables.models import build_model  # noqa: E402

log = logging.getLogger("bench.training_throughput")


def load_images(subset: int | None, seed: int) -> torch.Tensor:
    """The stratified MNIST training subset as float [0, 1], shape (N, 1, 28, 28)."""
    from trainables.datasets import load_dataset

    data = load_dataset("mnist", subset=subset, seed=seed)
    return torch.from_numpy(data.train.images).float().div_(255.0).unsqueeze(1)


def fresh_model(cfg: TrainConfig, seed: int):
    torch.manual_seed(seed)
    return build_model(cfg)


def weights_digest(model) -> str:
    h = hashlib.sha1()
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def _dataloader_epoch_generator() -> torch.Generator:
    # What DataLoader + RandomSampler draw from the global RNG when an epoch's iterator starts.
    torch.empty((), dtype=torch.int64).random_()  # _BaseDataLoaderIter._base_seed
    seed = int(torch.empty((), dtype=torch.int64).random_().item())  # RandomSampler
    return torch.Generator().manual_seed(seed)


def run_ours(model, cfg: TrainConfig, data: torch.Tensor, seed: int) -> dict:
    """Our loop (trainables/loop.py), as ``run_training`` drives it, minus eval/checkpoints."""
    clock = StepClock(model, len(data), cfg.batch_size)
    t0 = time.perf_counter()
    optimizers = make_optimizers(model, cfg.model, cfg.lr)
    torch.manual_seed(seed)  # where pythae's prepare_training calls set_seed(seed)
    losses = {}
    for epoch in range(1, cfg.epochs + 1):
        generator = _dataloader_epoch_generator()
        clock.epoch_begin()
        per_epoch = batches_per_epoch(len(data), cfg.batch_size)
        losses, _ = train_steps(model, cfg.model, optimizers, data, cfg.batch_size, seed,
                                (epoch - 1) * per_epoch, per_epoch,
                                order=lambda e: torch.randperm(len(data), generator=generator))
        clock.epoch_end()
    return {**clock.totals, "e2e_s": time.perf_counter() - t0, "loss": losses["loss"],
            "losses": losses}


def warm_up(cfg: TrainConfig, data: torch.Tensor) -> None:
    """Untimed steps at every batch shape an epoch uses (full batch, and the remainder), so
    one-off kernel set-up (oneDNN primitives are built per shape) is not charged to whichever
    side runs first."""
    model = fresh_model(cfg, 12345)
    rest = len(data) % cfg.batch_size
    n = min(len(data), cfg.batch_size + rest)
    train_steps(model, cfg.model, make_optimizers(model, cfg.model, cfg.lr), data[:n],
                cfg.batch_size, 0, 0, batches_per_epoch(n, cfg.batch_size))


def bench_model(kind: str, args, data: torch.Tensor) -> dict:
    """Interleaved repeats for one model; repeat r uses seed + r on both sides."""
    cfg = TrainConfig(model=kind, arch=args.arch, epochs=args.epochs, batch_size=args.batch_size,
                      **({"lr": args.lr} if args.lr else {}))
    if args.warmup:
        warm_up(cfg, data)
    runs = []
    for r in range(args.repeats):
        seed = args.seed + r
        order = ("ours", "pythae") if r % 2 == 0 else ("pythae", "ours")
        for side in order:
            fn = run_ours if side == "ours" else run_pythae
            model = fresh_model(cfg, seed)
            digest, load = weights_digest(model), os.getloadavg()[0]
            res = fn(model, cfg, data, seed)
            res.update(model=kind, side=side, repeat=r, seed=seed, load_before=load,
                       init_digest=digest,
                       load_after=os.getloadavg()[0],
                       images_per_s=len(data) * cfg.epochs / res["loop_s"],
                       images_per_cpu_s=len(data) * cfg.epochs / res["loop_cpu_s"],
                       steady_images_per_s=(len(data) - cfg.batch_size) * cfg.epochs
                       / res["steady_s"] if res["steady_s"] else float("nan"))
            log.info("%s %-6s repeat %d: %.1f img/s (loop %.1f s, e2e %.1f s), loss %.6f",
                     kind, side, r, res["images_per_s"], res["loop_s"], res["e2e_s"], res["loss"])
            runs.append(res)
    return {"config": {"model": kind, "arch": cfg.arch, "lr": cfg.lr, "epochs": cfg.epochs,
                       "batch_size": cfg.batch_size, "latent_dim": cfg.latent_dim,
                       "adversarial_loss_scale": cfg.adversarial_loss_scale,
                       "reconstruction_layer": cfg.reconstruction_layer},
            "runs": runs, "summary": summarize(runs)}


def summarize(runs: list) -> dict:
    side = lambda s, key: [r[key] for r in runs if r["side"] == s]
    ours, pyt = side("ours", "images_per_s"), side("pythae", "images_per_s")
    paired = [o / p for o, p in zip(ours, pyt)]
    pair = lambda key: [o / p for o, p in zip(side("ours", key), side("pythae", key))]
    steady, cpu = pair("steady_images_per_s"), pair("images_per_cpu_s")
    e2e = [p / o for o, p in zip(side("ours", "e2e_s"), side("pythae", "e2e_s"))]
    loss_diff = [abs(o - p) / max(abs(p), 1e-12)
                 for o, p in zip(side("ours", "loss"), side("pythae", "loss"))]
    same_init = all(o == p for o, p in zip(side("ours", "init_digest"),
                                           side("pythae", "init_digest")))
    return {"ours_images_per_s_median": statistics.median(ours),
            "pythae_images_per_s_median": statistics.median(pyt),
            "ratio_of_medians": statistics.median(ours) / statistics.median(pyt),
            "paired_ratios": paired, "paired_ratio_median": statistics.median(paired),
            "steady_paired_ratios": steady, "steady_paired_ratio_median": statistics.median(steady),
            "cpu_paired_ratios": cpu, "cpu_paired_ratio_median": statistics.median(cpu),
            "e2e_speedup_paired": e2e,
            "final_loss_ours": side("ours", "loss"), "final_loss_pythae": side("pythae", "loss"),
            "max_rel_loss_diff": max(loss_diff), "same_init_weights": same_init}


def print_report(results: dict, meta: dict) -> None:
    print(f"\nTraining throughput, ours vs pythae TrainingPipeline ({meta['arch']} nets, "
          f"N={meta['n_images']}, epochs={meta['epochs']}, batch={meta['batch_size']}, "
          f"torch threads={meta['torch_threads']})")
    print(f"{'model':7} {'rep':>3} {'side':7} {'loop s':>7} {'img/s':>8} {'steady':>8} "
          f"{'cpu s':>7} {'e2e s':>7} {'final train loss':>17} {'load':>5}")
    for kind, res in results.items():
        for r in res["runs"]:
            print(f"{kind:7} {r['repeat']:>3} {r['side']:7} {r['loop_s']:7.2f} "
                  f"{r['images_per_s']:8.2f} {r['steady_images_per_s']:8.2f} "
                  f"{r['loop_cpu_s']:7.2f} {r['e2e_s']:7.2f} {r['loss']:17.8f} "
                  f"{r['load_before']:5.2f}")
    print(f"\n{'model':7} {'ours img/s':>10} {'pythae img/s':>12} {'ratio':>6}  paired ratios "
          f"(wall: all steps | steps >= 2 | cpu time | e2e)")
    for kind, res in results.items():
        s = res["summary"]
        fmt = lambda xs: ", ".join(f"{x:.3f}" for x in xs)
        print(f"{kind:7} {s['ours_images_per_s_median']:10.2f} "
              f"{s['pythae_images_per_s_median']:12.2f} {s['ratio_of_medians']:6.3f}  "
              f"{fmt(s['paired_ratios'])} | {fmt(s['steady_paired_ratios'])} | "
              f"{fmt(s['cpu_paired_ratios'])} | {fmt(s['e2e_speedup_paired'])}")
        print(f"        medians of the paired ratios: wall {s['paired_ratio_median']:.3f}, "
              f"steps >= 2 {s['steady_paired_ratio_median']:.3f}, "
              f"cpu time {s['cpu_paired_ratio_median']:.3f}")
        agree = "agree" if s["max_rel_loss_diff"] < 1e-3 else "DIFFER"
        print(f"        same initial weights: {s['same_init_weights']}; final train losses "
              f"{agree} (max relative difference {s['max_rel_loss_diff']:.1e})")
    ms = meta["batch_assembly_ms"]
    print(f"batch assembly per batch of {meta['batch_size']} (model excluded, best of 5 "
          f"epochs): ours {ms['ours']:.2f} ms, pythae DataLoader {ms['pythae']:.2f} ms")
    print(_LEGEND)


_LEGEND = """\
ratio: median ours img/s / median pythae img/s over the train loop (> 1: ours faster).
paired: that ratio per adjacent (ours, pythae) pair: wall time over all steps, over steps
  >= 2 (each epoch's first step left out), and images per CPU-second of this process;
  e2e = pythae's whole pipeline call / our optimisers + loop (> 1: ours faster).
steady: img/s over steps >= 2. cpu s: process CPU time in the loop. load: 1-minute load
  average before the run (this benchmark alone holds it near 2, or 1 with --threads 1;
  more means other work shares the 2 cores)."""


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="bench/training_throughput.py",
        description="Images/s of our training loop vs pythae's TrainingPipeline, interleaved "
                    "in one process; prints the ratio ours/pythae.")
    p.add_argument("--model", default="vae,vaegan",
                   help=f"comma-separated, from {', '.join(MODELS)} (default: both)")
    p.add_argument("--arch", choices=ARCHS, default="paper")
    # The paper nets cost ~4 s (VAE) and ~15-40 s (VAE-GAN) per batch of 256 on the 2-core
    # dev box, so 2 batches x 3 pairs keeps the default run to minutes.
    p.add_argument("--subset", type=int, default=512,
                   help="stratified MNIST training images (default 512 = 2 batches)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3, help="interleaved pairs per model")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--lr", type=float, help="default: the paper's per model (1e-3 / 1e-4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false",
                   help="skip the untimed warm-up step")
    p.add_argument("--full", action="store_true", help="full MNIST (60,000 images)")
    p.add_argument("--json", metavar="PATH", help="write raw numbers here")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.model.split(",") if m.strip()]
    bad = [m for m in args.models if m not in MODELS]
    if bad:
        p.error(f"unknown model(s) {bad}; choose from {', '.join(MODELS)}")
    if args.repeats < 1 or args.epochs < 1 or args.subset < 1:
        p.error("--repeats, --epochs and --subset must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import pythae.pipelines  # noqa: F401  (creates pythae's chatty loggers, silenced next)
    import pythae.trainers  # noqa: F401

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("pythae"):
            logging.getLogger(name).setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_images(None if args.full else args.subset, args.seed)
    meta = {"arch": args.arch, "n_images": len(data), "epochs": args.epochs,
            "batch_size": args.batch_size, "repeats": args.repeats,
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S"), "argv": sys.argv[1:]}
    meta["batch_assembly_ms"] = batch_assembly_ms(data, args.batch_size)
    t0 = time.perf_counter()
    results = {kind: bench_model(kind, args, data) for kind in args.models}
    meta["total_s"] = time.perf_counter() - t0
    print_report(results, meta)
    print(f"total {meta['total_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2,
                                              default=float))
        print(f"raw numbers: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
