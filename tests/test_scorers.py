"""Scorers without a trained network: specs and hashes, input checks, the real split,
import hygiene, init failures and CLI argument errors. Trained scorers are exercised in
test_scorers_trained.py and test_scorers_actor.py."""
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from scorers import realsplit
from scorers.classifier_scores import check_ns
from scorers.images import as_unit_float
from scorers.keys import n_label
from scorers.scorer_cache import ensure_scorer, is_complete, read_metadata, scorer_dir_for
from scorers.spec import ScorerInitError, TrainSpec

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable


def run_cli(*args, env=None, timeout=300):
    return subprocess.run([PY, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


# ------------------------------------------------------------------ import hygiene
def test_importing_scorers_pulls_in_no_heavy_framework():
    code = ("import sys, importlib, pkgutil, scorers\n"
            "for m in pkgutil.iter_modules(scorers.__path__):\n"
            "    importlib.import_module('scorers.' + m.name)\n"
            "heavy = ('tensorflow', 'keras', 'transformers', 'ray', 'mlflow', 'optuna', 'torch')\n"
            "print(sorted(m for m in heavy if m in sys.modules))")
    out = run_cli("-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_finetune_help_is_fast_and_exits_0():
    started = time.time()
    out = run_cli("scorers/finetune_cli.py", "--help")
    assert out.returncode == 0
    assert "--init" in out.stdout and "--eval-subset" in out.stdout
    assert time.time() - started < 10


@pytest.mark.parametrize("args, needle", [
    (["--dataset", "cifar10", "--scorer", "vit"], "--dataset"),
    (["--dataset", "mnist", "--scorer", "resnet"], "--scorer"),
    (["--dataset", "mnist", "--scorer", "vit", "--epochs", "0"], "--epochs"),
    (["--dataset", "mnist", "--scorer", "vit", "--lr", "3"], "--lr"),
    (["--dataset", "mnist", "--scorer", "vit", "--eval-subset", "20000"], "eval_subset"),
    (["--scorer", "vit"], "--dataset"),
])
def test_finetune_bad_arguments_exit_2_with_one_line(args, needle):
    out = run_cli("scorers/finetune_cli.py", *args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], out.stderr


@pytest.mark.parametrize("args, needle", [
    (["--dataset", "mnist", "--samples", "/nonexistent/x.npz"], "no such file"),
    (["--dataset", "mnist", "--samples", "real-test", "--n", "1000,abc"], "--n"),
    (["--dataset", "mnist", "--samples", "real-test", "--n", "6000"], "--n"),
    (["--dataset", "mnist", "--samples", "real-test", "--kinds", "resnet"], "resnet"),
    (["--dataset", "mnist", "--samples", "real-test", "--scorer-dir", "vit"], "KIND=DIR"),
    (["--dataset", "mnist", "--samples", "real-test", "--scorer-dir", "vit=/nonexistent"],
     "does not exist"),
    (["--dataset", "svhn", "--samples", "real-test"], "--dataset"),
])
def test_score_bad_arguments_exit_2_with_one_line(args, needle):
    out = run_cli("scorers/score_cli.py", *args)
    assert out.returncode == 2, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], out.stderr


def test_score_rejects_bad_sample_files(tmp_path):
    bad_shape = tmp_path / "bad.npy"
    np.save(bad_shape, np.zeros((2000, 32, 32), np.uint8))
    few = tmp_path / "few.npz"
    np.savez(few, samples=np.zeros((50, 28, 28), np.uint8))
    pickled = tmp_path / "obj.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    for path, needle in [(bad_shape, "(2000, 32, 32)"), (few, "holds 50 images"),
                         (pickled, "without pickle")]:
        out = run_cli("scorers/score_cli.py", "--dataset", "mnist", "--samples", str(path),
                      "--n", "100")
        assert out.returncode == 2, out.stderr
        assert needle in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr


# ------------------------------------------------------------------ specs and hashes
def test_spec_defaults_and_hash_identity(tmp_path):
    a = TrainSpec("mnist", "inception")
    b = TrainSpec("mnist", "inception", epochs=20, batch_size=128, lr=1e-3, eval_subset=10_000)
    assert a.resolved() == b.resolved()
    assert scorer_dir_for(a, tmp_path) == scorer_dir_for(b, tmp_path)
    assert scorer_dir_for(a, tmp_path).parent == tmp_path / "mnist" / "inception"
    others = [TrainSpec("fashion-mnist", "inception"), TrainSpec("mnist", "vit"),
              TrainSpec("mnist", "inception", epochs=1), TrainSpec("mnist", "inception", seed=1),
              TrainSpec("mnist", "inception", subset=100),
              TrainSpec("mnist", "inception", eval_subset=500)]
    names = {scorer_dir_for(s, tmp_path).name for s in [a, *others]}
    assert len(names) == len(others) + 1


def test_local_init_hash_follows_file_content(tmp_path):
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"one")
    first = scorer_dir_for(TrainSpec("mnist", "inception", init=str(weights)), tmp_path)
    weights.write_bytes(b"two")
    second = scorer_dir_for(TrainSpec("mnist", "inception", init=str(weights)), tmp_path)
    assert first != second


