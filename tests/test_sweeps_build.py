"""Sweep assembly without fitting: the plan, spaces, presets, searcher, scheduler, CLI
validation, report."""
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from scorers.keys import OBJECTIVES, objective_keys
from sweeps import report
from sweeps.plan import Cluster, PlanError, resolve_plan
from sweeps.presets import PRESETS
from sweeps.request import SweepRequest
from sweeps.spaces import SPACES, paper_point

REPO = Path(__file__).resolve().parents[1]
CPU2 = Cluster(cpus=2, gpus=0, driver_cpus=2, driver_gpus=0, max_node_cpus=2, max_node_gpus=0)
GPU1 = Cluster(cpus=8, gpus=1, driver_cpus=8, driver_gpus=1, max_node_cpus=8, max_node_gpus=1)


def plan_for(tmp_path, cluster=CPU2, **kwargs):
    return resolve_plan(SweepRequest(storage=str(tmp_path / "s"), **kwargs), cluster)


def test_cli_choices_come_from_the_registries():
    from scorers.keys import OBJECTIVES
    from sweeps.run import build_parser

    actions = {a.dest: a for a in build_parser()._actions}
    assert sorted(actions["space"].choices) == sorted(SPACES)
    assert sorted(actions["preset"].choices) == sorted(PRESETS)
    assert sorted(actions["objective"].choices) == sorted(OBJECTIVES)
    from sweeps.spaces import CONDITIONAL

    assert tuple(actions["conditional"].choices) == CONDITIONAL
    from trainables.config import SAMPLERS

    assert tuple(actions["sampler"].choices) == SAMPLERS


def test_plan_resolves_the_preset_from_the_cluster(tmp_path):
    cpu = plan_for(tmp_path, space="vae")
    assert cpu.preset.name == "quick" and cpu.trial_gpus == 0 and cpu.scheduler == "asha"
    # two single-thread trials beside the two half-CPU scorer actors on 2 cores
    assert cpu.trial_cpus == 0.5 and cpu.actor_cpus == 0.5 and cpu.concurrency == 2
    assert cpu.objective == ("ts_5k_mean",) and cpu.ns == (1000, 5000)
    # MNIST's VAE trials have their own, larger budget; Fashion-MNIST's keep the preset's
    assert cpu.trial_constants["train_images"] == \
        PRESETS["quick"].model_budgets["mnist/vae"].train_images > PRESETS["quick"].train_images
    assert plan_for(tmp_path, space="vae", dataset="fashion-mnist").trial_constants[
        "train_images"] == PRESETS["quick"].train_images
    assert cpu.scorer_specs["inception"].subset == 36_000
    # a VAE-GAN step costs about three VAE steps: the quick VAE-GAN has its own budget
    vaegan = plan_for(tmp_path, space="vaegan")
    budget = PRESETS["quick"].model_budgets["vaegan"]
    assert vaegan.trial_constants["train_images"] == budget.train_images < \
        cpu.trial_constants["train_images"]
    assert vaegan.preset.batch_sizes == budget.batch_sizes == (32, 64)
    assert vaegan.paper_point["batch_size"] == 64  # the paper's 256, clipped to the preset
    assert plan_for(tmp_path, space="vaegan", train_images=5000).trial_constants[
        "train_images"] == 5000  # the request's budget still wins
    import dataclasses

    from sweeps.presets import ModelBudget

    for key in ("vae-gan", "cifar10/vae", "mnist/vae-gan"):
        with pytest.raises(ValueError, match=rf"model_budgets\['{key}'\].*dataset/model"):
            dataclasses.replace(PRESETS["quick"], model_budgets={key: ModelBudget()})
    gpu = plan_for(tmp_path, GPU1, space="vaegan", dataset="fashion-mnist")
    assert gpu.preset.name == "paper" and gpu.trial_gpus == 1.0 and gpu.scheduler == "none"
    assert gpu.paper_point == paper_point("vaegan", "fashion-mnist", PRESETS["paper"])
    assert gpu.scorer_specs["vit"].dataset == "fashion-mnist"
    assert gpu.actor_names == {k: f"gensweep-{k}-{gpu.sweep_id}" for k in ("inception", "vit")}


