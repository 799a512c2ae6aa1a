"""MNIST and Fashion-MNIST from the standard gzip IDX files, verified byte for byte.

Every file is checked against the MD5 of its *decompressed* bytes (other distributions
recompress the same bytes with other gzip headers), so a truncated or altered file is
refused before a single image reaches a model.

Where files are looked for, in order:
  1. ``data_dir`` argument / ``--data-dir`` / ``GENSWEEP_DATA_DIR``
  2. the user cache (``$GENSWEEP_CACHE_DIR`` or ``~/.cache/gensweep``) ``/datasets``
  3. ``/usr/share/datasets/fashion-mnist`` (Debian's ``dataset-fashion-mnist``)
  4. a download from the public mirrors into the cache (users with internet)
A folder may hold the files directly or in a sub-folder named after the dataset.
"""
from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# MD5 of the decompressed IDX bytes (shared/data/README.md).
CHECKSUMS = {
    "mnist": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}
DATASETS = tuple(CHECKSUMS)

MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
    ),
}
SYSTEM_DIRS = {"fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),)}


class DatasetError(RuntimeError):
    """A dataset file is missing, truncated or altered; the message says which and what to do."""


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # (N, 28, 28) uint8
    labels: np.ndarray  # (N,) uint8

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Dataset:
    name: str
    train: Split
    test: Split
    source: Path
    checksums: dict = field(default_factory=dict)


def cache_dir() -> Path:
    """Root of the user cache shared by datasets and scorers."""
    root = os.environ.get("GENSWEEP_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "gensweep")
    return Path(root)


def _check_name(name: str) -> None:
    if name not in CHECKSUMS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def candidate_dirs(name: str, data_dir: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for ``name``'s files, in order (download target last)."""
    _check_name(name)
    roots: list[Path] = []
    explicit = data_dir or os.environ.get("GENSWEEP_DATA_DIR")
    if explicit:
        roots.append(Path(explicit).expanduser())
    roots.append(cache_dir() / "datasets")
    dirs: list[Path] = []
    for root in roots:
        dirs += [root / name, root]
    dirs += list(SYSTEM_DIRS.get(name, ()))
    return dirs


def _find(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        # A truncated gzip stream raises here; report it as the corrupt file it is.
        raise DatasetError(f"{path}: cannot be read ({exc}); the file is truncated or corrupt. "
                           f"Delete it and get a fresh copy.") from exc


def _how_to_get(name: str) -> str:
    return (f"Put the four IDX .gz files of {name} in a folder and pass --data-dir DIR "
            f"(or set GENSWEEP_DATA_DIR), or let gensweep download them from "
            f"{MIRRORS[name][0]} on a machine with internet.")


def verified_bytes(name: str, path: Path) -> bytes:
    """Decompressed bytes of ``path``, or DatasetError if their MD5 is not the published one."""
    stem = path.name[:-3] if path.name.endswith(".gz") else path.name
    expected = CHECKSUMS[name][stem]
    data = _read_bytes(path)
    actual = hashlib.md5(data).hexdigest()
    if actual != expected:
        raise DatasetError(
            f"{path}: checksum mismatch for {name} {stem}: expected MD5 {expected} of the "
            f"decompressed bytes, got {actual} ({len(data)} bytes). The file is truncated or "
            f"altered; delete it and get a fresh copy. {_how_to_get(name)}")
    return data


def parse_idx(data: bytes) -> np.ndarray:
    """Parse an IDX (uint8) byte string into an array of the shape its header declares."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DatasetError("not an IDX file (bad magic number)")
    if data[2] != 0x08:
        raise DatasetError(f"IDX type 0x{data[2]:02x} not supported (expected unsigned byte 0x08)")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(data) - header != int(np.prod(shape)):
        raise DatasetError(f"IDX payload is {len(data) - header} bytes, header says {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape).copy()


def download(name: str, target: Path, mirrors: tuple[str, ...] | None = None) -> Path:
    """Fetch the four files into ``target``, each verified before it is moved into place."""
    _check_name(name)
    target.mkdir(parents=True, exist_ok=True)
    for stem in CHECKSUMS[name]:
        dest = target / f"{stem}.gz"
        if dest.is_file():
            continue
        errors = []
        for mirror in mirrors or MIRRORS[name]:
            url = mirror + f"{stem}.gz"
            log.info("downloading %s", url)
            fd, tmp = tempfile.mkstemp(dir=target, suffix=".part")
            os.close(fd)
            try:
                with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
                    shutil.copyfileobj(resp, out)
                _verify_download(name, stem, Path(tmp))
                os.replace(tmp, dest)
                break
            except (OSError, EOFError, zlib.error, DatasetError) as exc:
                # EOFError / zlib.error: the transfer broke off inside the gzip stream
                errors.append(f"{url}: {exc} (an interrupted or damaged transfer)")
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        else:
            raise DatasetError(f"could not download {name} {stem}: " + "; ".join(errors))
    return target


def _verify_download(name: str, stem: str, tmp: Path) -> None:
    with gzip.open(tmp, "rb") as fh:
        data = fh.read()
    actual = hashlib.md5(data).hexdigest()
    if actual != CHECKSUMS[name][stem]:
        raise DatasetError(f"downloaded {stem} has MD5 {actual}, expected {CHECKSUMS[name][stem]}")


def locate(name: str, data_dir=None, allow_download: bool = True) -> Path:
    """The first folder holding all four files of ``name`` (downloading if allowed)."""
    searched = candidate_dirs(name, data_dir)
    for folder in searched:
        found = [_find(folder, stem) for stem in CHECKSUMS[name]]
        if all(found):
            return folder
        if any(found):
            missing = [s for s, f in zip(CHECKSUMS[name], found) if f is None]
            raise DatasetError(f"{folder} holds only part of {name}: missing {', '.join(missing)}. "
                               + _how_to_get(name))
    if allow_download and os.environ.get("GENSWEEP_NO_DOWNLOAD") != "1":
        target = cache_dir() / "datasets" / name
        # GENSWEEP_MIRRORS: comma-separated base URLs to fetch from instead (a local copy)
        mirrors = tuple(m.strip() for m in os.environ.get("GENSWEEP_MIRRORS", "").split(",")
                        if m.strip()) or None
        try:
            return download(name, target, mirrors)
        except DatasetError as exc:
            raise DatasetError(f"{name} not found in {', '.join(map(str, searched))}, and {exc}. "
                               + _how_to_get(name)) from exc
    raise DatasetError(f"{name} not found; looked in {', '.join(map(str, searched))}. "
                       + _how_to_get(name))


def stratified_index(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of ``n`` examples with the classes in the same proportions as
    ``labels``, seeded (all of them if ``n`` covers the split)."""
    if n <= 0:
        raise ValueError(f"subset must be positive, got {n}")
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts / counts.sum() * n).astype(int)
    # Hand the rounding remainder to the classes with the largest fractional parts.
    remainder = n - quota.sum()
    frac = counts / counts.sum() * n - quota
    quota[np.argsort(-frac)[:remainder]] += 1
    chosen = np.concatenate([
        rng.choice(np.flatnonzero(labels == c), size=q, replace=False)
        for c, q in zip(classes, quota)])
    chosen.sort()
    return chosen


def stratified_subset(images: np.ndarray, labels: np.ndarray, n: int, seed: int = 0):
    """``n`` examples with the classes in the same proportions as the full split, seeded."""
    if n >= len(labels) > 0:
        return images, labels
    chosen = stratified_index(labels, n, seed)
    return images[chosen], labels[chosen]


def load_dataset(name: str, data_dir=None, subset: int | None = None, seed: int = 0,
                 test_subset: int | None = None, allow_download: bool = True) -> Dataset:
    """Load and verify ``name``; ``subset`` / ``test_subset`` take stratified seeded samples."""
    folder = locate(name, data_dir, allow_download)
    arrays = {}
    for key, stem in FILES.items():
        arrays[key] = parse_idx(verified_bytes(name, _find(folder, stem)))
    train = Split(arrays["train_images"], arrays["train_labels"])
    test = Split(arrays["test_images"], arrays["test_labels"])
    if len(train.images) != len(train.labels) or len(test.images) != len(test.labels):
        raise DatasetError(f"{folder}: image and label counts differ")
    if subset:
        train = Split(*stratified_subset(train.images, train.labels, subset, seed))
    if test_subset:
        test = Split(*stratified_subset(test.images, test.labels, test_subset, seed))
    log.info("%s from %s: %d train, %d test", name, folder, len(train), len(test))
    return Dataset(name, train, test, folder, dict(CHECKSUMS[name]))
