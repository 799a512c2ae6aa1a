"""Score a file of generated images (or the real-data ceiling) with the fine-tuned scorers.

    python scorers/score_cli.py --dataset mnist --samples samples.npz --n 1000,5000
    python scorers/score_cli.py --dataset mnist --samples real-test --scorer-dir vit=DIR --json

``--samples`` is an .npy file, an .npz file (key ``samples`` or ``images``, else its first
array; ``labels``, if present, labels them, as ``gensweep synthesize`` writes), or
``real-test``: the first n images of the real test set's ceiling half (see
``scorers.realsplit``), i.e. what a perfect generator would score. Scorers come from
``--scorer-dir KIND=DIR`` or else the cache (a missing default scorer is fine-tuned
first, which takes hours on a CPU). Exit status 2 on bad arguments or inputs.

Beside each scorer's table, a sample file also gets, at the largest n: memorisation against
the dataset's training images (in pixels, and in the ViT's features when it is scored), and,
when it is labelled, the train-on-synthetic accuracy (``cas_…``) with its real-data ceiling.
``--cas`` insists on the latter: an unlabelled file is then an error.
"""
from __future__ import annotations

import json
import logging
import sys
import zipfile
from pathlib import Path

import numpy as np

from scorers.classifier_scores import check_ns
from scorers.images import as_unit_float
from scorers.keys import PREFIX, n_label, score_key
from scorers.scorecard import LoadedScorer, TrainingImages, scorecard
from scorers.scorer_cache import (ensure_scorer, is_complete, load_scorer, read_metadata,
                                  scorer_dir_for)
from scorers.spec import KINDS, TrainSpec
from scorers.utility import check_labelled
from trainables.cli import ArgumentParser, fail, positive_int, setup_logging
from trainables.datasets import DATASETS, DatasetError

log = logging.getLogger(__name__)
PROG = "gensweep score"
COLUMNS = [("mean", "{P} mean"), ("std", "{P} std"), ("fid", "FID"), ("kid_mean", "KID mean"),
           ("kid_std", "KID std"), ("mmd", "MMD"), ("nn1_acc", "1-NN acc"),
           ("nn1_real", "1-NN real"), ("nn1_fake", "1-NN fake"), ("precision", "prec"),
           ("recall", "recall"), ("density", "density"), ("knn_coverage", "coverage"),
           ("class_coverage", "classes"), ("class_entropy", "class H")]


def parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--samples", required=True, help="FILE.npy | FILE.npz | real-test")
    p.add_argument("--kinds", help="comma-separated scorer kinds (default: the kinds given with "
                                     "--scorer-dir, else inception,vit)")
    p.add_argument("--scorer-dir", action="append", default=[], metavar="KIND=DIR",
                   help="use the scorer folder DIR for KIND (repeatable)")
    p.add_argument("--n", default="1000,5000", help="sample counts, comma-separated")
    p.add_argument("--cas", action="store_true",
                   help="require labels: fail if the file has none (CAS is given whenever "
                        "it has them)")
    p.add_argument("--augment", action="store_true",
                   help="also the augmentation utility of the labelled samples: does adding "
                        "them to the scarce real images the generator trained on (see "
                        "--train-per-class) train a better classifier? (scorers/augmentation.py)")
    p.add_argument("--train-per-class", type=positive_int, metavar="N",
                   help="with --augment: the generator trained on N real images per class "
                        "(gensweep train --train-per-class N --seed S)")
    p.add_argument("--train-seed", type=int, default=0,
                   help="with --augment: the generator's --seed, which drew those images")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--data-dir", help="folder with the dataset's IDX files")
    p.add_argument("--cache-root", help="scorer cache root (default $GENSWEEP_CACHE_DIR/scorers)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def load_samples(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(images, labels or None) in an .npy / .npz file (never unpickled); ValueError if
    unusable."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"--samples {path}: no such file (expected FILE.npy, FILE.npz or real-test)")
    try:
        data = np.load(file, allow_pickle=False)
        if isinstance(data, np.ndarray):
            return data, None
        with data:
            names = [k for k in ("samples", "images") if k in data.files]
            images = [k for k in data.files if k != "labels"]
            if not images:
                raise ValueError("the .npz holds no image array")
            labels = data["labels"] if "labels" in data.files else None
            return data[(names or images)[0]], labels
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise ValueError(f"--samples {path}: cannot be read as .npy/.npz without pickle "
                         f"({exc})") from exc


def parse_scorer_dirs(items: list[str]) -> dict[str, Path]:
    dirs = {}
    for item in items:
        kind, sep, folder = item.partition("=")
        if not sep or kind not in KINDS or not folder:
            raise ValueError(f"--scorer-dir {item!r}: expected KIND=DIR with KIND one of "
                             f"{', '.join(KINDS)}")
        dirs[kind] = Path(folder)
    return dirs


def table_keys(kinds, ns) -> set:
    """The keys the per-scorer tables show."""
    return {score_key(kind, n, stat) for kind in kinds for n in ns for stat, _ in COLUMNS}


def table(kind: str, scores: dict, ns) -> str:
    heads = ["n"] + [h.format(P=PREFIX[kind].upper()) for _, h in COLUMNS]
    rows = [[n_label(n)] + [f"{scores[score_key(kind, n, stat)]:.4g}" for stat, _ in COLUMNS]
            for n in ns]
    widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(len(heads))]
    return "\n".join("  " + "  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in [heads, *rows])


def augment(images, labels, n: int, args) -> dict:
    """The augmentation utility of n of the labelled samples (a seeded pick, so a
    class-sorted file still gives every class) against the scarce real images the generator
    trained on."""
    from scorers.augmentation import augmentation_utility, other_real, reference_test_set
    from trainables.datasets import load_dataset, stratified_index

    data = load_dataset(args.dataset, args.data_dir)
    scarce = stratified_index(data.train.labels, 10 * args.train_per_class, args.train_seed)
    pick = np.random.default_rng(args.train_seed).permutation(len(images))[:n]
    log.info("augmentation utility: %d real images, + %d generated or + %d more real; 3 "
             "classifiers x %d seeds", len(scarce), n, n, 3)
    return augmentation_utility(
        (data.train.images[scarce], data.train.labels[scarce]),
        ((images[pick] * 255).round().astype(np.uint8), labels[pick]),
        other_real(data.train.images, data.train.labels, scarce, n, args.train_seed),
        reference_test_set(data))


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    setup_logging(args.verbose)

    # Every cheap check first: a typo must not cost a model load or a fine-tune.
    try:
        ns = check_ns([int(x) for x in args.n.split(",") if x.strip()] if args.n.strip() else [])
    except ValueError:
        fail(PROG, f"--n {args.n!r}: expected comma-separated sample counts in 10..5000, "
                   f"e.g. 1000,5000")
    try:
        dirs = parse_scorer_dirs(args.scorer_dir)
        kinds = [k.strip() for k in (args.kinds or ",".join(dirs or KINDS)).split(",") if k.strip()]
        bad = [k for k in kinds if k not in KINDS] or ([] if kinds else ["(none)"])
        if bad:
            raise ValueError(f"--kinds: unknown kind {', '.join(bad)}; expected a "
                             f"comma-separated subset of {', '.join(KINDS)}")
        extra = [k for k in dirs if k not in kinds]
        if extra:
            raise ValueError(f"--scorer-dir given for {', '.join(extra)} but --kinds is "
                             f"{','.join(kinds)}; add it to --kinds")
        for kind, folder in dirs.items():
            try:
                read_metadata(folder, kind, args.dataset)
            except ValueError as exc:
                raise ValueError(f"--scorer-dir {kind}={folder}: {exc}") from None
        images = labels = None
        if args.samples != "real-test":
            raw, labels = load_samples(args.samples)
            images = as_unit_float(raw, name=f"--samples {args.samples}")
            if len(images) < max(ns):
                raise ValueError(f"--samples {args.samples} holds {len(images)} images but "
                                 f"--n asks for {max(ns)}; expected at least {max(ns)} images")
            if labels is not None:
                _, labels = check_labelled(raw, labels, name=f"--samples {args.samples}")
            elif args.cas:
                raise ValueError(f"--samples {args.samples} has no labels, so no CAS; give an "
                                 f".npz with a 'labels' array (gensweep synthesize --mode "
                                 f"class-gmm writes one) or leave out --cas")
        elif args.cas or args.augment:
            raise ValueError("--cas and --augment score labelled sample files; real-test is "
                             "the ceiling")
        if args.augment and (labels is None or not args.train_per_class):
            raise ValueError("--augment needs a labelled --samples file (gensweep synthesize "
                             "writes one) and --train-per-class N, the real images per class "
                             "the generator trained on")
        if args.train_per_class and not args.augment:
            raise ValueError("--train-per-class is read by --augment only; add --augment")
    except ValueError as exc:
        fail(PROG, str(exc))

    scorers, info = {}, {}
    for kind in kinds:
        if kind not in dirs and not is_complete(scorer_dir_for(TrainSpec(args.dataset, kind),
                                                               args.cache_root)):
            log.warning("no cached default %s scorer for %s: fine-tuning one now with the paper "
                        "defaults (20 epochs on 60,000 images; hours on a CPU). Interrupt and "
                        "pass --scorer-dir %s=DIR to use one made by scorers/finetune_cli.py",
                        kind, args.dataset, kind)
        try:
            folder = dirs.get(kind) or ensure_scorer(args.dataset, kind, data_dir=args.data_dir,
                                                     cache_root=args.cache_root)
            scorer = load_scorer(folder, data_dir=args.data_dir)
        except (ValueError, DatasetError) as exc:  # a corrupt folder, a missing dataset
            fail(PROG, str(exc))
        scorers[kind] = LoadedScorer(scorer, args.dataset)
        info[kind] = {"folder": str(folder), "scorer_id": scorer.scorer_id,
                      "test_accuracy": scorer.metadata.get("test_accuracy"),
                      "test_images": scorer.metadata.get("test_images")}
    try:
        merged = scorecard(images, dataset=args.dataset, ns=ns, scorers=scorers,
                           labelled=None if labels is None else (images, labels),
                           training=TrainingImages(data_dir=args.data_dir))
        if args.augment:
            merged.update(augment(images, labels, max(ns), args))
    except (ValueError, DatasetError) as exc:
        fail(PROG, str(exc))
    if args.json:
        print(json.dumps({"dataset": args.dataset, "samples": args.samples, "n": list(ns),
                          "scorers": info, "scores": merged}, indent=2, sort_keys=True))
        return 0
    what = "real test images (ceiling half)" if images is None else f"{len(images)} images"
    print(f"{args.dataset}: {args.samples} ({what})")
    for kind, i in info.items():
        print(f"\n{kind} scorer {i['scorer_id']} (test accuracy {i['test_accuracy']:.4f} on "
              f"{i['test_images']} images), {i['folder']}")
        print(table(kind, merged, ns))
    rest = {k: v for k, v in merged.items() if k not in table_keys(info, ns)}
    print(f"\nthe set, first {max(ns)} images: " + ", ".join(f"{k} {v:.4g}"
                                                           for k, v in rest.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