def test_plan_round_trips_through_json(tmp_path):
    import json

    from sweeps.plan import SweepPlan

    plan = plan_for(tmp_path, GPU1, space="vaegan", preset="smoke", gpus_per_trial=0.25,
                    lr_range=(1e-4, 1e-3))
    again = SweepPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan


def test_the_sampler_reaches_every_trial_as_a_constant_not_a_hyperparameter(tmp_path):
    from trainables.config import TrainConfig

    plan = plan_for(tmp_path, space="vaegan", sampler="latent-gmm")
    assert plan.trial_constants["sampler"] == "latent-gmm"
    assert "sampler" not in plan.paper_point
    cfg = TrainConfig.from_dict({**plan.trial_constants, **plan.paper_point})
    assert cfg.sampler == "latent-gmm"
    # by default an unconditional sweep draws from the latent mixture, a class-conditional
    # one from the prior (its classes), and the request's choice wins
    assert plan_for(tmp_path, space="vaegan").trial_constants["sampler"] == "latent-gmm"
    for conditional in ("on", "search"):
        assert plan_for(tmp_path, space="vaegan", conditional=conditional).trial_constants[
            "sampler"] == "prior"
    assert plan_for(tmp_path, space="vae", sampler="prior").trial_constants["sampler"] == "prior"
    # the request leaves the default to the plan; a sweep.json written before the setting
    # existed has no sampler in its trial constants, so it resumes with the prior it scored
    assert SweepRequest.from_dict({"space": "vae"}).sampler is None
    old = {k: v for k, v in plan.trial_constants.items() if k != "sampler"}
    assert TrainConfig.from_dict({**old, **plan.paper_point}).sampler == "prior"


def test_plan_refuses_more_gpus_than_the_cluster_has(tmp_path):
    with pytest.raises(PlanError, match="--gpus-per-trial 2 asks for more GPUs"):
        plan_for(tmp_path, GPU1, space="vae", gpus_per_trial=2)
    with pytest.raises(PlanError, match="the cluster has no GPU"):
        plan_for(tmp_path, space="vae", gpus_per_trial=1)
    with pytest.raises(PlanError, match="--scorer-gpus 0.75 reserves 1.5 GPUs"):
        plan_for(tmp_path, GPU1, space="vae", scorer_gpus=0.75)
    shared = plan_for(tmp_path, GPU1, space="vae", preset="smoke", gpus_per_trial=0.25,
                      cpus_per_trial=0.25, scorer_gpus=0.25)
    assert shared.concurrency == 2  # 1 GPU less 2 x 0.25 for the actors, 0.25 per trial


@pytest.mark.parametrize("space", sorted(SPACES))
def test_search_space_holds_hyperparameters_only(space, tmp_path):
    from sweeps.tuner import search_space, trial_plan

    plan = plan_for(tmp_path, space=space, num_samples=7, seed=3)
    searched = {"lr", "latent_dim", "batch_size"}
    if space == "vaegan":
        searched |= {"adversarial_loss_scale", "reconstruction_layer"}
    assert set(search_space(plan)) == searched  # an image budget: no epochs to search
    tp = trial_plan(plan)
    assert tp.actor_names == plan.actor_names and tp.ns == plan.ns
    assert tp.constants["model"] == space and tp.constants["arch"] == "small"
    epochs = plan_for(tmp_path, space=space, epochs_range=(2, 5))
    assert "epochs" in search_space(epochs) and epochs.trial_constants["train_images"] is None


