"""Make sure a sweep's two scorers exist on the driver's node before any trial starts.

Scorer folders live in the driver's cache, and the shared actors run on the driver's node, so
they need no shared filesystem. The store (``scorers.scorer_cache.ensure_spec``) builds a missing
one under its lock and renames it into place; on a cluster with GPUs the fine-tune itself
runs as a Ray task on a GPU worker (``scorers.gpu_build``), elsewhere in the driver process.
``--scorers DIR`` skips all of this.
"""
from __future__ import annotations

from pathlib import Path

from scorers.gpu_build import on_gpu_worker
from scorers.scorer_cache import ensure_spec, is_complete, scorer_dir_for
from scorers.spec import KINDS
from sweeps.sweep_record import log_phase


def scorer_folders(plan, cluster_gpus: float) -> dict:
    """``{kind: folder}`` of the plan's scorers, fine-tuned by the store if not cached."""
    if plan.request.scorers_dir:
        root = Path(plan.request.scorers_dir)
        dirs = {kind: root / kind for kind in KINDS}
        missing = [str(p) for p in dirs.values() if not (p / "metadata.json").is_file()]
        if missing:
            raise FileNotFoundError(
                f"--scorers {root}: no scorer folder at {', '.join(missing)} (expected "
                f"DIR/inception and DIR/vit, as written by scorers/finetune_cli.py --out)")
        return dirs
    builder = None
    if cluster_gpus >= 1:
        builder = on_gpu_worker(num_gpus=1, num_cpus=1)

    dirs = {}
    for kind, spec in plan.scorer_specs.items():
        cached = is_complete(scorer_dir_for(spec))
        if not cached:
            log_phase(plan.sweep_dir, "scorer-start", kind=kind)
        dirs[kind] = ensure_spec(spec, data_dir=plan.request.data_dir, builder=builder)
        if not cached:
            log_phase(plan.sweep_dir, "scorer-done", kind=kind)
    return dirs
