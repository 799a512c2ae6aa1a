"""The formats a synthetic dataset is exported in, for the training code that reads it.

* ``npz``: ``images`` uint8 (N, 28, 28), ``labels`` uint8 (N,) for labelled sets (and
  ``sources`` for reconstructions); numpy reads it without pickle.
* ``imagefolder``: a folder with one sub-folder per class (``0`` .. ``9``; ``unlabelled``
  for an unlabelled set) of 8-bit grayscale PNGs, the layout torchvision's ``ImageFolder``
  reads.
* ``parquet``: one row per image, an ``image`` column (``{"bytes": PNG, "path": None}``) and
  a ``label`` column, with the Hugging Face ``datasets`` features in the schema's metadata,
  so ``load_dataset("parquet", data_files=...)`` gives ``Image`` and ``ClassLabel`` columns.

Every writer writes into the temporary path it is given; ``sweeps.synthesize`` renames it
into place, so an export is never half replaced.
"""
from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np

FORMATS = ("npz", "imagefolder", "parquet")
SUFFIX = {"npz": ".npz", "imagefolder": "", "parquet": ".parquet"}
N_CLASSES = 10


def check_out(out: Path, fmt: str) -> None:
    """ValueError unless ``out`` names what ``fmt`` writes (FILE.npz, a folder, FILE.parquet)."""
    want = SUFFIX[fmt]
    if out.suffix != want:
        what = f"a FILE{want}" if want else "a folder path without a suffix"
        raise ValueError(f"--out {out}: expected {what} for --format {fmt}")


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image, mode="L").save(buf, format="PNG")
    return buf.getvalue()


def write_npz(tmp: Path, arrays: dict) -> None:
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def write_imagefolder(tmp: Path, arrays: dict) -> None:
    images, labels = arrays["images"], arrays.get("labels")
    tmp.mkdir(parents=True)
    folders = ([str(c) for c in labels] if labels is not None else ["unlabelled"] * len(images))
    for name in sorted(set(folders)):
        (tmp / name).mkdir()
    width = len(str(len(images)))
    for i, (image, folder) in enumerate(zip(images, folders)):
        (tmp / folder / f"{i:0{width}d}.png").write_bytes(png_bytes(image))


def write_parquet(tmp: Path, arrays: dict) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    images, labels = arrays["images"], arrays.get("labels")
    image = pa.array([{"bytes": png_bytes(x), "path": None} for x in images],
                     type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    columns = {"image": image}
    features = {"image": {"_type": "Image"}}
    if labels is not None:
        columns["label"] = pa.array(labels.astype(np.int64))
        features["label"] = {"_type": "ClassLabel",
                             "names": [str(c) for c in range(N_CLASSES)]}
    if "sources" in arrays:
        columns["source"] = pa.array(arrays["sources"].astype(np.int64))
        features["source"] = {"_type": "Value", "dtype": "int64"}
    table = pa.table(columns).replace_schema_metadata(
        {"huggingface": json.dumps({"info": {"features": features}})})
    pq.write_table(table, tmp)


WRITERS = {"npz": write_npz, "imagefolder": write_imagefolder, "parquet": write_parquet}


def replace(tmp: Path, out: Path) -> None:
    """Put ``tmp`` (a file or a folder) where ``out`` is, the old one gone only once the new
    one is in place."""
    if tmp.is_dir() and out.exists():
        old = out.with_name(f".{out.name}.{os.getpid()}.old")
        os.replace(out, old)
        os.replace(tmp, out)
        remove(old)
        return
    os.replace(tmp, out)


def remove(tmp: Path) -> None:
    if tmp.is_dir():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)
