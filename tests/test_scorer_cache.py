"""The scorer store's build mechanism: one lock per spec, a builder that only decides where
the fine-tune runs, atomic placement, and nothing half-built left behind (scorers.scorer_cache).

The builders here write a well-formed scorer folder without training anything, so these
tests run in seconds; real fine-tunes go through the same ``ensure_spec`` in the slow tests.
"""
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from scorers.finetuning import ARRAYS, METADATA
from scorers.scorer_cache import ensure_spec, is_complete, read_metadata, scorer_dir_for
from scorers.spec import FORMAT_VERSION, TrainSpec

REPO = Path(__file__).resolve().parents[1]
SPEC = TrainSpec("mnist", "vit", epochs=1, subset=100, eval_subset=10)


def fake_build(spec, folder, *, spec_hash, data_dir=None, progress=True, delay=0.0):
    """Write a complete (untrained) scorer folder at ``folder``, as a builder must."""
    folder = Path(folder)
    (folder / "model").mkdir(parents=True)
    time.sleep(delay)
    (folder / "model" / "model.safetensors").write_bytes(b"weights")
    k = 4
    arrays = {"real_probs": np.full((k, 10), 0.1), "real_features": np.zeros((k, 3), np.float32),
              "real_labels": np.zeros(k, np.uint8), "real_index": np.arange(k)}
    for key, name in ARRAYS.items():
        np.save(folder / name, arrays[key])
    (folder / METADATA).write_text(json.dumps({
        "format": FORMAT_VERSION, "kind": spec.kind, "dataset": spec.dataset,
        "spec_hash": spec_hash, "pid": __import__("os").getpid(),
        "files": {"weights": ["model/model.safetensors"], "arrays": ARRAYS}}))


def test_builder_fills_a_temporary_folder_that_the_store_renames_into_place(tmp_path):
    seen = []

    def builder(spec, folder, **kw):
        seen.append(Path(folder))
        assert not folder.exists() and folder.parent == scorer_dir_for(SPEC, tmp_path).parent
        fake_build(spec, folder, **kw)

    target = ensure_spec(SPEC, cache_root=tmp_path, builder=builder)
    assert target == scorer_dir_for(SPEC, tmp_path) and is_complete(target)
    assert seen[0].name.startswith(f".tmp-{target.name}-") and not seen[0].exists()
    # cached now: the builder is not asked again
    assert ensure_spec(SPEC, cache_root=tmp_path, builder=lambda *a, **k: 1 / 0) == target


def test_a_builder_that_fails_or_writes_half_a_folder_leaves_nothing(tmp_path):
    def crash(spec, folder, **kw):
        (Path(folder) / "model").mkdir(parents=True)
        raise RuntimeError("out of GPU memory")

    def half(spec, folder, **kw):
        (Path(folder) / "model").mkdir(parents=True)  # no metadata.json

    with pytest.raises(RuntimeError, match="out of GPU memory"):
        ensure_spec(SPEC, cache_root=tmp_path, builder=crash)
    with pytest.raises(ValueError, match="not a complete scorer folder"):
        ensure_spec(SPEC, cache_root=tmp_path, builder=half)
    parent = scorer_dir_for(SPEC, tmp_path).parent
    assert [p.name for p in parent.iterdir() if not p.name.endswith(".lock")] == []


def test_leftovers_of_a_killed_build_are_removed_and_a_damaged_folder_replaced(tmp_path):
    target = scorer_dir_for(SPEC, tmp_path)
    (target.parent / f".tmp-{target.name}-123-abc").mkdir(parents=True)
    (target.parent / f".old-{target.name}-def").mkdir()
    target.mkdir()
    (target / "junk").write_text("a killed build's half folder")
    ensure_spec(SPEC, cache_root=tmp_path, builder=fake_build)
    assert is_complete(target) and not (target / "junk").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == [f".{target.name}.lock",
                                                               target.name]


BUILD_IN_A_PROCESS = """
import sys, functools, logging
logging.basicConfig(level=logging.INFO)
sys.path.insert(0, {tests!r})
from test_scorer_cache import SPEC, fake_build
from scorers.scorer_cache import ensure_spec
ensure_spec(SPEC, cache_root=sys.argv[1], builder=functools.partial(fake_build, delay=2.0))
"""


def test_concurrent_sweeps_build_a_spec_once(tmp_path):
    """Two processes ask for the same scorer at once: one builds, the other waits on the
    spec's lock and reuses the folder."""
    code = BUILD_IN_A_PROCESS.format(tests=str(REPO / "tests"))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=REPO,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    target = scorer_dir_for(SPEC, tmp_path)
    builder_pid = read_metadata(target)["pid"]
    assert builder_pid in {p.pid for p in procs}
    assert sum("built concurrently" in e for e in errs) == 1, errs
