"""The estimate measured on this machine (sweeps.calibrate) and the progress line
(sweeps.progress): real timings of real steps, real sweep records on disk."""
import json
import time

import pytest

from sweeps import sweep_record
from sweeps.calibrate import Speeds
from sweeps.estimate import estimate
from sweeps.plan import Cluster, resolve_plan
from sweeps.presets import PRESETS
from sweeps.progress import SweepProgress, current_phase, following, minutes_left, trial_rates
from sweeps.request import SweepRequest

CPU2 = Cluster(cpus=2, gpus=0, driver_cpus=2, driver_gpus=0, max_node_cpus=2, max_node_gpus=0)


def test_a_trials_training_rate_is_timed_on_its_own_steps():
    from trainables.config import TrainConfig
    from trainables.throughput import training_rate

    vae = training_rate(TrainConfig(model="vae", arch="small", batch_size=64), steps=4)
    vaegan = training_rate(TrainConfig(model="vaegan", arch="small", batch_size=64), steps=4)
    # a VAE-GAN step is the VAE's plus two discriminator passes (presets.py: about 3x)
    assert 0 < vaegan < vae
    with pytest.raises(ValueError, match="steps must be at least 1"):
        training_rate(TrainConfig(model="vae", arch="small"), steps=0)


def test_a_scorers_batches_are_timed_and_scaled_to_its_fine_tune():
    from scorers.spec import TrainSpec
    from scorers.speed_probe import finetune_minutes, time_scorer

    spec = TrainSpec("mnist", "vit", epochs=2, subset=3000, batch_size=32, eval_subset=1000)
    per_image = time_scorer(spec, batches=2)
    assert per_image["train_s"] > 0 and per_image["predict_s"] > 0
    # training costs a forward and a backward pass; prediction a forward pass alone
    assert per_image["train_s"] > per_image["predict_s"]
    # two epochs of 3,000 training and 1,000 evaluation images, then the three degraded
    # checks of 1,000 images each (scorers.degrade: at most 2,000 of the evaluation images)
    assert finetune_minutes(spec, 0.01, 0.001, 30.0) == pytest.approx(
        (30 + 2 * (3000 * 0.01 + 1000 * 0.001) + 3 * 1000 * 0.001) / 60)
    # all 60,000 images and the 10,000 test images when the spec names no subsets; the
    # Inception scorer also re-estimates its BatchNorm statistics on 2,048 images an epoch
    assert finetune_minutes(TrainSpec("mnist", "vit", epochs=1), 0.01, 0.001) == \
        pytest.approx((600 + 10 + 6) / 60)
    assert finetune_minutes(TrainSpec("mnist", "inception", epochs=1), 0.01, 0.001) == \
        pytest.approx((600 + 10 + 2.048 + 6) / 60)


def test_measured_speeds_replace_the_presets_rates():
    quick = PRESETS["quick"].for_sweep("vaegan", "mnist")
    rate = quick.images_per_s_cpu["vaegan"]
    preset = estimate(quick, "vaegan", "mnist", 8, 2, False, "asha", 2, 4)
    same = estimate(quick, "vaegan", "mnist", 8, 2, False, "asha", 2, 4,
                    Speeds(images_per_s=rate, scorer_minutes={"inception": 20.0, "vit": 3.0},
                           seconds=60))
    half = estimate(quick, "vaegan", "mnist", 8, 2, False, "asha", 2, 4,
                    Speeds(images_per_s=rate / 2, scorer_minutes={"inception": 20.0,
                                                                  "vit": 3.0}, seconds=60))
    assert same.phases["search"] == pytest.approx(preset.phases["search"])
    assert same.phases["scorers"] == pytest.approx(23.0)  # the measured fine-tunes
    # half the speed: twice the trials' training and scoring, in search and confirmation
    for phase in ("search", "confirmation"):
        assert half.phases[phase] == pytest.approx(2 * same.phases[phase])
    assert half.phases["setup"] == same.phases["setup"]
    assert sum(half.phases.values()) == pytest.approx(half.expected)
    # cached scorers: nothing to fine-tune, whatever was measured
    cached = estimate(quick, "vaegan", "mnist", 8, 2, False, "asha", 0, 4,
                      Speeds(images_per_s=rate, scorer_minutes={}, seconds=5))
    assert cached.phases["scorers"] == 0


