"""Train one VAE or VAE-GAN from the command line, on the same code path a sweep trial uses.

    python trainables/train.py --model vaegan --dataset mnist --epochs 5 --lr 1e-4 \\
        --latent-dim 16 --arch small --subset 5000 --out runs/x

Writes ``OUT/metrics.jsonl`` (one line per epoch), ``OUT/checkpoints/`` (last two epochs,
safetensors), and at the end ``OUT/samples.npz`` (5,000 prior samples, uint8) and
``OUT/samples_grid.png``. ``--resume`` continues an interrupted run from its last checkpoint.
Exit codes: 0 finished, 2 bad arguments, 3 diverged, 1 other errors (a missing or corrupt
dataset, an unwritable --out; one line on stderr), 130 interrupted.
"""
from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

try:
    from trainables.cli import ArgumentParser, int_list, positive_float, positive_int
    from trainables.config import ARCHS, LR_SCHEDULES, MODELS, SAMPLERS, ConfigError, TrainConfig
    from trainables.datasets import DATASETS
except ModuleNotFoundError as exc:  # run as a script from a checkout that was not installed
    sys.exit(f"trainables/train.py: error: {exc}; install gensweep first: pip install -e .")
from trainables.datasets import DatasetError
from trainables.device import Assignment, choose_device

log = logging.getLogger("trainables.train")


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="trainables/train.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=MODELS, default="vaegan")
    p.add_argument("--dataset", choices=DATASETS, default="mnist")
    p.add_argument("--arch", choices=ARCHS, default="paper",
                   help="paper: Figure 3 networks; small: 1/8 of the channels, for CPUs")
    p.add_argument("--epochs", type=positive_int, help="default: the paper's (67 / 85)")
    p.add_argument("--batch-size", type=positive_int, default=256)
    p.add_argument("--lr", type=positive_float, help="default: the paper's for model/dataset")
    p.add_argument("--latent-dim", type=positive_int, help="default: 16 MNIST, 32 Fashion")
    p.add_argument("--adversarial-loss-scale", type=float, default=0.8,
                   help="VAE-GAN: weight of the adversarial term in the decoder loss")
    p.add_argument("--reconstruction-layer", type=int, default=3,
                   help="VAE-GAN: discriminator layer (1-5, -1 = last) for the recon loss")
    p.add_argument("--equilibrium", type=float, default=0.68)
    p.add_argument("--margin", type=float, default=0.4)
    p.add_argument("--conditional", action="store_true",
                   help="class-conditional networks: the label enters encoder, decoder and "
                        "discriminator, and samples of a chosen class can be drawn")
    scarce = p.add_mutually_exclusive_group()
    scarce.add_argument("--subset", type=positive_int, help="stratified train subset (images)")
    scarce.add_argument("--train-per-class", type=positive_int, metavar="N",
                        help="train on about N labelled images per class (= --subset 10N: "
                             "the classes in their proportions, seeded by --seed): the scarce "
                             "real data that gensweep score --augment measures the generator's "
                             "help against")
    p.add_argument("--test-subset", type=positive_int, help="stratified test subset (images)")
    p.add_argument("--train-images", type=positive_int,
                   help="an image budget instead of --epochs: train ceil(N / batch) steps")
    p.add_argument("--report-images", type=positive_int,
                   help="with --train-images: report and checkpoint every N images")
    p.add_argument("--lr-schedule", choices=LR_SCHEDULES, default="constant",
                   help="cosine: decay the learning rate to 0 over the run")
    p.add_argument("--n-samples", type=int_list, default=(1000, 5000),
                   help="sample counts to draw (comma-separated)")
    p.add_argument("--sampler", choices=SAMPLERS, default="prior",
                   help="prior: z ~ N(0, I), as the paper; latent-gmm: z from a 10-component "
                        "Gaussian mixture fitted to the encoder's codes of training images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the networks (GPU only; ignored on the CPU)")
    p.add_argument("--data-dir", help="folder with the IDX files (else GENSWEEP_DATA_DIR, cache)")
    p.add_argument("--out", default="runs/train", help="output folder (default: runs/train)")
    p.add_argument("--resume", action="store_true", help="continue from OUT's last checkpoint")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = TrainConfig(
            model=args.model, dataset=args.dataset, arch=args.arch, epochs=args.epochs,
            batch_size=args.batch_size, lr=args.lr, latent_dim=args.latent_dim,
            adversarial_loss_scale=args.adversarial_loss_scale,
            reconstruction_layer=args.reconstruction_layer, equilibrium=args.equilibrium,
            margin=args.margin, conditional=args.conditional,
            subset=args.subset or (args.train_per_class and 10 * args.train_per_class),
            test_subset=args.test_subset,
            train_images=args.train_images, report_images=args.report_images,
            lr_schedule=args.lr_schedule, sampler=args.sampler,
            seed=args.seed, n_samples=args.n_samples, data_dir=args.data_dir, device=args.device,
            compile=args.compile)
    except (ConfigError, ValueError) as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    from trainables.checkpoint import CheckpointError
    from trainables.trainable import LocalReporter, run_training

    try:
        import torch

        choose_device(args.device, Assignment(), torch.cuda.is_available())
    except ValueError as exc:
        parser.error(str(exc))
    out = Path(args.out)
    try:
        reporter = LocalReporter(out, resume=args.resume)
        if not (args.resume and (out / "config.json").exists()):
            # a resume keeps the run's own record: a refused one (another architecture)
            # must not overwrite it with the settings it refused
            (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
        budget = (f"{cfg.train_images} images" if cfg.train_images else f"{cfg.epochs} epochs")
        log.info("training %s on %s (%s nets, %s) into %s", cfg.model, cfg.dataset, cfg.arch,
                 budget, out)
        result = run_training(cfg, reporter)
    except (DatasetError, FileExistsError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # an unwritable or full --out
        print(f"error: --out {out}: {exc.strerror or exc} ({exc.filename or out})",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"\ninterrupted; continue with the same command and --resume (checkpoints in "
              f"{out / 'checkpoints'})", file=sys.stderr)
        return 130
    (out / "result.json").write_text(json.dumps(
        {"status": result.status, "metrics": result.metrics}, indent=1, default=float))
    if result.status == "diverged":
        print(f"diverged: {result.metrics['error']}; checkpoints up to the last good epoch "
              f"are in {out / 'checkpoints'}", file=sys.stderr)
        return 3
    for name in ("samples.npz", "samples_grid.png"):
        shutil.copy2(result.final_dir / name, out / name)
    print(f"done: {out / 'samples.npz'} ({result.metrics.get('n_samples')} samples), "
          f"grid {out / 'samples_grid.png'}, test loss {result.metrics.get('test_loss'):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