def test_searcher_asks_the_paper_point_first_from_a_persistent_study(tmp_path):
    import optuna

    from sweeps.tuner import make_searcher, search_space

    plan = plan_for(tmp_path, space="vaegan", seed=3)
    searcher = make_searcher(plan)
    assert searcher.metric == "ts_5k_mean" and searcher.mode == "max"
    searcher.set_search_properties(None, None, search_space(plan))
    first = searcher.suggest("t1")
    assert first == plan.paper_point
    # the paper's VAE-GAN on MNIST, its batch of 256 clipped to the quick VAE-GAN's largest
    assert first["lr"] == 1e-4 and first["batch_size"] == 64
    study = optuna.load_study(study_name=plan.study_name, storage=plan.optuna_url)
    assert len(study.trials) == 1
    assert plan.optuna_url == f"sqlite:///{tmp_path / 's' / 'optuna.db'}"
    # set up again on the same study (a resumed sweep): the point is not enqueued twice
    again = make_searcher(plan)
    again.set_search_properties(None, None, search_space(plan))
    waiting = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(study.trials) == 1 and not waiting


def test_an_ask_no_trial_ran_is_closed_as_failed_and_the_rest_left_alone(tmp_path):
    """A driver killed between an Optuna ask and Tune's next save leaves a RUNNING Optuna
    trial that the resumed search never runs: once the search is over it is told FAIL,
    marked as such; completed trials are untouched."""
    import optuna

    from sweeps.search import ORPHAN_ATTR, close_orphan_trials
    from sweeps.tuner import make_searcher, search_space

    plan = plan_for(tmp_path, space="vae", seed=3)
    searcher = make_searcher(plan)
    searcher.set_search_properties(None, None, search_space(plan))
    searcher.suggest("done")
    searcher.on_trial_complete("done", {"ts_5k_mean": 2.5, "status": "finished"})
    searcher.suggest("asked-then-killed")
    assert close_orphan_trials(plan.study_name, plan.optuna_url) == 1
    study = optuna.load_study(study_name=plan.study_name, storage=plan.optuna_url)
    done, orphan = study.trials
    assert done.state == optuna.trial.TrialState.COMPLETE and done.value == 2.5
    assert ORPHAN_ATTR not in done.user_attrs
    assert orphan.state == optuna.trial.TrialState.FAIL and ORPHAN_ATTR in orphan.user_attrs
    assert close_orphan_trials(plan.study_name, plan.optuna_url) == 0


def test_paper_point_is_the_papers_setting():
    p = paper_point("vaegan", "fashion-mnist", PRESETS["paper"])
    assert p == {"lr": 1e-3, "latent_dim": 32, "epochs": 85, "batch_size": 256,
                 "adversarial_loss_scale": 0.8, "reconstruction_layer": 3}
    assert "epochs" not in paper_point("vae", "mnist", PRESETS["smoke"])  # constant 1 there
    assert "epochs" not in paper_point("vae", "mnist", PRESETS["quick"])  # an image budget


def test_multi_objective_and_asha(tmp_path):
    from sweeps.tuner import make_scheduler, make_searcher

    plan = plan_for(tmp_path, space="vae", preset="smoke", objective="is+ts", scheduler="asha",
                    max_concurrent=2)
    assert objective_keys("is+ts", (1000, 5000)) == ("is_5k_mean", "ts_5k_mean")
    assert plan.objective == ("is_500_mean", "ts_500_mean")  # smoke: 200 / 500
    searcher = make_searcher(plan)
    assert type(searcher).__name__ == "ConcurrencyLimiter"
    assert searcher.metric == ["is_500_mean", "ts_500_mean"]
    scheduler = make_scheduler(plan)
    assert type(scheduler).__name__ == "PaperPointASHA"
    # several objectives: their probes' mean ratio to the real-data ceiling
    assert scheduler.metric == "probe_objective_200"
    assert make_scheduler(plan_for(tmp_path, space="vae", preset="smoke")) is None


@pytest.mark.parametrize("objective, metric, labelled", [
    ("ts", "probe_ts_200", False), ("is", "probe_is_200", False),
    ("cas", "probe_cas_200", True), ("ts+cas", "probe_objective_200", True)])
def test_early_stopping_judges_the_objectives_own_probe(tmp_path, objective, metric, labelled):
    from sweeps.tuner import make_scheduler, trial_plan

    plan = plan_for(tmp_path, space="vae", preset="smoke", objective=objective,
                    scheduler="asha")
    assert make_scheduler(plan).metric == metric
    ceiling = {"ts_500_mean": 9.0, "is_500_mean": 8.0, "cas_500": 0.9}
    tp = trial_plan(plan, ceiling)
    assert tp.probe_components == OBJECTIVES[objective]
    assert set(tp.probe_ceilings) == set(OBJECTIVES[objective])
    assert ("cas" in tp.probe_components) == labelled