@pytest.mark.parametrize("kwargs, needle", [
    (dict(dataset="cifar10", kind="vit"), "cifar10"),
    (dict(dataset="mnist", kind="resnet"), "resnet"),
    (dict(dataset="mnist", kind="vit", epochs=0), "epochs"),
    (dict(dataset="mnist", kind="vit", subset=-5), "subset"),
    (dict(dataset="mnist", kind="vit", lr=0.0), "lr"),
    (dict(dataset="mnist", kind="vit", eval_subset=10_001), "eval_subset"),
])
def test_spec_validation_names_the_value(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        TrainSpec(**kwargs)


def test_n_labels_and_ns_checks():
    assert [n_label(n) for n in (1000, 5000, 1500, 200)] == ["1k", "5k", "1500", "200"]
    assert check_ns((5000, 1000, 1000)) == (1000, 5000)
    assert check_ns(300) == (300,)
    for bad in [(), (5,), (6000,), (1.5,), ("a",), (True,)]:
        with pytest.raises(ValueError, match="ns="):
            check_ns(bad)


# ------------------------------------------------------------------ the real split
def test_real_split_halves_are_disjoint_fixed_and_cover_the_test_set():
    ref, ceil = realsplit.indices("reference"), realsplit.indices("ceiling")
    assert len(ref) == len(ceil) == 5000
    assert not set(ref) & set(ceil)
    assert sorted([*ref, *ceil]) == list(range(10_000))
    assert np.array_equal(realsplit.indices("reference", 100), ref[:100])
    # A constant seed: the same real images for every scorer, sweep and session.
    assert ref[:5].tolist() == np.random.default_rng(realsplit.SPLIT_SEED).permutation(
        10_000)[:5].tolist()
    with pytest.raises(ValueError, match="1..5000"):
        realsplit.indices("ceiling", 5001)


def test_eval_subset_holds_exactly_the_first_images_of_both_halves():
    idx = realsplit.eval_indices(2001)
    assert len(idx) == 2001 and np.all(np.diff(idx) > 0)
    assert set(realsplit.indices("reference", 1001)) | set(realsplit.indices("ceiling", 1000)) \
        == set(idx.tolist())
    assert np.array_equal(realsplit.eval_indices(10_000), np.arange(10_000))


# ------------------------------------------------------------------ image validation
def test_images_accepted_layouts_and_dtypes():
    u8 = np.random.default_rng(0).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    x = as_unit_float(u8)
    assert x.dtype == np.float32 and x.shape == (4, 28, 28)
    np.testing.assert_allclose(x, u8 / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(as_unit_float(u8[:, None]), x)
    np.testing.assert_array_equal(as_unit_float((u8 / 255.0).astype(np.float64)), x)


@pytest.mark.parametrize("images, needle", [
    (np.zeros((3, 32, 32), np.float32), r"shape \(3, 32, 32\)"),
    (np.zeros((3, 28, 28, 1), np.float32), "channels last"),
    (np.zeros((0, 28, 28), np.float32), "empty"),
    (np.zeros((3, 28, 28), np.int64), "dtype int64"),
    (np.zeros((3, 28, 28), bool), "dtype bool"),
    (np.full((3, 28, 28), np.nan, np.float32), "NaN"),
    (np.full((3, 28, 28), np.inf, np.float32), "NaN/inf"),
    (np.full((3, 28, 28), 255.0, np.float32), "divide by 255"),
    (np.full((3, 28, 28), -1.0, np.float32), r"\[-1, 1\]"),
    ("not an array", "numpy array"),
])
def test_bad_images_raise_clear_value_errors(images, needle):
    with pytest.raises(ValueError, match=needle):
        as_unit_float(images)


# ------------------------------------------------------------------ init failures
def test_inception_missing_weights_file_fails_at_once(tmp_path):
    started = time.time()
    with pytest.raises(ScorerInitError) as err:
        ensure_scorer("mnist", "inception", init=str(tmp_path / "missing.h5"),
                      cache_root=tmp_path / "cache")
    msg = str(err.value)
    assert "no such file" in msg and "'scratch'" in msg and "'imagenet'" in msg
    assert time.time() - started < 5
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("*.json"))


def test_vit_missing_local_dir_and_pickle_only_dir_fail_at_once(tmp_path):
    with pytest.raises(ScorerInitError, match="no such directory.*scratch"):
        ensure_scorer("mnist", "vit", init=str(tmp_path / "nope"), cache_root=tmp_path / "c")
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    (pickled / "pytorch_model.bin").write_bytes(b"x")
    with pytest.raises(ScorerInitError, match="model.safetensors.*pickled"):
        ensure_scorer("mnist", "vit", init=str(pickled), cache_root=tmp_path / "c")
    with pytest.raises(ScorerInitError, match="imagenet"):
        ensure_scorer("mnist", "vit", init="imagenet", cache_root=tmp_path / "c")
    with pytest.raises(ScorerInitError, match="HuggingFace ids only work for the vit"):
        ensure_scorer("mnist", "inception", init="google/vit-base-patch16-224-in21k",
                      cache_root=tmp_path / "c")
    assert not any((tmp_path / "c").rglob("metadata.json"))


def test_vit_hub_id_offline_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty HF cache
    started = time.time()
    with pytest.raises(ScorerInitError) as err:
        ensure_scorer("mnist", "vit", init="google/vit-base-patch16-224-in21k",
                      cache_root=tmp_path / "c", progress=False)
    msg = str(err.value)
    assert "HF_HUB_OFFLINE" in msg and "'scratch'" in msg and "local directory" in msg
    assert time.time() - started < 60
    assert not any((tmp_path / "c").rglob("metadata.json"))


@pytest.mark.slow  # two subprocesses importing TensorFlow / transformers: ~40 s
def test_finetune_cli_offline_inits_exit_2(tmp_path):
    # A closed local port as proxy makes the ImageNet download fail at once, as offline.
    offline = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
               "https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9",
               "KERAS_HOME": str(tmp_path / "keras")}
    for kind, init, needle in [("vit", "google/vit-base-patch16-224-in21k", "HF_HUB_OFFLINE"),
                               ("inception", "imagenet", "storage.googleapis.com")]:
        out = run_cli("scorers/finetune_cli.py", "--dataset", "mnist", "--scorer", kind, "--init",
                      init, "--cache-root", str(tmp_path / "c"), "--no-progress", env=offline)
        assert out.returncode == 2, out.stderr[-2000:]
        last = out.stderr.strip().splitlines()[-1]
        assert last.startswith("gensweep finetune: error: --init") and needle in last, last
        assert "Alternatives" in last and "scratch" in last
    assert not any((tmp_path / "c").rglob("metadata.json"))


