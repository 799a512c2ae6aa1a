"""Make sure a sweep's two scorers exist on the driver's node before any trial starts.

Scorer folders live in the driver's cache, and the shared actors run on the driver's node, so
they need no shared filesystem. On a cluster with GPUs a missing scorer is fine-tuned as a Ray
task on a GPU worker and its folder is shipped back through the object store; elsewhere it is
fine-tuned in the driver process. ``--scorers DIR`` skips all of this.
"""
from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

from scorers.spec import KINDS

log = logging.getLogger(__name__)


def _finetune_and_pack(dataset: str, kind: str, kwargs: dict) -> dict:
    """Runs on a GPU worker: fine-tune into that node's cache, return the folder's files."""
    from scorers.store import ensure_scorer

    folder = ensure_scorer(dataset, kind, **kwargs)
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _unpack(files: dict, target: Path) -> Path:
    """Write shipped files next to ``target`` and rename into place (never a half folder)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{target.name}-{uuid.uuid4().hex[:8]}"
    for rel, data in files.items():
        path = tmp / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    os.rename(tmp, target)
    return target


def scorer_folders(settings, cluster_gpus: float) -> dict:
    """``{kind: folder}`` for the sweep's dataset, trained with the preset's settings if needed."""
    from scorers.spec import TrainSpec
    from scorers.store import ensure_scorer, is_complete, scorer_dir_for

    if settings.scorers_dir:
        root = Path(settings.scorers_dir)
        dirs = {kind: root / kind for kind in KINDS}
        missing = [str(p) for p in dirs.values() if not (p / "metadata.json").is_file()]
        if missing:
            raise FileNotFoundError(
                f"--scorers {root}: no scorer folder at {', '.join(missing)} (expected "
                f"DIR/inception and DIR/vit, as written by scorers/finetune.py --out)")
        return dirs
    dirs = {}
    for kind in KINDS:
        spec = getattr(settings.preset_obj, kind)
        kwargs = dict(epochs=spec.epochs, subset=spec.subset, eval_subset=spec.eval_subset,
                      seed=settings.seed)
        target = scorer_dir_for(TrainSpec(settings.dataset, kind, **kwargs).resolved())
        if is_complete(target):
            log.info("scorer %s: reusing %s", kind, target)
            dirs[kind] = target
        elif cluster_gpus >= 1:
            import ray

            log.info("scorer %s: fine-tuning on a GPU worker (%s)", kind, spec)
            task = ray.remote(_finetune_and_pack).options(num_gpus=1, num_cpus=1)
            dirs[kind] = _unpack(ray.get(task.remote(settings.dataset, kind, kwargs)), target)
        else:
            log.info("scorer %s: fine-tuning here (%s)", kind, spec)
            dirs[kind] = ensure_scorer(settings.dataset, kind, data_dir=settings.data_dir,
                                       **kwargs)
    return dirs


def actor_cpus(wanted: float) -> float:
    """CPUs to reserve for each scorer actor on this (driver) node: ``wanted``, or 0 on a node
    that cannot hold all of them (a cluster head kept free of trials offers no CPUs)."""
    import ray

    here = ray.get_runtime_context().get_node_id()
    for node in ray.nodes():
        if node.get("NodeID") == here:
            return wanted if node.get("Resources", {}).get("CPU", 0) >= len(KINDS) * wanted else 0.0
    return wanted