def test_the_plan_records_its_speeds_and_phases_and_reads_them_back(tmp_path):
    from sweeps.plan import SweepPlan
    from sweeps.run import describe

    speeds = Speeds(images_per_s=300.0, scorer_minutes={"inception": 14.2, "vit": 3.1},
                    seconds=71.0)
    request = SweepRequest(space="vaegan", storage=str(tmp_path / "s"))
    plan = resolve_plan(request, CPU2, speeds=speeds)
    assert plan.speeds == speeds
    assert sum(plan.estimate_phases.values()) == pytest.approx(plan.estimate_minutes, abs=0.1)
    again = SweepPlan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert again == plan
    # the estimate and the progress line assume one training rate: the measured one here
    assert again.trial_rate == SweepProgress(again).planned_rate == 300.0
    unmeasured = resolve_plan(request, CPU2)
    assert unmeasured.trial_rate == unmeasured.preset.images_per_s_cpu["vaegan"] != 300.0
    line = describe(plan)
    assert "measured here in 71 s: a trial trains 300 images/s" in line
    assert "inception fine-tune 14.2 min" in line and "scorers 17" in line
    assert "not measured on this machine" in describe(resolve_plan(request, CPU2))
    cached = describe(resolve_plan(request, CPU2, scorer_cached=lambda spec: True))
    assert "(setup 0.5, search " in cached  # under a minute, yet not printed as "0"


def test_only_trials_on_this_machines_cpu_are_measured():
    from sweeps.calibrate import measured_here

    local = SweepRequest(space="vae")
    assert measured_here(local, 0)
    assert not measured_here(local, 1)  # trials on GPUs
    assert not measured_here(SweepRequest(space="vae", address="127.0.0.1:6379"), 0)
    assert PRESETS["quick"].measure_speed and PRESETS["paper"].measure_speed
    assert not PRESETS["smoke"].measure_speed


def test_the_phase_comes_from_the_record():
    assert current_phase("planned", []) == "scorers"
    assert current_phase("planned", [], builds_scorers=False) == "setup"
    assert current_phase("scorers-ready", ["start", "scorers-ready"]) == "setup"
    assert current_phase("tuning", ["start", "tuning"]) == "search"
    assert current_phase("tuning", ["start", "tuning", "tuning-done"]) == "report"
    assert current_phase("confirming", ["start", "confirming"]) == "confirmation"
    assert current_phase("confirming", ["confirming", "confirming-done"]) == "report"
    assert current_phase("finished", []) == "done"


def test_the_time_left_rescales_the_trials_phases_by_their_measured_speed():
    phases = {"scorers": 10.0, "setup": 0.5, "search": 20.0, "confirmation": 8.0}
    assert minutes_left("scorers", 4.0, phases, 1.0) == (6.0 + 28.5, 0.0)
    # trials twice as slow as assumed: the search and the confirmation take twice as long
    assert minutes_left("search", 10.0, phases, 2.0) == (30.0 + 16.0, 0.0)
    assert minutes_left("search", 45.0, phases, 2.0) == (16.0, 5.0)  # past its estimate
    assert minutes_left("report", 0.1, phases, 1.0) == (0.0, 0.0)
    assert minutes_left("done", 3.0, phases, 1.0) == (0.0, 0.0)


def _result(folder, *rows):
    folder.mkdir(parents=True)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    (folder / "result.json").write_text(text + '{"images_per_s": 1')  # a line being written


def _milestone(sweep_dir, name, at):
    with open(sweep_dir / sweep_record.PHASE_LOG, "a") as fh:
        fh.write(json.dumps({"phase": name, "time": at}) + "\n")


def test_the_progress_line_follows_a_sweeps_record(tmp_path):
    request = SweepRequest(space="vaegan", storage=str(tmp_path / "s"))
    speeds = Speeds(images_per_s=400.0, scorer_minutes={"inception": 5.0, "vit": 1.0},
                    seconds=30.0)
    plan = resolve_plan(request, CPU2, speeds=speeds)
    sweep_dir = tmp_path / "s"
    sweep_dir.mkdir()
    # an earlier start, killed after its scorers were ready, then a cut-short line
    _milestone(sweep_dir, "start", 100.0)
    _milestone(sweep_dir, "scorers-ready", 200.0)
    with open(sweep_dir / sweep_record.PHASE_LOG, "a") as fh:
        fh.write('{"phase": "tuni\n')
    clock = [1000.0]
    progress = SweepProgress(plan, clock=lambda: clock[0])
    state = sweep_record.advance(sweep_dir, {"plan": plan.to_dict()}, "planned")
    _milestone(sweep_dir, "start", 1000.5)
    clock[0] += 1
    # the earlier start's scorers-ready is not this run's: its scorers are still to build
    assert progress.observe() and progress.phase == "scorers"
    clock[0] += 240  # 4 minutes into the fine-tunes
    assert progress.line().startswith("progress: scorers (4.0 min in this phase")
    left = sum(plan.estimate_phases.values()) - 4
    assert f"about {left:.0f} min left" in progress.line()
    clock[0] += 60 * plan.estimate_phases["scorers"]  # 4 minutes past the estimate
    assert "4.0 min past this phase's estimate" in progress.line()

    _milestone(sweep_dir, "scorers-ready", clock[0])
    assert progress.observe() and progress.phase == "setup"
    state = sweep_record.advance(sweep_dir, state, "tuning")
    assert progress.observe() and progress.phase == "search"
    assert progress.durations == {"scorers": pytest.approx(4.0 + plan.estimate_phases["scorers"]),
                                  "setup": 0.0}
    _result(sweep_dir / "tune" / "trial_a", {"images_per_s": 150.0}, {"images_per_s": 200.0})
    _result(sweep_dir / "tune" / "trial_b", {"images_per_s": 200.0})
    assert trial_rates(sweep_dir / "tune") == [200.0, 200.0]
    line = progress.line()
    assert "trials train 200 images/s, the estimate assumed 400" in line
    left = 2 * (plan.estimate_phases["search"] + plan.estimate_phases["confirmation"])
    assert f"about {left:.0f} min left" in line
    assert progress.compare().startswith(
        f"scorers {4.0 + plan.estimate_phases['scorers']:.1f} "
        f"(estimated {plan.estimate_phases['scorers']:.1f})")


