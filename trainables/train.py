"""Train one VAE or VAE-GAN from the command line, on the same code path a sweep trial uses.

    python trainables/train.py --model vaegan --dataset mnist --epochs 5 --lr 1e-4 \\
        --latent-dim 16 --arch small --subset 5000 --out runs/x

Writes ``OUT/metrics.jsonl`` (one line per epoch), ``OUT/checkpoints/`` (last two epochs,
safetensors), and at the end ``OUT/samples.npz`` (5,000 prior samples, uint8) and
``OUT/samples_grid.png``. ``--resume`` continues an interrupted run from its last checkpoint.
Exit codes: 0 finished, 2 bad arguments, 3 diverged, 1 other errors (message on stderr).
"""
from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path

# Running as ``python trainables/train.py`` puts trainables/ (not the repo) on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainables.config import ARCHS, MODELS, ConfigError, TrainConfig  # noqa: E402
from trainables.datasets import DATASETS  # noqa: E402

log = logging.getLogger("trainables.train")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} must be > 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="trainables/train.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", choices=MODELS, default="vaegan")
    p.add_argument("--dataset", choices=DATASETS, default="mnist")
    p.add_argument("--arch", choices=ARCHS, default="paper",
                   help="paper: Figure 3 networks; small: 1/8 of the channels, for CPUs")
    p.add_argument("--epochs", type=_positive_int, help="default: the paper's (67 / 85)")
    p.add_argument("--batch-size", type=_positive_int, default=256)
    p.add_argument("--lr", type=_positive_float, help="default: the paper's for model/dataset")
    p.add_argument("--latent-dim", type=_positive_int, help="default: 16 MNIST, 32 Fashion")
    p.add_argument("--adversarial-loss-scale", type=float, default=0.8,
                   help="VAE-GAN: weight of the adversarial term in the decoder loss")
    p.add_argument("--reconstruction-layer", type=int, default=3,
                   help="VAE-GAN: discriminator layer (1-5, -1 = last) for the recon loss")
    p.add_argument("--equilibrium", type=float, default=0.68)
    p.add_argument("--margin", type=float, default=0.4)
    p.add_argument("--subset", type=_positive_int, help="stratified train subset (images)")
    p.add_argument("--test-subset", type=_positive_int, help="stratified test subset (images)")
    p.add_argument("--n-samples", default="1000,5000", help="prior sample counts to draw")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--data-dir", help="folder with the IDX files (else GENSWEEP_DATA_DIR, cache)")
    p.add_argument("--out", default="runs/train", help="output folder (default: runs/train)")
    p.add_argument("--resume", action="store_true", help="continue from OUT's last checkpoint")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        n_samples = tuple(int(n) for n in args.n_samples.split(",") if n.strip())
        cfg = TrainConfig(
            model=args.model, dataset=args.dataset, arch=args.arch, epochs=args.epochs,
            batch_size=args.batch_size, lr=args.lr, latent_dim=args.latent_dim,
            adversarial_loss_scale=args.adversarial_loss_scale,
            reconstruction_layer=args.reconstruction_layer, equilibrium=args.equilibrium,
            margin=args.margin, subset=args.subset, test_subset=args.test_subset,
            seed=args.seed, n_samples=n_samples, data_dir=args.data_dir, device=args.device)
    except (ConfigError, ValueError) as exc:
        parser.error(str(exc))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    from trainables.datasets import DatasetError
    from trainables.trainable import LocalReporter, run_training

    out = Path(args.out)
    try:
        reporter = LocalReporter(out, resume=args.resume)
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
        log.info("training %s on %s (%s nets, %d epochs) into %s", cfg.model, cfg.dataset,
                 cfg.arch, cfg.epochs, out)
        result = run_training(cfg, reporter)
    except (DatasetError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
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
