"""The real-data ceiling's cache (sweeps/ceiling.py): keyed by every input, written
atomically, ignored when unreadable or written for other inputs; and, with real scorer
actors, a second sweep on the same scorers reads back exactly what the first computed."""
import json
import os

import pytest

from scorers.scorecard import TrainingImages
from sweeps import ceiling as ce


def _scorers(tmp_path):
    dirs = {}
    for kind in ("inception", "vit"):
        folder = tmp_path / kind
        folder.mkdir()
        (folder / "metadata.json").write_text(json.dumps({"kind": kind, "created": "t0"}))
        dirs[kind] = folder
    return dirs


def _inputs(dirs, **over):
    args = {"dataset": "mnist", "ns": (1000, 5000), "train": TrainingImages(),
            "scorer_gpus": False}
    args.update(over)
    return ce.ceiling_inputs(dirs, args["dataset"], args["ns"], args["train"],
                             args["scorer_gpus"])


def _smoke_plan(tmp_path):
    from sweeps.plan import Cluster, resolve_plan
    from sweeps.request import SweepRequest

    return resolve_plan(SweepRequest(space="vae", preset="smoke", storage=str(tmp_path / "s"),
                                     data_dir=os.environ["GENSWEEP_DATA_DIR"]),
                        Cluster(cpus=2, gpus=0, driver_cpus=2, driver_gpus=0,
                                max_node_cpus=2, max_node_gpus=0))


def test_every_input_changes_the_key(tmp_path):
    dirs = _scorers(tmp_path)
    base = ce.cache_path(_inputs(dirs), root=tmp_path)
    assert base == ce.cache_path(_inputs(dirs), root=tmp_path)  # stable
    # the whole training split is the same whatever the seed (it picks only a subset)
    assert base == ce.cache_path(_inputs(dirs, train=TrainingImages(None, 1)), root=tmp_path)
    others = [ce.cache_path(_inputs(dirs, **change), root=tmp_path) for change in (
        {"dataset": "fashion-mnist"}, {"ns": (1000,)},
        {"train": TrainingImages(500, 0)}, {"train": TrainingImages(500, 1)},
        {"scorer_gpus": True})]
    # a rebuilt scorer has a new metadata.json (its creation time, accuracy, ...)
    (dirs["vit"] / "metadata.json").write_text(json.dumps({"kind": "vit", "created": "t1"}))
    others.append(ce.cache_path(_inputs(dirs), root=tmp_path))
    assert len({base, *others}) == len(others) + 1, others
    inputs = _inputs(dirs)
    assert set(inputs) == {"format", "dataset", "ns", "train", "scorers", "scorer_gpus", "code",
                           "libraries"}
    assert inputs["code"] == ce.code_digest() and len(inputs["code"]) == 64


def test_the_code_digest_covers_the_scoring_code():
    from pathlib import Path

    root = Path(ce.__file__).resolve().parent.parent
    covered = {str(p.relative_to(root)) for entry in ce._CODE
               for p in ((root / entry).rglob("*.py") if (root / entry).is_dir()
                         else [root / entry])}
    assert {"scorers/metrics.py", "scorers/utility.py", "scorers/memorisation.py",
            "scorers/classifier_scores.py", "scorers/scorecard.py", "scorers/vit.py", "scorers/inception.py",
            "sweeps/ceiling.py", "trainables/datasets.py", "trainables/device.py",
            "trainables/speed.py"} <= covered


def test_round_trip_and_what_is_not_trusted(tmp_path, caplog):
    dirs = _scorers(tmp_path)
    inputs = _inputs(dirs)
    path = ce.cache_path(inputs, root=tmp_path / "ceilings")
    assert ce.read_cached(path, inputs) is None  # nothing yet
    scores = {"is_5k_mean": 8.65, "ts_5k_mean": 9.14, "cas_5k": 0.98}
    ce.write_cached(path, inputs, scores)
    assert ce.read_cached(path, inputs) == scores
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left

    other = _inputs(dirs, ns=(1000,))
    assert ce.read_cached(path, other) is None  # a file for other inputs is not used
    path.write_text('{"inputs": ')  # torn or corrupt: computed again, with a warning
    assert ce.read_cached(path, inputs) is None
    path.write_text(json.dumps({"inputs": inputs, "ceiling": {"is_5k_mean": "8.6"}}))
    assert ce.read_cached(path, inputs) is None
    assert "ignoring" in caplog.text

    ce.write_cached(path, inputs, {"is_5k_mean": float("nan")})  # never cached
    assert ce.read_cached(path, inputs) is None


def test_a_resumed_sweep_keeps_its_recorded_ceiling_while_its_inputs_hold(tmp_path,
                                                                          monkeypatch, caplog):
    """No actors: the cache already holds this plan's ceiling, so nothing is measured."""
    monkeypatch.setenv("GENSWEEP_CACHE_DIR", str(tmp_path / "cache"))
    plan, dirs = _smoke_plan(tmp_path), _scorers(tmp_path)
    c = plan.trial_constants
    inputs = ce.ceiling_inputs(dirs, "mnist", plan.ns,
                                TrainingImages(c.get("subset"), c.get("seed", 0)))
    ce.write_cached(ce.cache_path(inputs), inputs, {"ts_500_mean": 9.0})
    recorded = {"ceiling": {"ts_500_mean": 8.0}, "inputs": json.loads(json.dumps(inputs))}
    assert ce.real_ceiling(plan, dirs, recorded) == ({"ts_500_mean": 8.0}, "sweep.json",
                                                         inputs)
    assert ce.real_ceiling(plan, dirs, None)[:2] == ({"ts_500_mean": 9.0}, "cache")
    assert ce.real_ceiling(plan, dirs, {"ceiling": None, "inputs": None})[1] == "cache"
    # its scorers were rebuilt since (a new metadata.json): the recorded ceiling is not theirs
    (dirs["vit"] / "metadata.json").write_text(json.dumps({"kind": "vit", "created": "t1"}))
    new_inputs = ce.ceiling_inputs(dirs, "mnist", plan.ns,
                                    TrainingImages(c.get("subset"), c.get("seed", 0)))
    ce.write_cached(ce.cache_path(new_inputs), new_inputs, {"ts_500_mean": 9.5})
    assert ce.real_ceiling(plan, dirs, recorded) == ({"ts_500_mean": 9.5}, "cache",
                                                         new_inputs)
    assert "measured with other scorers" in caplog.text


@pytest.mark.slow
def test_a_second_sweep_reads_back_the_ceiling_the_first_computed(tmp_path, monkeypatch,
                                                                  smoke_scorers):
    """Real scorer actors on local Ray, the smoke plan: the first call computes (and caches)
    the ceiling, the second reads the same numbers back without asking the actors."""
    import ray

    from sweeps.sweep import start_actors

    monkeypatch.setenv("GENSWEEP_CACHE_DIR", str(tmp_path / "cache"))  # ceilings only
    plan = _smoke_plan(tmp_path)
    ray.init(num_cpus=2, include_dashboard=False, namespace=plan.namespace)
    try:
        actors = start_actors(plan, smoke_scorers)
        first, source, _ = ce.real_ceiling(plan, smoke_scorers)
        assert source == "computed" and {"ts_500_mean", "is_500_mean", "cas_500"} <= set(first)
        files = list((tmp_path / "cache" / "ceilings" / "mnist").glob("*.json"))
        assert len(files) == 1
        for handle in actors["handles"].values():
            ray.kill(handle)  # the cached path must not need them
        second, source, _ = ce.real_ceiling(plan, smoke_scorers)
        assert source == "cache" and second == first
    finally:
        ray.shutdown()
