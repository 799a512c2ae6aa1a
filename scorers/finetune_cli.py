"""Fine-tune a scorer (Inception v3 or ViT) on MNIST / Fashion-MNIST, or reuse a cached one.

    python scorers/finetune_cli.py --dataset mnist --scorer inception --epochs 1 --subset 10000

Prints per-epoch train/test accuracy and, at the end, the scorer folder. Without --out
the folder lives in the cache (``$GENSWEEP_CACHE_DIR/scorers/<dataset>/<kind>/<hash>``)
and an existing scorer with the same settings is reused unless --force. Exit status 2
on bad arguments (including an --init that cannot be loaded), 1 on other failures.
"""
from __future__ import annotations

import json
import sys

from scorers.degrade import AUGMENTS
from scorers.scorer_cache import ensure_scorer, read_metadata
from scorers.spec import KINDS, SCHEDULES, ScorerInitError
from trainables.cli import (ArgumentParser, exit_interrupted, fail, interrupts, positive_int,
                            setup_logging, unit_float)
from trainables.datasets import DATASETS, DatasetError

PROG = "gensweep finetune"


def parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--scorer", required=True, choices=KINDS, help="which network to fine-tune")
    p.add_argument("--init", default="scratch",
                   help="inception: scratch (default) | imagenet | PATH.h5; vit: scratch "
                        "(default) | HuggingFace id (e.g. google/vit-base-patch16-224-in21k) | "
                        "local directory with config.json + model.safetensors")
    p.add_argument("--epochs", type=positive_int, help="default 20")
    p.add_argument("--subset", type=positive_int,
                   help="train on this many training images (stratified); default all 60,000")
    p.add_argument("--batch-size", type=positive_int, help="default 128")
    p.add_argument("--lr", type=unit_float, help="learning rate, default 1e-3")
    p.add_argument("--augment", choices=AUGMENTS,
                   help="degrade: blurred / dimmed copies in training (scorers.degrade)")
    p.add_argument("--schedule", choices=SCHEDULES,
                   help="learning-rate schedule (default: constant for inception, as the paper; "
                        "warmup-cosine for vit)")
    p.add_argument("--eval-subset", type=positive_int,
                   help="measure test accuracy on this many test images; default all 10,000")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the scorer folder here instead of the cache")
    p.add_argument("--cache-root", help="scorer cache root (default $GENSWEEP_CACHE_DIR/scorers)")
    p.add_argument("--force", action="store_true", help="re-train even if a matching scorer exists")
    p.add_argument("--data-dir", help="folder with the dataset's IDX files")
    p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
    p.add_argument("--json", action="store_true", help="print the scorer's metadata as JSON")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    setup_logging(args.verbose)

    try:
        with interrupts():
            folder = ensure_scorer(
                args.dataset, args.scorer, init=args.init, epochs=args.epochs,
                subset=args.subset, batch_size=args.batch_size, lr=args.lr,
                eval_subset=args.eval_subset, schedule=args.schedule, augment=args.augment,
                data_dir=args.data_dir, cache_root=args.cache_root, force=args.force,
                seed=args.seed, folder=args.out, progress=not args.no_progress)
    except ScorerInitError as exc:
        fail(PROG, str(exc), 2)
    except ValueError as exc:
        fail(PROG, str(exc), 2)
    except DatasetError as exc:
        fail(PROG, str(exc), 1)
    except OSError as exc:  # an unwritable --out or cache
        fail(PROG, f"{exc.filename or args.out or 'the scorer cache'}: "
                            f"{exc.strerror or exc}", 1)
    except KeyboardInterrupt:
        print(f"{PROG}: error: interrupted; nothing was placed in the cache (run it again)",
              file=sys.stderr)
        exit_interrupted(130)
    meta = read_metadata(folder)
    if args.json:
        print(json.dumps({"folder": str(folder), **meta}, indent=2, sort_keys=True))
    else:
        t = meta["training"]
        print(f"{meta['kind']} scorer for {meta['dataset']}: test accuracy "
              f"{meta['test_accuracy']:.4f} on {meta['test_images']} test images "
              f"({t['train_images']} train images, {t['epochs']} epochs, {t['seconds']:.0f}s "
              f"training); id {meta['scorer_id']}")
        print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
