"""Sweep assembly without fitting: spaces, presets, searcher, tuner, CLI validation, report."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sweeps import report
from sweeps.presets import PRESETS
from sweeps.spaces import SPACES, paper_point
from sweeps.tuner import SweepSettings, build_tuner, objective_metrics, param_space

REPO = Path(__file__).resolve().parents[1]


def test_cli_choices_come_from_the_registries():
    from sweeps.run import build_parser

    actions = {a.dest: a for a in build_parser()._actions}
    assert sorted(actions["space"].choices) == sorted(SPACES)
    assert sorted(actions["preset"].choices) == sorted(PRESETS)


@pytest.mark.parametrize("space", sorted(SPACES))
def test_build_tuner_for_each_space(space, tmp_path):
    from ray.tune.search.optuna import OptunaSearch

    settings = SweepSettings(space=space, preset="quick", storage=str(tmp_path / "s"),
                             num_samples=7, seed=3)
    tuner = build_tuner(settings, actor_names=settings.actor_names(), namespace="ns")
    local = tuner._local_tuner
    tc, ps = local._tune_config, local._param_space
    assert tc.num_samples == 7
    searcher = tc.search_alg
    assert isinstance(searcher, OptunaSearch)
    assert searcher._points_to_evaluate == [paper_point(space, "mnist", PRESETS["quick"])]
    assert searcher._storage.url == f"sqlite:///{tmp_path / 's' / 'optuna.db'}"
    assert searcher._metric == "ts_5k_mean" and searcher._mode == "max"
    assert ps["model"] == space and ps["arch"] == "small" and ps["subset"] == 5000
    assert ps["_scorers"] == settings.actor_names()
    searched = {"lr", "latent_dim", "epochs", "batch_size"}
    if space == "vaegan":
        searched |= {"adversarial_loss_scale", "reconstruction_layer"}
    assert searched <= set(ps)
    ran = [p.name for p in (tmp_path / "s" / "tune").iterdir()
           if p.name not in ("tuner.pkl", ".validate_storage_marker")]
    assert ran == []  # assembled, not fitted: no trial folders, no experiment state


def test_paper_point_is_the_papers_setting():
    p = paper_point("vaegan", "fashion-mnist", PRESETS["paper"])
    assert p == {"lr": 1e-3, "latent_dim": 32, "epochs": 85, "batch_size": 256,
                 "adversarial_loss_scale": 0.8, "reconstruction_layer": 3}
    assert "epochs" not in paper_point("vae", "mnist", PRESETS["smoke"])  # constant 1 there


def test_multi_objective_and_asha(tmp_path):
    settings = SweepSettings(space="vae", preset="smoke", objective="is+ts", scheduler="asha",
                             storage=str(tmp_path), max_concurrent=2)
    assert objective_metrics("is+ts", (1000, 5000)) == (["is_5k_mean", "ts_5k_mean"],
                                                        ["max", "max"])
    tuner = build_tuner(settings)
    tc = tuner._local_tuner._tune_config
    assert type(tc.search_alg).__name__ == "ConcurrencyLimiter"
    assert tc.search_alg.searcher._metric == ["is_500_mean", "ts_500_mean"]  # smoke: 200 / 500
    assert type(tc.scheduler).__name__ == "AsyncHyperBandScheduler"


@pytest.mark.parametrize("kwargs,needle", [
    (dict(space="gan"), "unknown space 'gan'"),
    (dict(space="vae", preset="huge"), "unknown preset 'huge'"),
    (dict(space="vae", objective="fid"), "unknown objective 'fid'"),
    (dict(space="vae", lr_range=(1e-2, 1e-4)), "lr range"),
    (dict(space="vae", epochs_range=(0, 3)), "epochs range"),
    (dict(space="vae", num_samples=0), "num_samples 0"),
])
def test_settings_reject_bad_values(kwargs, needle, tmp_path):
    with pytest.raises(ValueError, match=needle):
        SweepSettings(storage=str(tmp_path), **kwargs)


def _run(*args):
    return subprocess.run([sys.executable, "sweeps/run.py", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args,needle", [
    (["--space", "gan"], "'gan'"),
    (["--space", "vae", "--dataset", "cifar10"], "'cifar10'"),
    (["--space", "vae", "--preset", "huge"], "'huge'"),
    (["--space", "vae", "--objective", "fid"], "'fid'"),
    (["--space", "vae", "--lr-range", "1e-2,1e-4"], "low bound is above the high bound"),
    (["--space", "vae", "--lr-range=-1e-3,1e-2"], "bounds must be positive"),
    (["--space", "vae", "--epochs-range", "0,3"], "bounds must be positive"),
    (["--space", "vae", "--num-samples", "0"], "0 must be >= 1"),
    (["--space", "vae", "--gpus-per-trial", "-0.5"], "-0.5 must be >= 0"),
    (["--resume"], "--resume needs --storage"),
    ([], "--space is required"),
])
def test_cli_bad_input_exits_2_with_the_value(args, needle):
    r = _run(*args)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert needle in r.stderr
    assert len([l for l in r.stderr.splitlines() if l.startswith("sweeps/run.py: error")]) == 1


def test_help_is_fast_and_light():
    r = subprocess.run([sys.executable, "-X", "importtime", "sweeps/run.py", "--help"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--space" in r.stdout
    heavy = [l for l in r.stderr.splitlines()
             if any(f"| {m}" in l for m in ("ray", "tensorflow", "mlflow", "optuna", "transformers"))]
    assert heavy == []


def test_report_ranks_and_pareto():
    rows = [
        {"trial_id": "a", "status": "finished", "is_5k_mean": 8.0, "ts_5k_mean": 7.0, "_config": {}},
        {"trial_id": "b", "status": "finished", "is_5k_mean": 7.0, "ts_5k_mean": 8.0, "_config": {}},
        {"trial_id": "c", "status": "finished", "is_5k_mean": 6.0, "ts_5k_mean": 6.5, "_config": {}},
        {"trial_id": "d", "status": "diverged", "_config": {}},
    ]
    assert [r["trial_id"] for r in report.rank(rows, ["ts_5k_mean"])] == ["b", "a", "c"]
    front = report.pareto_front(rows, ["is_5k_mean", "ts_5k_mean"])
    assert sorted(r["trial_id"] for r in front) == ["a", "b"]
    table = report.format_table(rows, "vae", "mnist", (1000, 5000), {"ts_5k_mean": 9.5})
    assert "8.281" in table and "9.500" in table  # paper's VAE IS 5K and the ceiling
    assert "best of" not in table
    ranked = report.rank(rows, ["ts_5k_mean"])
    short = report.format_table(ranked, "vae", "mnist", (1000, 5000), None, top=2)
    assert "the 2 best of 3 ranked trials" in short and "     c " not in short


@pytest.mark.parametrize("url, shown", [
    ("postgresql+psycopg2://alice:s3cret@db.internal:5432/optuna",
     "postgresql+psycopg2://alice:***@db.internal:5432/optuna"),
    ("https://bob:p%40ss@mlflow.example.org/", "https://bob:***@mlflow.example.org/"),
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("sqlite:////tmp/x@y/optuna.db", "sqlite:////tmp/x@y/optuna.db"),
    ("https://token@host/", "https://token@host/"),
    (None, None),
])
def test_redact_url_masks_only_the_password(url, shown):
    from sweeps.redact import redact_url

    assert redact_url(url) == shown


def test_parent_run_fields_and_sweep_file_keep_passwords_out_of_logs(tmp_path):
    import json
    import stat

    from sweeps.sweep import parent_run_fields
    from sweeps.tuner import read_sweep_file, write_sweep_file

    settings = SweepSettings(space="vae", preset="smoke", storage=str(tmp_path),
                             mlflow_uri="https://bob:s3cret@mlflow.example.org",
                             optuna_storage="postgresql://alice:s3cret@db/optuna")
    params, tags = parent_run_fields(settings, {"vit": {"scorer_id": "x", "test_accuracy": 0.9}})
    logged = json.dumps([params, tags])
    assert "s3cret" not in logged
    assert params["mlflow_uri"] == "https://bob:***@mlflow.example.org"
    assert tags["optuna_storage"] == "postgresql://alice:***@db/optuna"
    assert params["space"] == "vae" and tags["scorer.vit.id"] == "x"
    text = report.how_to_look(tmp_path, settings.mlflow_uri, settings.optuna_url)
    assert "s3cret" not in text and "bob:***@" in text
    # The sweep file must keep the real URLs to resume, so only its owner may read it.
    path = write_sweep_file(settings, {})
    assert read_sweep_file(tmp_path)["settings"]["optuna_storage"].endswith("s3cret@db/optuna")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_settings_make_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = SweepSettings(space="vae", data_dir="data/mnist", scorers_dir="~/scorers")
    assert s.data_dir == str(tmp_path / "data" / "mnist")
    assert s.scorers_dir == str(Path("~/scorers").expanduser().resolve())


def test_path_variables_become_absolute_before_ray(tmp_path, monkeypatch):
    from sweeps.sweep import absolute_path_variables

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENSWEEP_DATA_DIR", "../shared/data")
    monkeypatch.setenv("GENSWEEP_CACHE_DIR", "cache")
    absolute_path_variables()
    assert os.environ["GENSWEEP_DATA_DIR"] == str((tmp_path / "../shared/data").resolve())
    assert os.environ["GENSWEEP_CACHE_DIR"] == str(tmp_path / "cache")
