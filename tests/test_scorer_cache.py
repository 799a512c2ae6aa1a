"""The scorer store's build mechanism: one lock per spec, a builder that only decides where
the fine-tune runs, atomic placement, and nothing half-built left behind (scorers.scorer_cache).

The builds here are real micro fine-tunes (a ViT on 100 images for one epoch: seconds), so
the folder the store places is the one ``train_scorer`` writes; only the failing builders
are stand-ins.
"""
import subprocess
import sys
from pathlib import Path

import pytest

from scorers.scorer_cache import build_here, ensure_spec, is_complete, read_metadata, scorer_dir_for
from scorers.spec import TrainSpec

REPO = Path(__file__).resolve().parents[1]
SPEC = TrainSpec("mnist", "vit", epochs=1, subset=100, eval_subset=10)




def test_builder_fills_a_temporary_folder_that_the_store_renames_into_place(tmp_path):
    seen = []

    def builder(spec, folder, **kw):
        seen.append(Path(folder))
        assert not folder.exists() and folder.parent == scorer_dir_for(SPEC, tmp_path).parent
        build_here(spec, folder, **kw)

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
    ensure_spec(SPEC, cache_root=tmp_path, progress=False)
    assert is_complete(target) and not (target / "junk").exists()
    assert sorted(p.name for p in target.parent.iterdir()) == [f".{target.name}.lock",
                                                               target.name]


BUILD_IN_A_PROCESS = """
import sys, logging
logging.basicConfig(level=logging.INFO)
sys.path.insert(0, {tests!r})
from test_scorer_cache import SPEC
from scorers.scorer_cache import ensure_spec
ensure_spec(SPEC, cache_root=sys.argv[1], progress=False)
"""


def test_concurrent_sweeps_build_a_spec_once(tmp_path):
    """Two processes ask for the same scorer at once: one builds, the other waits on the
    spec's lock and reuses the folder."""
    code = BUILD_IN_A_PROCESS.format(tests=str(REPO / "tests"))
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], cwd=REPO,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert read_metadata(scorer_dir_for(SPEC, tmp_path))["spec_hash"]
    assert sum("fine-tuning vit scorer" in e for e in errs) == 1, errs
    assert sum("built concurrently" in e for e in errs) == 1, errs
