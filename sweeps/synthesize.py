"""Export a synthetic dataset from a trained generator, with the datasheet to defend it.

    gensweep synthesize --checkpoint DIR --n 60000 --mode class-gmm --out synth.npz
    gensweep synthesize --checkpoint COND_DIR --n 60000 --mode conditional --out synth.npz
    gensweep synthesize --run runs/sweep-vaegan-mnist-... --trial best --n 10000 --out s.npz
    gensweep synthesize --model models:/gensweep-mnist-vaegan/1 --mlflow-uri URI --out s.npz
    python sweeps/synthesize.py ...              # the same command

Writes three files, each atomically (a half-written export never replaces a good one):

* ``OUT`` (.npz, no pickle): ``images`` uint8 (N, 28, 28), and ``labels`` uint8 (N,) for
  labelled modes. ``--mode prior`` draws z ~ N(0, I) (unlabelled); ``latent-gmm`` draws z
  from a Gaussian mixture fitted to the encoder's codes of the training images (unlabelled;
  what a sweep run with ``--sampler latent-gmm`` scored); ``class-gmm`` draws each class
  from a mixture fitted to that class's codes (labelled by construction; what a sweep's
  CAS learns from); ``conditional`` (a model trained with ``--conditional``) decodes
  z ~ N(0, I) with each class in turn. The default is ``conditional`` for a conditional
  model, else ``class-gmm``. Labelled modes give every class N / 10 images, class by class
  (``--classes balanced``).
  ``reconstruction`` is not generated data: each image is a training image encoded
  (z ~ q(z|x)) and decoded, labelled with its class; the .npz names each source
  (``sources``: its index in the training images) and the datasheet says so first.
* ``OUT`` with ``.png``: a grid, one row per class (or 8 x 8 prior samples).
* ``OUT`` with ``.json``: the datasheet: model, its config, the checkpoint and its SHA-256,
  mode, seed, class counts, and the scores of this set (a seeded sample of ``--score-n``
  of its images, since a class-sorted file's head holds few classes): IS / TS, FID and the
  rest against real test images, the train-on-synthetic accuracy and its real ceiling for a
  labelled set, the memorisation checks against the images the generator trained on, and
  the ids of the scorers used.

Scorers: the sweep's own (``--run``), else ``--scorers DIR`` (inception/ and vit/), else the
quick preset's in the cache; ``--no-score`` writes the datasheet without the scorers' scores
(the pixel-space memorisation and data-copying checks need no scorer and always run).
``--model models:/NAME/VERSION`` takes a generator from the Model Registry of
``--mlflow-uri`` (what a sweep registers; the same draw as its checkpoint folder gives).
Exit codes: 0 written; 2 bad arguments or input, a registered model that does not exist
included (one line on stderr); 1 a tracking server that does not answer, or other failures.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

try:
    from trainables.cli import ArgumentParser, fail, number, positive_int, setup_logging
except ModuleNotFoundError as exc:  # run as a script from a checkout that was not installed
    sys.exit(f"synthesize: error: {exc}; install gensweep first: pip install -e .")
from scorers import realsplit
from scorers.copying import verdict
from scorers.keys import MEMO_SPACES, memo_key
from scorers.scorecard import LoadedScorer, TrainingImages, as_uint8, pixel_checks, scorecard
from scorers.scorer_cache import is_complete, load_scorer, read_metadata, scorer_dir_for
from scorers.spec import KINDS
from sweeps import dataset_formats as formats
from sweeps import sweep_record
from sweeps.dataset_formats import FORMATS
from sweeps.mlflow_datasets import log_export
from sweeps.model_registry import RegistryError, fetch_checkpoint, source_run
from sweeps.presets import PRESETS
from sweeps.redact import redact_url
from trainables.datasets import DatasetError, load_dataset
from trainables.draws import MODES, UNLABELLED, check_mode, default_mode, draw

log = logging.getLogger(__name__)
PROG = "gensweep synthesize"
SCORE_N = 5000


def parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a checkpoint folder (model.safetensors, state.json), "
                                          "or a gensweep train --out folder (its latest one)")
    src.add_argument("--run", help="a sweep folder; with --trial")
    src.add_argument("--model", help="a registered generator, models:/NAME/VERSION (what a "
                                     "sweep registers, e.g. gensweep-mnist-vaegan)")
    p.add_argument("--mlflow-uri", default=os.environ.get("MLFLOW_TRACKING_URI"),
                   help="the tracking URI holding --model's registry (default: "
                        "MLFLOW_TRACKING_URI)")
    p.add_argument("--trial", default="best", help="best (the sweep's winner) or a trial id")
    p.add_argument("--n", type=positive_int, default=10_000, help="images to write")
    p.add_argument("--mode", choices=MODES,
                   help="default: conditional for a conditional model, else class-gmm; "
                        "reconstruction: reconstructions of named training images (flagged)")
    p.add_argument("--classes", choices=("balanced",),
                   help="balanced: N / 10 per class, class by class (what the labelled modes "
                        "draw)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True,
                   help="FILE.npz, FILE.parquet, or a folder for --format imagefolder")
    p.add_argument("--format", choices=FORMATS, default="npz",
                   help="npz (numpy); imagefolder (a PNG folder per class, as torchvision's "
                        "ImageFolder reads); parquet (image and label columns, as Hugging "
                        "Face datasets loads)")
    p.add_argument("--scorers", help="folder with inception/ and vit/ scorer folders")
    p.add_argument("--score-n", type=number(int, 10, maximum=SCORE_N), default=SCORE_N,
                   help="images of the set scored for the datasheet (a seeded sample; 10-5000)")
    p.add_argument("--no-score", action="store_true", help="datasheet without the scorers' scores (the pixel-space copying checks "
                        "still run)")
    p.add_argument("--data-dir", help="dataset folder (else GENSWEEP_DATA_DIR, the cache)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


RECONSTRUCTION_NOTICE = (
    "Every image is a reconstruction of a named training image (its index among the "
    "generator's training images is in the .npz's 'sources'): this is not generated data, "
    "and sharing it shares those images.")


def write_all(writers: dict) -> None:
    """``{path: write(tmp)}``: every file (or folder) into a temporary beside its path first,
    then all renamed into place, so an export is never half replaced (a failure leaves the
    old set)."""
    tmps = {path: path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
            for path in writers}
    try:
        for path, write in writers.items():
            write(tmps[path])
        for path, tmp in tmps.items():
            formats.replace(tmp, path)
    finally:
        for tmp in tmps.values():
            formats.remove(tmp)


def checkpoint_folder(path: Path) -> Path:
    """A checkpoint folder, or the latest complete one of a ``gensweep train --out`` folder
    (said in the log); ValueError naming the folder otherwise."""
    from trainables.checkpoint import is_complete as is_checkpoint  # torch: not for --help
    if (path / "model.safetensors").is_file() or not (path / "checkpoints").is_dir():
        return path
    found = sorted(p for p in (path / "checkpoints").glob("ckpt_*") if is_checkpoint(p))
    if not found:
        raise ValueError(f"--checkpoint {path}: its checkpoints/ holds no complete checkpoint "
                         f"(an interrupted run? resume it with gensweep train --resume)")
    log.info("using %s, the latest checkpoint of the run in %s", found[-1].name, path)
    return found[-1]


def generator_run(args, saved: dict | None, downloaded: Path | None) -> tuple:
    """(tracking URI, run id) of the MLflow run that holds the generator, the sweep's
    parent run; (None, None) for a checkpoint folder outside MLflow."""
    if saved and saved.get("parent_run_id") and saved.get("mlflow_uri"):
        return saved["mlflow_uri"], saved["parent_run_id"]
    if downloaded is not None:
        return args.mlflow_uri, source_run(downloaded)
    return None, None


def score_set(images, labels, dataset: str, scorer_dirs: dict, cfg, score_n: int, seed: int,
              data_dir) -> dict:
    """The datasheet's scorecard of a seeded sample of the set (see the module doc), and
    its data-copying test in words. With no scorers (``--no-score``), the pixel-space
    checks alone: they need none."""
    import numpy as np

    pick = np.sort(np.random.default_rng(seed).permutation(len(images))[:score_n])
    x = images[pick]
    training = TrainingImages(cfg.subset, cfg.seed, data_dir or cfg.data_dir)
    if not scorer_dirs:
        held_out = load_dataset(dataset, training.data_dir).test.images[
            realsplit.indices("ceiling", len(x))]
        scores, _ = pixel_checks(as_uint8(x), dataset, training, held_out)
        ids = {}
    else:
        loaded = {k: load_scorer(folder, data_dir=data_dir) for k, folder in scorer_dirs.items()}
        scores = scorecard(x, dataset=dataset, ns=(len(x),),
                           scorers={k: LoadedScorer(s, dataset) for k, s in loaded.items()},
                           labelled=None if labels is None else (x, labels[pick]),
                           training=training)
        ids = {k: s.scorer_id for k, s in loaded.items()}
    return {"n_scored": len(x), "scores": scores, "scorer_ids": ids,
            "data_copying": copying_words(scores, len(x))}


def copying_words(scores: dict, n: int) -> dict:
    """The data-copying test's reading in each space it ran in (``scorers.copying``)."""
    return {space: verdict(scores[memo_key(space, n, "copying")],
                           scores[memo_key(space, n, "near_copies")])
            for space in MEMO_SPACES if memo_key(space, n, "copying") in scores}