# ------------------------------------------------------------------ folders
def test_incomplete_folders_are_refused(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "model.weights.h5").write_bytes(b"partial")
    assert not is_complete(tmp_path / "half")
    with pytest.raises(ValueError, match="no metadata.json"):
        read_metadata(tmp_path / "half")
    with pytest.raises(ValueError, match="does not exist"):
        read_metadata(tmp_path / "missing")


def test_out_refuses_to_replace_a_foreign_folder(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a scorer folder"):
        ensure_scorer("mnist", "vit", folder=foreign, force=True)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_degrade_blurs_and_dims_half_and_leaves_the_rest():
    from scorers import degrade

    rng = np.random.default_rng(0)
    x = (rng.random((400, 28, 28)) > 0.8).astype(np.float32)
    out = degrade.degrade(x, seed=3)
    changed = np.array([not np.array_equal(a, b) for a, b in zip(x, out)])
    assert 0.4 < changed.mean() < 0.6  # about half of them
    assert out.max() <= 1.0 and out.min() >= 0.0 and out.dtype == np.float32
    assert (out[changed].max(axis=(1, 2)) <= x[changed].max(axis=(1, 2))).all()  # dimmer
    np.testing.assert_array_equal(degrade.degrade(x, seed=3), out)  # seeded
    checks = degrade.robustness(lambda imgs: (np.eye(10)[np.zeros(len(imgs), int)], None),
                                x, np.zeros(400, int))
    assert set(checks) == set(degrade.CHECKS) and all(v == 1.0 for v in checks.values())


def test_augment_enters_the_hash_only_when_asked_for():
    plain = TrainSpec("mnist", "inception", epochs=1)
    assert plain.resolved().augment == "none"
    assert TrainSpec("mnist", "inception", epochs=1, augment="none").spec_hash() == plain.spec_hash()
    assert TrainSpec("mnist", "inception", epochs=1, augment="degrade").spec_hash() != \
        plain.spec_hash()
    with pytest.raises(ValueError, match="augment must be one of"):
        TrainSpec("mnist", "inception", augment="flip")


@pytest.mark.parametrize("env,expected", [
    ({}, ("10000", None)),  # a short spin: the quiet fine-tune's speed (docs/scorers.md)
    ({"OMP_WAIT_POLICY": "PASSIVE"}, (None, "PASSIVE")),  # the user's choice stands
    ({"GOMP_SPINCOUNT": "500"}, ("500", None)),
])
def test_vit_sets_how_torchs_idle_threads_wait_before_importing_torch(env, expected):
    code = ("import os, sys; from scorers import vit; assert 'torch' not in sys.modules; "
            "vit._torch(); assert 'torch' in sys.modules; "
            "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_WAIT_POLICY'))")
    base = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True,
                         text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == [str(v) for v in expected]
