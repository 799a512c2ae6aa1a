"""Scorer folders and their cache: find, build atomically, reuse, load.

Layout: ``<cache_root>/<dataset>/<kind>/<spec-hash>/`` with ``cache_root`` defaulting to
``cache_dir()/"scorers"`` (``$GENSWEEP_CACHE_DIR`` or ``~/.cache/gensweep``). The spec
hash covers everything that determines the weights (``TrainSpec`` after defaults, the
content of a local init, the architecture constants), so asking twice for the same
scorer trains once. A folder is built under a temporary name in the same directory and
renamed into place only when ``metadata.json`` (written last) exists, so an interrupted
fine-tune never leaves a folder that looks valid. A lock file serialises concurrent
builders of the same spec: the second one waits and then reuses the first one's folder.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import uuid
from pathlib import Path

from scorers import degrade
from scorers.classifier import Scorer
from scorers.finetuning import METADATA, read_metadata, train_scorer
from scorers.spec import TrainSpec, backend
from trainables.datasets import cache_dir

log = logging.getLogger(__name__)


def default_root() -> Path:
    return cache_dir() / "scorers"


def _hash_extra(kind: str) -> dict:
    """Architecture/training constants of ``kind`` that are not in the spec itself."""
    impl = backend(kind)
    if kind == "vit":
        return {"scratch_config": impl.SCRATCH_CONFIG, "weight_decay": impl.WEIGHT_DECAY,
                "warmup": impl.WARMUP_FRACTION, "grad_clip": impl.GRAD_CLIP}
    return {"architecture": impl.ARCHITECTURE, "preprocessing": impl.PREPROCESSING}


def spec_hash(spec: TrainSpec) -> str:
    extra = _hash_extra(spec.kind)
    augment = spec.resolved().augment
    if augment != "none":
        extra["degrade"] = degrade.settings(augment)
    return spec.spec_hash(extra=extra)


def scorer_dir_for(spec: TrainSpec, cache_root=None) -> Path:
    """Where the cache keeps the scorer ``spec`` describes (it may not exist yet)."""
    spec = spec.resolved()
    root = Path(cache_root) if cache_root is not None else default_root()
    return root / spec.dataset / spec.kind / spec_hash(spec)


def is_complete(folder) -> bool:
    try:
        read_metadata(folder)
        return True
    except ValueError:
        return False


@contextlib.contextmanager
def _lock(target: Path):
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _move_into_place(tmp: Path, target: Path) -> None:
    """Rename the finished ``tmp`` to ``target``, which must not exist as a folder then: an
    old ``target`` (``force``, or a damaged folder) is first moved aside, then deleted.
    Only the lock holder calls this, and no builder ever writes ``target`` itself."""
    old = None
    if target.exists():
        old = target.parent / f".old-{target.name}-{uuid.uuid4().hex[:8]}"
        os.rename(target, old)
    os.rename(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build_here(spec: TrainSpec, folder: Path, *, spec_hash: str, data_dir=None,
               progress: bool = True) -> None:
    """The default builder: fine-tune ``spec`` in this process into the new ``folder``."""
    train_scorer(spec, folder, spec_hash=spec_hash, data_dir=data_dir, progress=progress)


def ensure_scorer(dataset: str, kind: str, *, init: str = "scratch", epochs: int | None = None,
                  subset: int | None = None, batch_size: int | None = None,
                  lr: float | None = None, eval_subset: int | None = None,
                  schedule: str | None = None, augment: str | None = None, seed: int = 0,
                  **options) -> Path:
    """:func:`ensure_spec` for the :class:`TrainSpec` these settings describe."""
    spec = TrainSpec(dataset, kind, init=init, epochs=epochs, subset=subset,
                     batch_size=batch_size, lr=lr, eval_subset=eval_subset, schedule=schedule,
                     augment=augment, seed=seed)
    return ensure_spec(spec, **options)


def ensure_spec(spec: TrainSpec, *, data_dir=None, cache_root=None, force: bool = False,
                folder=None, progress: bool = True, builder=None) -> Path:
    """The folder of the scorer ``spec`` describes, fine-tuning it only if needed.

    The store owns the build: the lock that makes concurrent callers (other sweeps too)
    build a spec once, the temporary folder the ``builder`` fills, and the atomic rename
    into place. ``builder(spec, tmp, spec_hash=..., data_dir=..., progress=...)`` decides
    only where the fine-tune runs: :func:`build_here` (default) or, for instance,
    ``scorers.gpu_build.on_gpu_worker()``; it must write a complete folder at ``tmp``.
    ``folder`` puts the scorer at that exact path instead of the cache layout (the CLI's
    ``--out``). ``force`` re-trains even if a matching folder exists. An init that cannot
    be loaded raises ``ScorerInitError`` before any training.
    """
    spec = spec.resolved()
    kind = spec.kind
    backend(kind).check_init(spec.init)
    digest = spec_hash(spec)
    if folder is not None:
        target = Path(folder).expanduser().resolve()
        _check_explicit_target(target, digest, force)
    else:
        target = scorer_dir_for(spec, cache_root)
    if not force and is_complete(target):
        log.info("reusing %s scorer %s", kind, target)
        return target
    with _lock(target):
        if not force and is_complete(target):  # another process built it while we waited
            log.info("reusing %s scorer %s (built concurrently)", kind, target)
            return target
        # Holding the lock, no live process is building this spec: leftovers are from
        # killed runs and go.
        for stale in [*target.parent.glob(f".tmp-{target.name}-*"),
                      *target.parent.glob(f".old-{target.name}-*")]:
            log.info("removing %s left by an interrupted fine-tune", stale)
            shutil.rmtree(stale, ignore_errors=True)
        tmp = target.parent / f".tmp-{target.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            log.info("fine-tuning %s scorer for %s into %s", kind, spec.dataset, target)
            (builder or build_here)(spec, tmp, spec_hash=digest, data_dir=data_dir,
                                    progress=progress)
            read_metadata(tmp)  # a builder that wrote half a folder fails here, not later
            _move_into_place(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    log.info("%s scorer written to %s", kind, target)
    return target


def _check_explicit_target(target: Path, digest: str, force: bool) -> None:
    """Never overwrite a folder that is not a scorer, nor a different scorer without force."""
    if not target.exists():
        return
    if not target.is_dir():
        raise ValueError(f"--out {target} exists and is not a directory")
    if (target / METADATA).is_file():
        meta = json.loads((target / METADATA).read_text())
        if meta.get("spec_hash") != digest and not force:
            raise ValueError(f"--out {target} holds a different scorer (spec {meta.get('spec')}); "
                             f"pass --force to replace it or choose another --out")
    elif any(target.iterdir()):
        raise ValueError(f"--out {target} exists, is not empty and is not a scorer folder; "
                         f"refusing to replace it (choose an empty or new folder)")


def load_scorer(path, data_dir=None):
    """Load the scorer folder at ``path``; see ``scorers.classifier.Scorer``."""
    return Scorer.load(path, data_dir=data_dir)
