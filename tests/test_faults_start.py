"""Faults a sweep must refuse before anything starts: MLflow unreachable, a corrupt dataset,
unwritable or full storage, and crafted pickles in a scorer folder.

Each test injects one fault into a real sweep (real Ray, real MLflow, real SQLite Optuna,
the shared scorer actors, the smoke preset) and checks the documented outcome: no trial is
lost or duplicated, or the sweep stops early with a one-line error that names what is wrong.
docs/reliability.md lists the faults, the runs made and the measured recovery times; the
helpers are in tests/faultkit.py (GENSWEEP_FAULT_LOG=FILE records the times as JSON lines).

Faults covered elsewhere: bad CLI input (tests/test_sweeps_build.py), a pickled training
checkpoint (tests/test_trainables.py).
"""
import gzip
import hashlib
import pickle
import resource
import shutil
import signal

import faultkit as fk
import pytest

pytestmark = pytest.mark.slow


# ------------------------------------------------------- 5a. MLflow unreachable at start
def test_mlflow_unreachable_at_start_fails_fast(tmp_path):
    uri = f"http://127.0.0.1:{fk.free_port()}"  # nothing listens there
    storage = tmp_path / "sweep"
    r = fk.sweep(*fk.SMOKE, "--mlflow-uri", uri, "--storage", str(storage), timeout=180)
    fk.note("mlflow_unreachable_at_start", seconds=round(r.elapsed, 1))
    assert r.returncode == 1, r
    assert len(r.errors()) == 1 and uri in r.errors()[0] and "unreachable" in r.errors()[0], r
    assert "Traceback" not in r.stderr, r
    assert r.elapsed < 60, r
    assert "sweeps.scorer_setup" not in r.stderr  # no scorer was prepared, let alone trained
    fk.nothing_started(storage)


