"""What a scorer is: the typed fine-tuning spec, its defaults, and its content hash.

The spec hash names the cache folder, so two calls asking for the same scorer (after
defaults are filled in) share one folder, and any change that could change the weights
(dataset, init, epochs, subset, batch size, learning rate, evaluation size, seed, the
architecture and preprocessing version) gives a new folder. Nothing here imports a
deep-learning framework: the CLIs validate arguments before paying for TensorFlow/torch.
"""
from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from scorers.degrade import AUGMENTS
from trainables.datasets import DATASETS

KINDS = ("inception", "vit")
N_CLASSES = 10
TEST_SET_SIZE = 10_000
# Bumped whenever training, preprocessing or the folder layout changes meaning, so older
# cache folders are never mistaken for what the current code would build.
FORMAT_VERSION = 1

# Inception: the paper's fine-tuning settings (section 4.2.3). ViT: same batch/epochs; lr 1e-3
# with AdamW + warm-up/cosine is the usual from-scratch recipe for small ViTs (docs/scorers.md).
DEFAULTS = {
    "inception": {"epochs": 20, "batch_size": 128, "lr": 1e-3, "schedule": "constant",
                  "augment": "none"},
    "vit": {"epochs": 20, "batch_size": 128, "lr": 1e-3, "schedule": "warmup-cosine",
            "augment": "none"},
}
# Learning-rate schedules over the whole fine-tune: constant (the paper's Adam), or linear
# warm-up over the first 5% of steps then cosine decay to 0 (what a short budget needs).
SCHEDULES = ("constant", "warmup-cosine")
INIT_HELP = {
    "inception": ("'scratch' (random init; works offline), 'imagenet' (Keras ImageNet weights, "
                  "downloaded once into ~/.keras/models; needs internet), or the path of a local "
                  "Keras notop weights file (*.h5) such as "
                  "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    "vit": ("'scratch' (small 28x28 ViT, random init; works offline), a HuggingFace model id "
            "such as google/vit-base-patch16-224-in21k (needs internet or the HF cache; "
            "safetensors weights only), or a local directory holding config.json and "
            "model.safetensors of a ViT"),
}


class ScorerInitError(ValueError):
    """The requested ``init`` cannot be loaded; the message lists the inits that work."""


def init_error(kind: str, init: str, why: str) -> ScorerInitError:
    return ScorerInitError(f"--init {init!r} for the {kind} scorer cannot be used: {why}. "
                           f"Alternatives: {INIT_HELP[kind]}.")


def _positive_int(name: str, value, allow_none: bool = True):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return value


@dataclass(frozen=True)
class TrainSpec:
    """Everything that determines a scorer's weights. ``None`` fields take the kind's default."""

    dataset: str
    kind: str
    init: str = "scratch"
    epochs: int | None = None
    subset: int | None = None  # training images (stratified, seeded); None = all 60,000
    batch_size: int | None = None
    lr: float | None = None
    eval_subset: int | None = None  # test images for accuracy + real features; None = 10,000
    seed: int = 0
    schedule: str | None = None  # one of SCHEDULES; None = the kind's default
    augment: str | None = None  # "degrade": blurred / dimmed copies (scorers.degrade)

    def __post_init__(self) -> None:
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset {self.dataset!r} unknown; expected one of "
                             f"{', '.join(DATASETS)}")
        if self.kind not in KINDS:
            raise ValueError(f"scorer kind {self.kind!r} unknown; expected one of {', '.join(KINDS)}")
        if not isinstance(self.init, str) or not self.init.strip():
            raise init_error(self.kind, str(self.init), "it is empty")
        for name in ("epochs", "subset", "batch_size", "eval_subset"):
            _positive_int(name, getattr(self, name))
        if self.eval_subset is not None and self.eval_subset > TEST_SET_SIZE:
            raise ValueError(f"eval_subset must be at most {TEST_SET_SIZE} (the test set size); "
                             f"got {self.eval_subset}")
        if self.eval_subset is not None and self.eval_subset < 2:
            raise ValueError(f"eval_subset must be at least 2; got {self.eval_subset}")
        if self.lr is not None and (isinstance(self.lr, bool) or not isinstance(self.lr, (int, float))
                                    or not 0 < self.lr < 1):
            raise ValueError(f"lr must be a number in (0, 1); got {self.lr!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer; got {self.seed!r}")
        if self.augment is not None and self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTS)}; got "
                             f"{self.augment!r}")
        if self.schedule is not None and self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}; got "
                             f"{self.schedule!r}")

    def resolved(self) -> "TrainSpec":
        """The same spec with every default filled in (what the hash and metadata record)."""
        d = DEFAULTS[self.kind]
        return TrainSpec(
            dataset=self.dataset, kind=self.kind, init=normalise_init(self.init),
            epochs=self.epochs or d["epochs"], subset=self.subset,
            batch_size=self.batch_size or d["batch_size"],
            lr=float(self.lr if self.lr is not None else d["lr"]),
            eval_subset=None if self.eval_subset in (None, TEST_SET_SIZE) else self.eval_subset,
            seed=self.seed, schedule=self.schedule or d["schedule"],
            augment=self.augment or d["augment"])

    @property
    def test_images(self) -> int:
        return self.eval_subset or TEST_SET_SIZE

    def to_dict(self) -> dict:
        return asdict(self)

    def hash_dict(self) -> dict:
        """The resolved spec as hashed: a field added later is left out at its default, so
        folders built before it existed keep their hash and stay in use."""
        d = self.resolved().to_dict()
        for key in ("schedule", "augment"):
            if d[key] == DEFAULTS[self.kind][key]:
                del d[key]
        return d

    @classmethod
    def from_dict(cls, values: dict) -> "TrainSpec":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def spec_hash(self, extra: dict | None = None) -> str:
        """Hex digest naming the cache folder; ``extra`` adds architecture facts of the kind."""
        payload = {"format": FORMAT_VERSION, "spec": self.hash_dict(),
                   "init_digest": init_digest(self.init), "extra": extra or {}}
        return hashlib.sha256(canonical_json(payload).encode()).hexdigest()[:16]


def canonical_json(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def normalise_init(init: str) -> str:
    """Local paths become absolute (so the hash does not depend on the working directory)."""
    init = init.strip()
    if init in ("scratch", "imagenet"):
        return init
    path = Path(init).expanduser()
    if path.exists() or init.startswith((".", "/", "~")):
        return str(path.resolve())
    return init


def init_digest(init: str) -> str | None:
    """Content hash of a local init's weight files, so new weights at the same path
    give a new scorer; None for 'scratch', 'imagenet' and hub ids."""
    path = Path(normalise_init(init))
    if not path.is_absolute() or not path.exists():
        return None
    files = sorted(p for p in ([path] if path.is_file() else path.iterdir())
                   if p.is_file() and p.suffix in (".h5", ".safetensors", ".json"))
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(file_digest(f).encode())
    return h.hexdigest()


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def backend(kind: str):
    """The module implementing ``kind`` (imported on first use: it pulls in TF or torch lazily)."""
    if kind not in KINDS:
        raise ValueError(f"scorer kind {kind!r} unknown; expected one of {', '.join(KINDS)}")
    return importlib.import_module(f"scorers.{kind}")
