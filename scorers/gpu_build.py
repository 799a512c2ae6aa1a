"""Fine-tune a scorer as a Ray task on a GPU worker, for ``scorers.scorer_cache.ensure_spec``.

The store keeps the lock, the temporary folder and the rename into the cache; this builder
only decides where the training runs. The task trains into a private temporary folder on
the worker (never into any cache there, so a worker that is the driver's own node cannot
collide with the store's placement), returns the folder's files through the object store,
and they are written into the store's temporary folder here. Scorer folders are tens of MB,
well inside what the object store carries.
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from scorers.finetuning import train_scorer
from scorers.spec import TrainSpec

log = logging.getLogger(__name__)


def _train_and_pack(spec_dict: dict, spec_hash: str, data_dir: str | None) -> dict:
    """Runs on the worker: fine-tune into a temporary folder, return {relative path: bytes}."""
    spec = TrainSpec.from_dict(spec_dict)
    with tempfile.TemporaryDirectory(prefix="gensweep-scorer-") as tmp:
        folder = Path(tmp) / "scorer"
        train_scorer(spec, folder, spec_hash=spec_hash, data_dir=data_dir, progress=False)
        return {str(p.relative_to(folder)): p.read_bytes()
                for p in sorted(folder.rglob("*")) if p.is_file()}


def write_files(files: dict, folder: Path) -> None:
    """Write shipped ``{relative path: bytes}`` under the new ``folder``; paths stay inside it."""
    folder = Path(folder)
    root = folder.resolve()
    for rel, data in files.items():
        path = (folder / rel).resolve()
        if root not in path.parents:
            raise ValueError(f"shipped scorer file {rel!r} would land outside {folder}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def on_gpu_worker(num_gpus: float = 1, num_cpus: float = 1):
    """A builder that fine-tunes on a worker with ``num_gpus`` GPUs (Ray must be running)."""

    def build(spec, folder: Path, *, spec_hash: str, data_dir=None, progress: bool = True):
        import ray

        log.info("fine-tuning the %s scorer on a GPU worker (%s GPU, %s CPU)", spec.kind,
                 num_gpus, num_cpus)
        task = ray.remote(_train_and_pack).options(num_gpus=num_gpus, num_cpus=num_cpus,
                                                   max_retries=1)
        files = ray.get(task.remote(spec.to_dict(), spec_hash,
                                    None if data_dir is None else str(data_dir)))
        write_files(files, folder)

    return build