# ------------------------------------------------------- 6. corrupt dataset, sweep level
@pytest.mark.parametrize("damage", ["truncated", "altered"])
def test_corrupt_dataset_stops_the_sweep_before_any_trial(tmp_path, data_dir, damage):
    from trainables.datasets import CHECKSUMS

    folder = tmp_path / "data" / "mnist"
    shutil.copytree(data_dir / "mnist", folder)
    checks = []
    if damage == "truncated":
        target = folder / "train-images-idx3-ubyte.gz"
        blob = target.read_bytes()
        target.write_bytes(blob[: len(blob) // 2])
        checks.append(("truncated", "corrupt"))
    else:
        target = folder / "t10k-labels-idx1-ubyte.gz"
        raw = bytearray(gzip.decompress(target.read_bytes()))
        raw[100] ^= 0xFF  # one label changed: a valid IDX file with the wrong data
        target.write_bytes(gzip.compress(bytes(raw)))
        checks.append((CHECKSUMS["mnist"]["t10k-labels-idx1-ubyte"],))
        checks.append((hashlib.md5(bytes(raw)).hexdigest(),))
    storage = tmp_path / "sweep"
    r = fk.sweep(*fk.SMOKE, "--data-dir", str(tmp_path / "data"), "--storage", str(storage),
               timeout=180)
    fk.note(f"corrupt_dataset[{damage}]", seconds=round(r.elapsed, 1))
    assert r.returncode == 1, r
    assert len(r.errors()) == 1, r
    line = r.errors()[0]
    assert str(target) in line, line
    for alternatives in checks:
        assert any(a in line for a in alternatives), (alternatives, line)
    assert "Traceback" not in r.stderr and r.elapsed < 60, r
    assert "sweeps.scorer_setup" not in r.stderr
    fk.nothing_started(storage)


# ------------------------------------------------------- 8. unwritable storage, disk full
def test_storage_under_a_regular_file_is_refused(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("keep me")
    for storage in (blocker / "sweep", blocker):
        r = fk.sweep(*fk.SMOKE, "--storage", str(storage), timeout=180)
        fk.note("storage_not_a_folder", storage=storage.name, seconds=round(r.elapsed, 1))
        assert r.returncode == 1, r
        assert len(r.errors()) == 1, r
        line = r.errors()[0]
        assert f"storage folder {storage.resolve()} is not writable" in line, line
        assert "Traceback" not in r.stderr, r
    assert blocker.read_text() == "keep me"
    r = fk.sweep("--resume", "--storage", str(blocker / "sweep"), timeout=60)
    assert r.returncode == 2 and "holds no sweep to resume" in r.stderr, r


def _disk_full(limit_bytes: int):
    """``preexec_fn``: files larger than ``limit_bytes`` cannot be written (EFBIG), as on a
    full disk; SIGXFSZ is ignored so the write fails instead of killing the process."""

    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return limit


RUN_SWEEP_ON_FULL_DISK = """
import sys
from sweeps.request import SweepRequest
from sweeps.preflight import SweepError, preflight
try:
    preflight(SweepRequest(space="vae", preset="smoke", storage=sys.argv[1]))
except SweepError as exc:
    import ray
    print("ray started:", ray.is_initialized())
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(1)
"""


def test_full_disk_storage_is_refused_before_anything_starts(tmp_path):
    """``preflight`` checks the storage before Ray, MLflow or the scorers start."""
    from sweeps.preflight import check_writable

    storage = tmp_path / "sweep"
    r = fk.run([fk.PY, "-c", RUN_SWEEP_ON_FULL_DISK, str(storage)], timeout=120,
             preexec_fn=_disk_full(2048))
    fk.note("full_disk_run_sweep", seconds=round(r.elapsed, 1))
    assert r.returncode == 1, r
    assert len(r.errors()) == 1, r
    line = r.errors()[0]
    assert f"storage folder {storage.resolve()} is not writable" in line and "File too large" in line, line
    assert "ray started: False" in r.stdout, r
    fk.nothing_started(storage)
    # Space freed: the same folder works again and holds nothing a --resume would trust.
    check_writable(storage)
    assert [p.name for p in storage.iterdir()] in ([], [".write-test"])
    r = fk.sweep("--resume", "--storage", str(storage), timeout=60)
    assert r.returncode == 2 and "holds no sweep to resume" in r.stderr, r


def test_full_disk_cli_gives_a_one_line_storage_error(tmp_path):
    storage = tmp_path / "sweep"
    r = fk.sweep(*fk.SMOKE, "--storage", str(storage), timeout=180, preexec_fn=_disk_full(2048))
    fk.note("full_disk_cli", seconds=round(r.elapsed, 1), rc=r.returncode,
          traceback="Traceback" in r.stderr)
    fk.nothing_started(storage)
    assert r.returncode == 1, r
    assert "Traceback" not in r.stderr, r
    assert len(r.errors()) == 1 and f"storage folder {storage.resolve()}" in r.errors()[0], r


# ------------------------------------------------------- security: pickles in scorer folders
class _Evil:
    """Unpickling this creates ``marker``: proof that loading ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_crafted_pickles_in_a_scorer_folder_are_refused(tmp_path, smoke_scorers):
    import numpy as np

    from scorers.scorer_cache import load_scorer

    live = tmp_path / "live"
    pickle.loads(pickle.dumps(_Evil(live))).close()  # the payload does run when unpickled
    assert live.exists()

    def tampered(kind, case):
        folder = tmp_path / f"{kind}-{case}"
        shutil.copytree(smoke_scorers[kind], folder)
        return folder, tmp_path / f"pwned-{kind}-{case}"

    cases = []
    for kind, array in (("vit", "real_probs.npy"), ("inception", "real_features.npy")):
        folder, marker = tampered(kind, "npy")
        np.save(folder / array, np.array([_Evil(marker)], dtype=object), allow_pickle=True)
        cases.append((folder, marker, "without pickle"))
    folder, marker = tampered("vit", "safetensors")  # a pickle under the safetensors name,
    payload = pickle.dumps({"w": _Evil(marker)})  # and a pickled torch file beside it
    (folder / "model" / "model.safetensors").write_bytes(payload)
    (folder / "model" / "pytorch_model.bin").write_bytes(payload)
    cases.append((folder, marker, "model/ cannot be loaded as this scorer's model"))
    folder, marker = tampered("vit", "bin-only")  # only the pickled weights
    (folder / "model" / "model.safetensors").unlink()
    (folder / "model" / "pytorch_model.bin").write_bytes(pickle.dumps({"w": _Evil(marker)}))
    cases.append((folder, marker, "model.safetensors"))
    folder, marker = tampered("inception", "h5")
    (folder / "model.weights.h5").write_bytes(pickle.dumps({"w": _Evil(marker)}))
    cases.append((folder, marker, "model.weights.h5 cannot be loaded as this scorer's weights"))

    for folder, marker, needle in cases:
        with pytest.raises(ValueError, match=needle) as err:
            load_scorer(folder)
        assert not marker.exists(), (folder, err.value)
    assert load_scorer(smoke_scorers["vit"]).scorer_id  # the untouched folder still loads