def default_scorers(dataset: str, scorers_dir: str | None, saved: dict | None) -> dict:
    if saved and saved.get("scorers"):
        dirs = {k: Path(v) for k, v in saved["scorers"].items()}
    elif scorers_dir:
        dirs = {k: Path(scorers_dir) / k for k in KINDS}
    else:
        dirs = None
    if dirs is not None:
        for kind, folder in dirs.items():
            read_metadata(folder, kind, dataset)  # ValueError naming the folder
        return dirs
    dirs = {k: scorer_dir_for(PRESETS["quick"].scorer_spec(dataset, k)) for k in KINDS}
    missing = [k for k, d in dirs.items() if not is_complete(d)]
    if missing:
        raise ValueError(f"no cached quick {', '.join(missing)} scorer for {dataset}; pass "
                         f"--scorers DIR, or --no-score, or fine-tune with gensweep finetune")
    return dirs


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    setup_logging(args.verbose)
    import numpy as np

    from trainables.checkpoint import CheckpointError, load_generator
    from trainables.samples import class_grid, image_grid, save_png

    out = Path(args.out)
    try:
        formats.check_out(out, args.format)
    except ValueError as exc:
        fail(PROG, str(exc))
    if args.mode in UNLABELLED and args.classes:
        fail(PROG, f"--classes balanced needs labels: {args.mode} samples carry none; use "
                   f"--mode class-gmm")
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        fail(PROG, f"--out {out}: the folder {out.parent} does not exist or is not writable")
    saved, downloaded, tracked = None, None, (None, None)
    try:
        if args.run:
            folder, saved = sweep_record.trial_checkpoint(Path(args.run), args.trial)
            tracked = generator_run(args, saved, None)
        elif args.model:
            downloaded = Path(tempfile.mkdtemp(prefix="gensweep-model-"))
            folder = fetch_checkpoint(args.model, args.mlflow_uri, downloaded)
            tracked = generator_run(args, None, downloaded)
        else:
            folder = checkpoint_folder(Path(args.checkpoint))
        model, cfg, _ = load_generator(folder)
        mode = args.mode or default_mode(cfg)
        try:
            check_mode(cfg, mode)
        except ValueError as exc:
            raise ValueError(f"--mode {mode}, {folder}: {exc}") from exc
        scorer_dirs = None if args.no_score else default_scorers(cfg.dataset, args.scorers, saved)
        log.info("writing %d %s samples of %s (%s) to %s", args.n, mode, cfg.model,
                 folder, out)
        images, labels, sources = draw(model, cfg, mode, args.n, args.seed, args.data_dir)
        sheet = {**({"notice": RECONSTRUCTION_NOTICE} if sources is not None else {}),
                 "format": args.format, "model": cfg.model, "dataset": cfg.dataset, "config": cfg.to_dict(),
                 "checkpoint": args.model or str(folder.resolve()),
                 "checkpoint_sha256": file_sha256(folder / "model.safetensors"),
                 "mode": mode, "conditional": cfg.conditional, "seed": args.seed,
                 "n": int(len(images)),
                 "classes": (np.bincount(labels, minlength=10).tolist()
                             if labels is not None else None),
                 "order": "class by class" if labels is not None else "as drawn"}
        sheet.update(score_set(images, labels, cfg.dataset, scorer_dirs, cfg,
                               min(args.score_n, len(images)), args.seed, args.data_dir))
    except (ValueError, CheckpointError, DatasetError, RegistryError) as exc:
        fail(PROG, str(exc))
    except ConnectionError as exc:
        fail(PROG, str(exc), 1)
    finally:
        if downloaded is not None:
            shutil.rmtree(downloaded, ignore_errors=True)
    arrays = {"images": images} if labels is None else {"images": images, "labels": labels}
    if sources is not None:
        arrays["sources"] = sources
    try:
        grid = class_grid(images, labels) if labels is not None else image_grid(images)
        beside = out.with_name(out.stem)  # where the grid and the datasheet go
        write_all({out: lambda tmp: formats.WRITERS[args.format](tmp, arrays),
                   beside.with_suffix(".png"): lambda tmp: save_png(grid, tmp),
                   beside.with_suffix(".json"):
                       lambda tmp: tmp.write_text(json.dumps(sheet, indent=1, default=str))})
    except OSError as exc:
        fail(PROG, f"--out {out}: {exc.strerror or exc}", 1)
    scores = sheet.get("scores", {})
    shown = ", ".join(f"{k} {v:.3f}" for k, v in scores.items()
                      if k.startswith(("is_", "ts_", "cas_", "near_copies_")) and "std" not in k)
    print(f"wrote {out} ({len(images)} images, {mode}, {args.format}), "
          f"{beside.with_suffix('.png')}, {beside.with_suffix('.json')}"
          + (f"; {shown}" if shown else ""))
    if tracked[1]:
        try:
            log_export(*tracked, out, len(images), {"mode": mode, "format": args.format,
                                                    "seed": args.seed,
                                                    "generator": sheet["checkpoint"]})
            print(f"logged as a dataset input of run {tracked[1]}")
        except Exception as exc:  # the export is written; MLflow only misses its record
            print(f"warning: the export is written, but MLflow ({redact_url(tracked[0])}) did "
                  f"not record it: {exc}", file=sys.stderr)
    if sources is not None:
        print(f"warning: {RECONSTRUCTION_NOTICE}", file=sys.stderr)
    for space, words in sheet["data_copying"].items():
        if words.startswith("data-copying"):
            print(f"warning: in {space}: {words}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