def test_an_objective_without_a_probe_is_refused_before_anything_runs(tmp_path, monkeypatch):
    from scorers import keys
    from sweeps.plan import PlanError

    monkeypatch.setitem(keys.OBJECTIVES, "fid", ("fid",))
    with pytest.raises(PlanError, match="fid has none; pass --scheduler none"):
        plan_for(tmp_path, space="vae", preset="smoke", objective="fid", scheduler="asha")


def test_estimate_counts_scorers_asha_and_waves(tmp_path):
    from sweeps.estimate import CEILING_MINUTES, estimate

    quick = PRESETS["quick"]
    cached = estimate(quick, "vae", "mnist", 8, 2, False, "asha", 0)
    cold = estimate(quick, "vae", "mnist", 8, 2, False, "asha", 2)
    # new scorers: their fine-tunes, and a real-data ceiling no sweep has cached yet
    assert cold[0] == pytest.approx(cached[0] + quick.scorer_minutes("mnist", False)
                                    + CEILING_MINUTES)
    fashion = estimate(quick, "vae", "fashion-mnist", 8, 2, False, "asha", 2)
    assert fashion[0] > cold[0]  # its scorers train longer
    assert cached[0] < cached[1]  # ASHA stops some trials: expected below the worst case
    none = estimate(quick, "vae", "mnist", 8, 2, False, "none", 0)
    assert none[0] == none[1] == pytest.approx(cached[1])
    # four confirmation trials, two at a time: two more waves of whole trials
    confirmed = estimate(quick, "vae", "mnist", 8, 2, False, "asha", 0, confirmations=4)
    wave = none[1] - estimate(quick, "vae", "mnist", 6, 2, False, "none", 0)[1]
    assert confirmed[0] == pytest.approx(cached[0] + 2 * wave)
    assert confirmed[1] == pytest.approx(cached[1] + 2 * wave)


def test_the_plan_resolves_the_confirmation_from_the_preset_and_the_request(tmp_path):
    quick = plan_for(tmp_path, space="vae")
    assert quick.confirm_top == 2 and quick.confirm_seeds == (1000, 1001)
    assert "then the top 2 again on 2 fresh seeds each" in __import__(
        "sweeps.run", fromlist=["describe"]).describe(quick)
    mine = plan_for(tmp_path, space="vae", preset="smoke", confirm_top=1, confirm_seeds=3,
                    seed=7)
    assert mine.confirm_top == 1 and mine.confirm_seeds == (1007, 1008, 1009)
    assert plan_for(tmp_path, space="vae", preset="smoke").confirm_top == 0
    with pytest.raises(ValueError, match="confirm_seeds 0 is invalid"):
        plan_for(tmp_path, space="vae", confirm_seeds=0)


@pytest.mark.parametrize("kwargs,needle", [
    (dict(space="gan"), "unknown space 'gan'"),
    (dict(space="vae", preset="huge"), "unknown preset 'huge'"),
    (dict(space="vae", objective="fid"), "unknown objective 'fid'"),
    (dict(space="vae", lr_range=(1e-2, 1e-4)), "lr range"),
    (dict(space="vae", epochs_range=(0, 3)), "epochs range"),
    (dict(space="vae", num_samples=0), "num_samples 0"),
    (dict(space="vae", conditional="yes"), "conditional 'yes' unknown"),
])
def test_request_rejects_bad_values(kwargs, needle, tmp_path):
    with pytest.raises(ValueError, match=needle):
        SweepRequest(storage=str(tmp_path), **kwargs)


