"""Dataset parsing, checksum verification, search order, subsetting and the download path."""
import gzip
import hashlib
import shutil

import numpy as np
import pytest

from trainables import datasets as ds
from trainables.datasets import DatasetError, load_dataset, parse_idx, stratified_subset


def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_parse_idx_hand_made():
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    out = parse_idx(_idx(arr))
    assert out.shape == (2, 3, 4) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, arr)
    with pytest.raises(DatasetError, match="payload"):
        parse_idx(_idx(arr)[:-1])
    with pytest.raises(DatasetError, match="magic"):
        parse_idx(b"\x01\x00\x08\x01" + b"\x00" * 8)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_datasets_load_and_verify(name, data_dir):
    d = load_dataset(name, data_dir, allow_download=False)
    assert d.train.images.shape == (60000, 28, 28) and d.test.images.shape == (10000, 28, 28)
    assert d.train.images.dtype == np.uint8 and d.train.labels.max() == 9
    assert np.bincount(d.test.labels).min() >= 800
    assert d.checksums == ds.CHECKSUMS[name]


def _copy_dataset(src, dst):
    dst.mkdir(parents=True)
    for f in src.iterdir():
        shutil.copy(f, dst / f.name)
    return dst


def test_altered_file_is_refused_with_both_checksums(tmp_path, data_dir):
    folder = _copy_dataset(data_dir / "mnist", tmp_path / "mnist")
    target = folder / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(target.read_bytes()))
    raw[100] ^= 0xFF  # one label changed: still a valid IDX file, wrong data
    target.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist", tmp_path, allow_download=False)
    msg = str(err.value)
    assert str(target) in msg
    assert ds.CHECKSUMS["mnist"]["t10k-labels-idx1-ubyte"] in msg
    assert hashlib.md5(bytes(raw)).hexdigest() in msg
    assert "--data-dir" in msg  # says how to get good files


def test_truncated_gzip_is_refused(tmp_path, data_dir):
    folder = _copy_dataset(data_dir / "mnist", tmp_path / "mnist")
    target = folder / "train-labels-idx1-ubyte.gz"
    target.write_bytes(target.read_bytes()[:5000])
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte.gz.*(truncated|corrupt)"):
        load_dataset("mnist", tmp_path, allow_download=False)


def test_missing_files_name_every_place_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("GENSWEEP_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DatasetError) as err:
        load_dataset("mnist", tmp_path / "nowhere", allow_download=False)
    assert str(tmp_path / "nowhere") in str(err.value)
    assert str(tmp_path / "cache" / "datasets") in str(err.value)


def test_partial_folder_is_an_error_not_a_fallthrough(tmp_path, data_dir):
    folder = _copy_dataset(data_dir / "mnist", tmp_path / "mnist")
    (folder / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match="missing t10k-images-idx3-ubyte"):
        load_dataset("mnist", tmp_path, allow_download=False)


def test_search_order_env_then_cache(tmp_path, monkeypatch, data_dir):
    monkeypatch.setenv("GENSWEEP_CACHE_DIR", str(tmp_path / "cache"))
    _copy_dataset(data_dir / "mnist", tmp_path / "cache" / "datasets" / "mnist")
    monkeypatch.delenv("GENSWEEP_DATA_DIR")
    assert ds.locate("mnist", allow_download=False) == tmp_path / "cache" / "datasets" / "mnist"
    monkeypatch.setenv("GENSWEEP_DATA_DIR", str(data_dir))
    assert ds.locate("mnist", allow_download=False) == data_dir / "mnist"
    dirs = ds.candidate_dirs("fashion-mnist")
    assert dirs[-1] == ds.SYSTEM_DIRS["fashion-mnist"][0]


def test_download_from_a_mirror_verifies_then_caches(tmp_path, monkeypatch, data_dir):
    # A file:// mirror stands in for the public ones: same code path, no network.
    monkeypatch.setenv("GENSWEEP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("GENSWEEP_DATA_DIR")
    monkeypatch.delenv("GENSWEEP_NO_DOWNLOAD")
    mirror = (data_dir / "fashion-mnist").as_uri() + "/"
    monkeypatch.setitem(ds.MIRRORS, "fashion-mnist", ("file:///nonexistent/", mirror))
    monkeypatch.setitem(ds.SYSTEM_DIRS, "fashion-mnist", ())
    d = load_dataset("fashion-mnist", subset=100)
    cached = tmp_path / "cache" / "datasets" / "fashion-mnist"
    assert d.source == cached and len(list(cached.glob("*.gz"))) == 4
    assert not list(cached.glob("*.part"))


def test_download_of_bad_bytes_leaves_nothing(tmp_path, data_dir):
    bad = tmp_path / "mirror"
    bad.mkdir()
    for f in (data_dir / "mnist").iterdir():
        shutil.copy(f, bad / f.name)
    (bad / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00" * 100))
    target = tmp_path / "dl"
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte"):
        ds.download("mnist", target, mirrors=(bad.as_uri() + "/",))
    assert not (target / "train-labels-idx1-ubyte.gz").exists()
    assert not list(target.glob("*.part"))


def test_stratified_subset_is_balanced_and_seeded(data_dir):
    d = load_dataset("mnist", data_dir, allow_download=False)
    x1, y1 = stratified_subset(d.train.images, d.train.labels, 1000, seed=3)
    x2, y2 = stratified_subset(d.train.images, d.train.labels, 1000, seed=3)
    x3, _ = stratified_subset(d.train.images, d.train.labels, 1000, seed=4)
    assert len(y1) == 1000
    np.testing.assert_array_equal(x1, x2)
    assert not np.array_equal(x1, x3)
    full = np.bincount(d.train.labels) / len(d.train.labels)
    assert np.abs(np.bincount(y1) / 1000 - full).max() < 0.002
    with pytest.raises(ValueError, match="positive"):
        stratified_subset(d.train.images, d.train.labels, 0)