def test_a_plan_from_before_phases_were_estimated_gets_no_time_left(tmp_path):
    import dataclasses

    plan = resolve_plan(SweepRequest(space="vae", storage=str(tmp_path / "s")), CPU2)
    old = dataclasses.replace(plan, estimate_phases={}, speeds=None)
    (tmp_path / "s").mkdir()
    sweep_record.advance(tmp_path / "s", {"plan": old.to_dict()}, "tuning")
    progress = SweepProgress(old)
    assert progress.observe() and progress.phase == "search"
    assert progress.line().startswith("progress: search (") and "left" not in progress.line()
    assert progress.compare() == "not estimated"


def test_the_progress_line_is_printed_while_the_sweep_runs(tmp_path):
    request = SweepRequest(space="vae", storage=str(tmp_path / "s"))
    plan = resolve_plan(request, CPU2)
    sweep_dir = tmp_path / "s"
    sweep_dir.mkdir()
    lines = []

    def wait_for(prefix):
        deadline = time.time() + 30
        while not any(line.startswith(prefix) for line in lines):
            assert time.time() < deadline, lines
            time.sleep(0.05)

    with following(plan, out=lines.append, every_s=0.2, poll_s=0.05) as progress:
        state = sweep_record.advance(sweep_dir, {"plan": plan.to_dict()}, "planned")
        sweep_record.log_phase(sweep_dir, "start")
        wait_for("progress: scorers")
        sweep_record.advance(sweep_dir, state, "tuning")
        wait_for("progress: search")
        count = len(lines)
        deadline = time.time() + 30
        while len(lines) == count:  # and again every every_s, without a change
            assert time.time() < deadline
            time.sleep(0.05)
    assert set(progress.durations) == {"scorers"}  # the body ended in the search


@pytest.mark.slow
def test_a_sweep_on_this_machines_cpu_plans_on_speeds_measured_here(tmp_path, monkeypatch,
                                                                     smoke_scorers):
    """plan_sweep on a real local Ray: the trial's steps are timed, and only the scorer
    that is not cached yet is (the smoke ViT with one epoch more)."""
    import dataclasses

    import ray

    from sweeps.sweep import plan_sweep

    smoke = PRESETS["smoke"]
    scorers = {**smoke.scorers, "vit": {**smoke.scorers["vit"], "epochs": 2}}
    monkeypatch.setitem(PRESETS, "smoke", dataclasses.replace(smoke, measure_speed=True,
                                                              scorers=scorers))
    request = SweepRequest(space="vae", preset="smoke", storage=str(tmp_path / "s"))
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    try:
        plan = plan_sweep(request, ray)
    finally:
        ray.shutdown()
    assert plan.speeds is not None and plan.speeds.images_per_s > 0
    assert set(plan.speeds.scorer_minutes) == {"vit"}  # the Inception scorer is cached
    assert plan.estimate_phases["scorers"] == pytest.approx(plan.speeds.scorer_minutes["vit"],
                                                            abs=0.01)
    # the search as the estimate counts it at the measured rate, not at the preset's
    cluster = Cluster(cpus=2, gpus=0, driver_cpus=2, driver_gpus=0, max_node_cpus=2,
                      max_node_gpus=0)
    again = resolve_plan(request, cluster, lambda spec: True, plan.speeds)
    assert again.estimate_phases["search"] == plan.estimate_phases["search"]
    preset_rate = PRESETS["smoke"].images_per_s_cpu["vae"]
    unmeasured = resolve_plan(request, cluster, lambda spec: True)
    assert plan.estimate_phases["search"] == pytest.approx(
        unmeasured.estimate_phases["search"] * preset_rate / plan.speeds.images_per_s, rel=0.05)