def test_request_from_dict_refuses_unknown_keys(tmp_path):
    with pytest.raises(ValueError, match="'spce'"):
        SweepRequest.from_dict({"space": "vae", "spce": "vae"})


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
    (["--space", "vae", "--train-images", "0"], "0 must be >= 1"),
    (["--space", "vae", "--scheduler", "hyperband"], "'hyperband'"),
    (["--space", "vae", "--conditional", "maybe"], "'maybe'"),
    (["--space", "vae", "--sampler", "gmm"], "'gmm'"),
    (["--space", "vae", "--sampler", "latent-gmm", "--conditional"], "--conditional on"),
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


@pytest.mark.parametrize("space", sorted(SPACES))
def test_conditional_on_every_trial_or_searched(space, tmp_path):
    from sweeps.spaces import is_paper_point
    from sweeps.tuner import search_space, trial_plan

    off = plan_for(tmp_path, space=space)
    assert "conditional" not in search_space(off) and "conditional" not in off.trial_constants
    on = plan_for(tmp_path, space=space, conditional="on")
    assert trial_plan(on).constants["conditional"] is True
    assert "conditional" not in search_space(on) and "conditional" not in on.paper_point
    searched = plan_for(tmp_path, space=space, conditional="search")
    assert "conditional" in search_space(searched)
    assert searched.paper_point["conditional"] is False  # the paper's models are unconditional
    assert not is_paper_point({**searched.paper_point, "conditional": True},
                              searched.paper_point)
    from sweeps.plan import SweepPlan

    assert SweepPlan.from_dict(searched.to_dict()).request.conditional == "search"


def test_report_shows_cas_and_retrains_a_conditional_winner(tmp_path):
    import json

    rows = [{"trial_id": "a", "status": "finished", "ts_5k_mean": 7.0, "cas_5k": 0.91,
             "conditional": True,
             "_config": {"model": "vae", "dataset": "mnist", "arch": "small", "lr": 1e-3,
                         "conditional": True}},
            {"trial_id": "b", "status": "finished", "ts_5k_mean": 6.0, "cas_5k": 0.95,
             "conditional": False, "_config": {}}]
    table = report.format_table(report.rank(rows, ["cas_5k"]), "vae", "mnist", (1000, 5000),
                                {"cas_5k": 0.97})
    head, first = table.splitlines()[:2]
    assert "cas_5k" in head and "conditional" in head
    assert first.split()[0] == "b" and "0.970" in table  # ranked by CAS, the real ceiling shown
    path = report.write_best_config(tmp_path, rows[0], ["cas_5k"])
    assert json.loads(path.read_text())["retrain"].endswith("--conditional --out runs/best")


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

    from sweeps import sweep_record
    from sweeps.sweep import new_state, parent_run_fields

    plan = resolve_plan(SweepRequest(space="vae", preset="smoke", storage=str(tmp_path),
                                     mlflow_uri="https://bob:s3cret@mlflow.example.org",
                                     optuna_storage="postgresql://alice:s3cret@db/optuna"), CPU2)
    params, tags = parent_run_fields(plan, {"vit": {"scorer_id": "x", "test_accuracy": 0.9}})
    logged = json.dumps([params, tags])
    assert "s3cret" not in logged
    assert params["mlflow_uri"] == "https://bob:***@mlflow.example.org"
    assert tags["optuna_storage"] == "postgresql://alice:***@db/optuna"
    assert params["space"] == "vae" and tags["scorer.vit.id"] == "x"
    text = report.how_to_look(tmp_path, plan.mlflow_uri, plan.optuna_url)
    assert "s3cret" not in text and "bob:***@" in text
    # The sweep file must keep the real URLs to resume, so only its owner may read it.
    new_state(plan)
    saved = sweep_record.read_state(tmp_path)
    assert saved["request"]["optuna_storage"].endswith("s3cret@db/optuna")
    assert saved["phase"] == "planned" and saved["plan"]["sweep_id"] == plan.sweep_id
    assert stat.S_IMODE(sweep_record.sweep_file(tmp_path).stat().st_mode) == 0o600


def test_settings_make_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = SweepRequest(space="vae", data_dir="data/mnist", scorers_dir="~/scorers")
    assert s.data_dir == str(tmp_path / "data" / "mnist")
    assert s.scorers_dir == str(Path("~/scorers").expanduser().resolve())


