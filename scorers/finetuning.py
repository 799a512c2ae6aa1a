"""Fine-tune one scorer into a folder: weights, real-test predictions and metadata.

The test-accuracy pass after the last epoch also yields the real test images'
probabilities and penultimate features; they are stored as .npy so the sweep's actors
get FID references and the real-data ceiling without running the network over the test
set again. Writing is the caller's business (``scorers.scorer_cache`` writes into a temporary
folder and renames it into place).
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import platform
import time
from pathlib import Path

import numpy as np

from scorers import degrade, realsplit
from scorers.spec import FORMAT_VERSION, KINDS, TrainSpec, backend, canonical_json, file_digest
from trainables.datasets import load_dataset

log = logging.getLogger(__name__)

METADATA = "metadata.json"
ARRAYS = {"real_probs": "real_probs.npy", "real_features": "real_features.npy",
          "real_labels": "real_labels.npy", "real_index": "real_index.npy"}


def scorer_id(folder: Path, weight_files: list[str], spec: TrainSpec) -> str:
    """Content hash of the weights plus the resolved spec: equal ids mean equal scorers."""
    h = hashlib.sha256()
    for name in sorted(weight_files):
        h.update(name.encode())
        h.update(file_digest(Path(folder) / name).encode())
    h.update(canonical_json(spec.hash_dict()).encode())
    return h.hexdigest()[:16]


def train_scorer(spec: TrainSpec, folder: Path, *, spec_hash: str, data_dir=None,
                 progress: bool = True) -> dict:
    """Build (failing at once on a bad init), train, evaluate and write ``folder``."""
    spec = spec.resolved()
    impl = backend(spec.kind)
    started = time.time()
    model = impl.build(spec.init, seed=spec.seed)
    folder = Path(folder)
    # Created now, filled at the end: a killed run leaves a folder without metadata.json.
    folder.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(spec.dataset, data_dir=data_dir, subset=spec.subset, seed=spec.seed)
    x_train = ds.train.images.astype(np.float32) / np.float32(255.0)
    real_index = realsplit.eval_indices(spec.test_images)
    x_test = ds.test.images[real_index].astype(np.float32) / np.float32(255.0)
    y_test = ds.test.labels[real_index]
    log.info("fine-tuning %s scorer on %s: %d train images, %d test images, init=%s, "
             "epochs=%d, batch=%d, lr=%g", spec.kind, spec.dataset, len(x_train), len(x_test),
             spec.init, spec.epochs, spec.batch_size, spec.lr)
    history: list[dict] = []
    last: dict = {}
    epoch_started = [time.time()]

    def epoch_end(epoch: int, logs: dict) -> None:
        probs, feats = impl.predict(model, x_test)
        acc = float((probs.argmax(axis=1) == y_test).mean())
        row = {"epoch": epoch + 1, **logs, "test_accuracy": acc,
               "seconds": round(time.time() - epoch_started[0], 1)}
        history.append(row)
        log.info("%s %s epoch %d/%d: train loss %.4f, train acc %.4f, test acc %.4f "
                 "(%d test images), %.0fs", spec.kind, spec.dataset, epoch + 1, spec.epochs,
                 logs["train_loss"], logs["train_accuracy"], acc, len(y_test), row["seconds"])
        last.update(probs=probs, feats=feats, acc=acc)
        epoch_started[0] = time.time()

    def degraded(images, epoch):
        return degrade.degrade(images, seed=spec.seed * 1000 + epoch, level=spec.augment)

    augment = None if spec.augment == "none" else degraded
    impl.fit(model, x_train, ds.train.labels, epochs=spec.epochs,
             batch_size=spec.batch_size, lr=spec.lr, seed=spec.seed, epoch_end=epoch_end,
             progress=progress, schedule=spec.schedule, augment=augment)
    train_seconds = time.time() - started
    robust = degrade.robustness(lambda x: impl.predict(model, x), x_test, y_test)
    log.info("%s %s on degraded test images: %s", spec.kind, spec.dataset,
             ", ".join(f"{k} {v:.4f}" for k, v in robust.items()))

    weight_files = impl.save(model, folder)
    arrays = {"real_probs": last["probs"], "real_features": last["feats"],
              "real_labels": y_test.astype(np.uint8), "real_index": real_index.astype(np.int64)}
    for key, name in ARRAYS.items():
        np.save(folder / name, arrays[key], allow_pickle=False)
    metadata = {
        "format": FORMAT_VERSION,
        "scorer_id": scorer_id(folder, weight_files, spec),
        "spec_hash": spec_hash,
        "dataset": spec.dataset,
        "kind": spec.kind,
        "init": spec.init,
        "spec": spec.to_dict(),
        "architecture": impl.architecture(model),
        "preprocessing": dict(impl.PREPROCESSING),
        "training": {"epochs": spec.epochs, "batch_size": spec.batch_size, "lr": spec.lr,
                     "schedule": spec.schedule, "augment": spec.augment,
                     "seed": spec.seed, "train_images": int(len(x_train)),
                     "subset": spec.subset, "history": history,
                     "seconds": round(train_seconds, 1)},
        "test_accuracy": last["acc"],
        "test_images": int(len(y_test)),
        "degraded_accuracy": robust,
        "degraded_images": int(min(len(y_test), degrade.ROBUSTNESS_IMAGES)),
        "feature_dim": int(last["feats"].shape[1]),
        "real_split": {"seed": realsplit.SPLIT_SEED, "half": realsplit.HALF,
                       "stored_test_images": int(len(real_index))},
        "dataset_checksums": dict(ds.checksums),
        "library_versions": {"python": platform.python_version(), "numpy": np.__version__,
                             **impl.versions()},
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "files": {"weights": weight_files, "arrays": dict(ARRAYS)},
    }
    # metadata.json is written last: its presence marks a complete folder.
    (folder / METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    log.info("%s scorer for %s: test accuracy %.4f on %d images, %.0fs, id %s", spec.kind,
             spec.dataset, metadata["test_accuracy"], metadata["test_images"], train_seconds,
             metadata["scorer_id"])
    return metadata


def read_metadata(folder, kind: str | None = None, dataset: str | None = None) -> dict:
    """``folder``'s metadata after checking the folder is complete and, when ``kind`` or
    ``dataset`` are given, that it holds that kind of scorer fine-tuned on that dataset;
    ValueError says what's wrong."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"scorer folder {folder} does not exist; make one with "
                         f"python scorers/finetune_cli.py or ensure_scorer()")
    meta_path = folder / METADATA
    if not meta_path.is_file():
        raise ValueError(f"{folder} is not a complete scorer folder: no {METADATA} (an "
                         f"interrupted fine-tune, or not a scorer folder)")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{meta_path}: unreadable metadata ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("kind") not in KINDS:
        raise ValueError(f"{meta_path}: 'kind' must be one of {', '.join(KINDS)}; "
                         f"got {meta.get('kind') if isinstance(meta, dict) else meta!r}")
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{meta_path}: folder format {meta.get('format')!r}, this code reads "
                         f"format {FORMAT_VERSION}; re-create it with scorers/finetune_cli.py")
    files = meta.get("files", {})
    missing = [f for f in [*files.get("weights", []), *files.get("arrays", ARRAYS).values()]
               if not (folder / f).is_file()]
    if missing or not files.get("weights"):
        raise ValueError(f"{folder}: scorer folder is incomplete, missing "
                         f"{', '.join(missing) or 'the weights list'}")
    if (kind or meta["kind"]) != meta["kind"] or (dataset or meta["dataset"]) != meta["dataset"]:
        raise ValueError(f"{folder} holds a {meta['kind']} scorer for {meta['dataset']}; "
                         f"expected a {kind or meta['kind']} scorer for "
                         f"{dataset or meta['dataset']}")
    return meta
