"""The datasets a run used, as MLflow dataset inputs (the UI's "Datasets" column).

A trial's child run names the real images it trained on (context ``training``: the
dataset's train split, or its seeded subset) and those it was scored against (context
``evaluation``: the test set's fixed reference half, ``scorers.realsplit``), each with a
digest from the verified MD5s of the IDX files and what was taken of them, so two runs on
the same images show the same digest, and the files' checksums as its source. An export names the synthetic set it wrote, digest from the file's SHA-256.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from scorers.realsplit import HALF, SPLIT_SEED
from sweeps.tracking_server import bound_http_retries, health
from trainables.datasets import CHECKSUMS, FILES

CONTEXT_TAG = "mlflow.data.context"
SOURCE_TYPE = "gensweep"
SPLIT_FILES = {"train": ("train_images", "train_labels"), "test": ("test_images", "test_labels")}
FULL_SIZE = {"train": 60_000, "test": 10_000}


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def real_split(dataset: str, split: str, subset: int | None, seed: int, context: str):
    """A ``DatasetInput`` for ``split`` of ``dataset`` (a stratified ``subset`` of it drawn
    with ``seed``, or all of it)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    md5 = {FILES[k]: CHECKSUMS[dataset][FILES[k]] for k in SPLIT_FILES[split]}
    rows = int(subset) if subset else FULL_SIZE[split]
    source = {"dataset": dataset, "split": split, "md5": md5,
              **({"subset": rows, "subset_seed": seed} if subset else {})}
    return DatasetInput(
        Dataset(name=f"{dataset}-{split}", digest=_digest(md5, subset and rows, subset and seed),
                source_type=SOURCE_TYPE, source=json.dumps(source),
                profile=json.dumps({"num_rows": rows})),
        tags=[InputTag(CONTEXT_TAG, context)])


def reference_half(dataset: str):
    """The real images every trial is scored against: the fixed reference half of the test
    set (``scorers.realsplit``), the same for every trial and sweep."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    md5 = {FILES[k]: CHECKSUMS[dataset][FILES[k]] for k in SPLIT_FILES["test"]}
    source = {"dataset": dataset, "split": "test", "part": "reference half", "md5": md5,
              "rows": HALF, "split_seed": SPLIT_SEED}
    return DatasetInput(
        Dataset(name=f"{dataset}-test-reference", digest=_digest(md5, "reference", SPLIT_SEED),
                source_type=SOURCE_TYPE, source=json.dumps(source),
                profile=json.dumps({"num_rows": HALF})),
        tags=[InputTag(CONTEXT_TAG, "evaluation")])


def trial_inputs(params: dict) -> list:
    """What a trial with these params trained on, and the real images it was scored
    against; none for params that name no dataset."""
    dataset = params.get("dataset")
    if dataset not in CHECKSUMS:
        return []
    seed = int(params.get("seed") or 0)
    return [real_split(dataset, "train", params.get("subset"), seed, "training"),
            reference_half(dataset)]


def synthetic_set(name: str, sha256: str, rows: int, source: dict):
    """A ``DatasetInput`` for an exported synthetic set."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    return DatasetInput(Dataset(name=name, digest=sha256[:16], source_type=SOURCE_TYPE,
                                source=json.dumps(source, default=str),
                                profile=json.dumps({"num_rows": rows})),
                        tags=[InputTag(CONTEXT_TAG, "synthetic")])


def log_export(uri: str, run_id: str, out: Path, rows: int, source: dict) -> None:
    """Name an export on the run of the generator that drew it (its sweep's parent run).
    The digest covers every file of the export (one file, or a folder's)."""
    from mlflow import MlflowClient

    bound_http_retries()
    why = health(uri)
    if why is not None:
        raise ConnectionError(f"the tracking server does not answer ({why})")
    files = sorted(p for p in out.rglob("*") if p.is_file()) if out.is_dir() else [out]
    h = hashlib.sha256()
    for path in files:
        h.update(path.read_bytes())
    MlflowClient(uri).log_inputs(run_id, datasets=[synthetic_set(
        f"synthetic-{out.name}", h.hexdigest(), rows, {**source, "path": str(out.resolve())})])