def test_path_variables_become_absolute_before_ray(tmp_path, monkeypatch):
    from sweeps.preflight import absolute_path_variables

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GENSWEEP_DATA_DIR", "../shared/data")
    monkeypatch.setenv("GENSWEEP_CACHE_DIR", "cache")
    absolute_path_variables()
    assert os.environ["GENSWEEP_DATA_DIR"] == str((tmp_path / "../shared/data").resolve())
    assert os.environ["GENSWEEP_CACHE_DIR"] == str(tmp_path / "cache")


def test_results_round_trip_keeps_trial_ids_as_text(tmp_path):
    """Tune's ids look like numbers to Python's float() ("12345_00001"); a finished sweep's
    report read them back as ints and crashed on ``id[-8:]``."""
    from sweeps import report

    rows = [{"trial_id": "12345_00001", "lr": 0.002, "batch_size": 32, "paper_config": True,
             "ts_5k_mean": float("nan"), "is_5k_mean": 6.5, "status": "finished"},
            {"trial_id": "1e5_00002", "lr": 1e-4, "batch_size": 64, "paper_config": False,
             "ts_5k_mean": 7.25, "is_5k_mean": None, "status": "error"}]
    report.write_results(tmp_path, rows)
    back = report.read_results(tmp_path)
    assert [r["trial_id"] for r in back] == ["12345_00001", "1e5_00002"]
    assert back[0]["batch_size"] == 32 and back[1]["lr"] == 1e-4 and back[0]["paper_config"]
    assert math.isnan(back[0]["ts_5k_mean"]) and back[1]["is_5k_mean"] is None
    assert "5_00002" in report.format_table(back, "vae", "mnist", (1000, 5000), None)



def test_asha_lets_the_paper_point_finish(tmp_path):
    """ASHA judges the paper-config trial like any other, but never stops it: the table
    compares the best trial with its final scores."""
    from ray.tune.experiment import Trial

    from sweeps.tuner import make_scheduler

    plan = plan_for(tmp_path, space="vae")  # quick: ASHA on the TS probe
    scheduler = make_scheduler(plan)
    key, rung = scheduler.metric, plan.preset.trial_images() / 2  # a rung: half the budget
    point = plan.paper_point
    configs = [{**point, "lr": point["lr"] * 3}, {**point, "lr": point["lr"] * 5}, point,
               {**point, "lr": point["lr"] * 7}]
    actions = []
    for i, (config, probe) in enumerate(zip(configs, [8.0, 7.5, 1.0, 1.1])):
        trial = Trial("__fake", stub=True, config=config, trial_id=f"t{i}")
        scheduler.on_trial_add(None, trial)
        actions.append(scheduler.on_trial_result(None, trial, {"images_seen": rung,
                                                               key: probe}))
    assert actions[2] == scheduler.CONTINUE  # the paper point, last of its rung: goes on
    assert actions[3] == scheduler.STOP  # a trial as weak as it: stopped
    # at the budget itself (ASHA's top rung) training is done: a weak trial draws its scores
    budget = plan.preset.trial_images()
    for i, probe in enumerate([8.0, 7.5, 1.1]):
        trial = Trial("__fake", stub=True, config=configs[i if i < 2 else 3],
                      trial_id=f"b{i}")
        scheduler.on_trial_add(None, trial)
        last = scheduler.on_trial_result(None, trial, {"images_seen": budget, key: probe})
    assert last == scheduler.CONTINUE
    # a trial whose last round reaches the budget exactly still reports its scores after it
    # (ASHA used to stop it there, and the best trial of a sweep lost its scores)
    done = Trial("__fake", stub=True, config=configs[0], trial_id="t9")
    scheduler.on_trial_add(None, done)
    end = {"images_seen": plan.preset.trial_images(), key: 9.0}
    assert scheduler.on_trial_result(None, done, end) == scheduler.CONTINUE


