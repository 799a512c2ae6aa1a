"""The sweep's real-data ceiling: every score of real test images, computed once per input.

The ceiling (IS / TS, FID, KID, ..., the CAS of real images, the memorisation checks of
test images against the trials' training images) is a pure function of the two scorer
builds, the sample counts, the trials' training images, the dataset and the code that
scores. On the 2-core CPU it costs 37-47 s per sweep (docs/results-cpu.md): the CAS CNN
trained on real images, 5,000 test images against 60,000 training images in pixels, the
training images through the ViT. A sweep on cached scorers would pay that again for the same
numbers, so the result is kept as JSON (nothing that can run code) in
``cache_dir()/ceilings/<dataset>/<key>.json``. The key hashes every input: each scorer's
``metadata.json`` (a rebuilt scorer has a new one: its creation time, accuracy, dataset
checksums), the sample counts, the training subset and seed, the source of the modules that
compute a ceiling, and the versions of the numeric libraries. Anything else changed means a
new key, and the ceiling is computed afresh.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import uuid
from pathlib import Path

from scorers.actor import actor_scorers
from scorers.scorecard import TrainingImages, scorecard
from trainables.datasets import cache_dir

log = logging.getLogger(__name__)

FORMAT = 1
# Everything the ceiling's numbers come from in this repository: the scorers package (the
# scorecard, the score maths, the actors' predictions, CAS, memorisation), the dataset
# loader, where and in which precision the actors predict (device, speed), and this module.
_CODE = ("scorers", "trainables/datasets.py", "trainables/device.py", "trainables/speed.py",
         "sweeps/ceiling.py")
_LIBRARIES = ("numpy", "torch", "tensorflow", "keras", "transformers", "scipy", "scikit-learn")


def code_digest() -> str:
    """sha256 over the source files the ceiling is computed by."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for entry in _CODE:
        path = root / entry
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for file in files:
            digest.update(str(file.relative_to(root)).encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def _versions() -> dict:
    from importlib import metadata

    out = {}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def ceiling_inputs(scorer_dirs: dict, dataset: str, ns, training: TrainingImages,
                   scorer_gpus: bool = False) -> dict:
    """What the ceiling depends on, as JSON-able values (its cache key is their hash).
    ``scorer_gpus``: whether the actors were given GPUs (a GPU predicts in other precision
    and order than a CPU, so the two get separate entries)."""
    scorers = {kind: hashlib.sha256((Path(folder) / "metadata.json").read_bytes()).hexdigest()
               for kind, folder in sorted(scorer_dirs.items())}
    return {"format": FORMAT, "dataset": dataset, "ns": [int(n) for n in ns],
            "train": training.for_scorer(),
            "scorers": scorers, "scorer_gpus": bool(scorer_gpus), "code": code_digest(),
            "libraries": _versions()}


def cache_path(inputs: dict, root=None) -> Path:
    if root is None:
        root = cache_dir() / "ceilings"
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:20]
    return Path(root) / inputs["dataset"] / f"{key}.json"


def read_cached(path: Path, inputs: dict) -> dict | None:
    """The cached ceiling for ``inputs``, or None (absent, unreadable, or for other inputs)."""
    if not path.is_file():
        return None
    try:
        entry = json.loads(path.read_text())
        scores = entry["ceiling"]
        ok = entry.get("inputs") == inputs and isinstance(scores, dict) and all(
            isinstance(v, (int, float)) for v in scores.values())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("ignoring the unreadable cached ceiling %s (%s); computing it again",
                    path, exc)
        return None
    if not ok:
        log.warning("ignoring the cached ceiling %s: it was written for other inputs", path)
        return None
    return {k: float(v) for k, v in scores.items()}


def write_cached(path: Path, inputs: dict, scores: dict) -> None:
    """Write atomically (a temporary file in the same folder, then a rename), so a reader
    never sees half a file and two sweeps writing the same key leave one whole file."""
    kept = {k: float(v) for k, v in scores.items() if isinstance(v, (int, float))
            and math.isfinite(float(v))}
    if len(kept) != len(scores):
        log.info("not caching a ceiling with non-numeric or non-finite values")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}.json"
    try:
        tmp.write_text(json.dumps({"inputs": inputs, "ceiling": kept}, indent=1,
                                  sort_keys=True))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def compute_ceiling(plan, training: TrainingImages) -> dict:
    """The scorecard of the first n images of the real ceiling half, on the sweep's actors
    (test images were never trained on: their memorisation scores are what fresh draws get)."""
    scorers = actor_scorers(plan.actor_names, plan.namespace, plan.request.dataset)
    return scorecard(None, dataset=plan.request.dataset, ns=plan.ns, scorers=scorers,
                     training=training)


def real_ceiling(plan, scorer_dirs: dict,
                 recorded: dict | None = None) -> tuple[dict, str, dict]:
    """(the sweep's real-data ceiling, where it came from: "sweep.json", "cache" or
    "computed", its inputs). ``recorded``: what a resumed sweep saved ({"ceiling",
    "inputs"}), used while its inputs still hold (not after its scorers were rebuilt)."""
    c = plan.trial_constants
    training = TrainingImages(c.get("subset"), c.get("seed", 0), c.get("data_dir"))
    inputs = ceiling_inputs(scorer_dirs, plan.request.dataset, plan.ns, training,
                            plan.actor_gpus > 0)
    if recorded and recorded.get("ceiling"):
        if recorded.get("inputs") == inputs:
            return dict(recorded["ceiling"]), "sweep.json", inputs
        log.warning("the real-data ceiling this sweep recorded was measured with other "
                    "scorers or scoring code; measuring it again")
    path = cache_path(inputs)
    cached = read_cached(path, inputs)
    if cached is not None:
        log.info("real-data ceiling: from the cache (%s)", path)
        return cached, "cache", inputs
    scores = compute_ceiling(plan, training)
    try:
        write_cached(path, inputs, scores)
    except OSError as exc:  # a read-only cache costs the next sweep 40 s, not this one
        log.warning("could not cache the real-data ceiling in %s: %s", path, exc)
    return scores, "computed", inputs