def test_a_tune_folder_without_an_experiment_state_is_not_resumed(tmp_path):
    """Tune writes tuner.pkl when fit() starts, then its experiment state, then its search
    generator's state; a sweep killed before the last must start its tuning afresh, not
    "restore" into a run of only the trials made so far."""
    import pickle

    from sweeps.tuner import can_resume

    tune_dir = tmp_path / "tune"
    assert not can_resume(tune_dir)  # no folder
    tune_dir.mkdir()
    (tune_dir / "tuner.pkl").write_bytes(pickle.dumps({}))
    assert not can_resume(tune_dir)  # the window a kill can hit
    (tune_dir / "experiment_state-2026-12-04_08-48-15.json").write_text("{}")
    # the trials are saved but not how many to make: a resume would make no more
    assert not can_resume(tune_dir)
    (tune_dir / "search_gen_state-2026-12-04_08-48-15.json").write_bytes(pickle.dumps({}))
    assert can_resume(tune_dir)


def test_state_a_kill_cut_short_is_dropped_and_the_resume_reads_the_set_before_it(tmp_path):
    """Tune rewrites a session's state files in place: a kill mid-write left a 0-byte
    search_gen_state in CI (2026-12-07), the restore could not read it and started an empty
    experiment that ran no trial. The cut session's whole set goes; the one before stays."""
    import pickle

    from sweeps.tuner import can_resume, drop_cut_short_state

    tune_dir = tmp_path / "tune"
    tune_dir.mkdir()
    (tune_dir / "tuner.pkl").write_bytes(pickle.dumps({}))
    before, cut = "2026-12-07_20-54-37", "2026-12-07_20-55-13"
    for stamp in (before, cut):
        (tune_dir / f"experiment_state-{stamp}.json").write_text('{"trials": []}')
        (tune_dir / f"searcher-state-{stamp}.pkl").write_bytes(pickle.dumps({"n": 1}))
        (tune_dir / f"search_gen_state-{stamp}.json").write_bytes(pickle.dumps({"n": 1}))
    (tune_dir / f"search_gen_state-{cut}.json").write_bytes(b"")  # the kill's mid-write
    assert can_resume(tune_dir)
    assert sorted(f.name for f in tune_dir.iterdir()) == [
        f"experiment_state-{before}.json", f"search_gen_state-{before}.json",
        f"searcher-state-{before}.pkl", "tuner.pkl"]
    # a pickle cut mid-way (no STOP opcode), or JSON cut mid-way, counts as cut too
    (tune_dir / f"searcher-state-{before}.pkl").write_bytes(pickle.dumps({"n": 1})[:-3])
    assert not can_resume(tune_dir)  # the only set was cut: the tuning starts afresh
    (tune_dir / f"experiment_state-{cut}.json").write_text('{"trials": [')
    assert drop_cut_short_state(tune_dir) == [f"experiment_state-{cut}.json"]
    (tune_dir / "tuner.pkl").write_bytes(b"")
    assert drop_cut_short_state(tune_dir) == ["tuner.pkl"]


def test_a_stop_that_lands_inside_an_import_is_still_a_stop():
    """CI caught SIGTERM arriving while TensorFlow imported: its pybind module turned the
    KeyboardInterrupt into ``ImportError: initialization failed`` and the sweep died with a
    traceback and exit 1 instead of 130 and the resume command. Here the same conversion is
    made by hand around a real SIGTERM. ``finetune.py`` stops the same way."""
    import signal

    from sweeps.run import stop_on_signals

    def import_that_swallows_the_interrupt():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except KeyboardInterrupt as exc:
            raise ImportError("initialization failed") from exc

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with stop_on_signals():
            import_that_swallows_the_interrupt()
    assert signal.getsignal(signal.SIGTERM) is before  # handlers are given back
    # a KeyboardInterrupt that a library swallows is asked for again
    started = time.time()
    with pytest.raises(KeyboardInterrupt):
        with stop_on_signals():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            except KeyboardInterrupt:
                pass
            time.sleep(30)
    assert time.time() - started < 10
    # without a stop, an error stays what it is
    with pytest.raises(ImportError):
        with stop_on_signals():
            raise ImportError("a real one")
