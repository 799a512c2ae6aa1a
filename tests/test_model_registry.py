"""The winner as a registered MLflow model: logged as code plus safetensors, registered in a
real ``mlflow server``'s registry (SQLite backend), loaded by name with
``mlflow.pyfunc.load_model``, and drawing what ``gensweep synthesize`` draws."""
import json

import faultkit as fk
import numpy as np
import pytest

from trainables.config import TrainConfig

TINY = dict(arch="small", subset=600, test_subset=300, batch_size=100, n_samples=(64,))
NAME = "gensweep-mnist-vae"


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A tiny VAE's final checkpoint, registered twice from the same sweep (the second call
    is what a replay does)."""
    from mlflow import MlflowClient

    from sweeps.model_registry import register_generator
    from trainables.trainable import LocalReporter, run_training

    root = tmp_path_factory.mktemp("registry")
    checkpoint = run_training(TrainConfig(model="vae", epochs=1, **TINY),
                              LocalReporter(root / "run")).final_dir
    server = fk.MlflowServer(root / "mlflow")
    server.start()
    try:
        client = MlflowClient(server.uri)
        run_id = client.create_run(client.create_experiment("sweep")).info.run_id
        tags = {"confirmed_ts_500_mean": "3.25", "trial_id": "abc"}
        first = register_generator(server.uri, run_id, checkpoint, NAME, tags, "sweep-1")
        again = register_generator(server.uri, run_id, checkpoint, NAME, tags, "sweep-1")
        yield {"uri": server.uri, "checkpoint": checkpoint, "first": first, "again": again,
               "run_id": run_id, "client": client}
    finally:
        server.kill()


def test_the_winner_is_registered_once_with_its_scores_and_no_pickle(registered, tmp_path):
    assert registered["first"] == registered["again"] == f"models:/{NAME}/1"
    versions = [v for v in registered["client"].search_model_versions(f"name = '{NAME}'")
                if v.tags.get("gensweep.sweep_id") == "sweep-1"]
    assert len(versions) == 1  # the replayed call registered nothing twice
    tags = versions[0].tags
    assert tags["confirmed_ts_500_mean"] == "3.25" and tags["gensweep.sweep_id"] == "sweep-1"
    assert len(tags["gensweep.checkpoint_sha256"]) == 64
    assert versions[0].run_id == registered["run_id"]  # logged on the sweep's parent run
    from sweeps.model_registry import fetch_checkpoint

    # the whole model, as --model downloads it: the checkpoint folder is artifacts/checkpoint
    local = fetch_checkpoint(registered["first"], registered["uri"], tmp_path).parents[1]
    files = {p.relative_to(local).as_posix() for p in __import__("pathlib").Path(local).rglob("*")
             if p.is_file()}
    assert {"artifacts/checkpoint/model.safetensors", "artifacts/checkpoint/state.json",
            "generator_pyfunc.py", "code/trainables/draws.py", "MLmodel"} <= files
    assert not [f for f in files if f.endswith((".pkl", ".pickle", ".pt", ".pth"))], files


def test_a_model_logged_before_a_failure_is_registered_not_logged_again(registered):
    """A replay after the server died between logging the model and registering it: the
    logged model is found by its identity tags and registered; the parent run's status is
    left as it was."""
    from mlflow import MlflowClient

    from sweeps import model_registry as mr

    client = MlflowClient(registered["uri"])
    run = client.get_run(registered["run_id"])
    status = run.info.status
    identity = {mr.SWEEP_TAG: "sweep-2",
                mr.SHA_TAG: mr.checkpoint_sha256(registered["checkpoint"])}
    mr._log(registered["uri"], client, run, registered["checkpoint"], identity)  # then "died"
    before = client.search_logged_models([run.info.experiment_id])
    uri = mr.register_generator(registered["uri"], registered["run_id"],
                                registered["checkpoint"], NAME, {"trial_id": "abc"}, "sweep-2")
    assert uri == f"models:/{NAME}/2"
    assert len(client.search_logged_models([run.info.experiment_id])) == len(before)
    assert client.get_run(registered["run_id"]).info.status == status


def test_registering_leaves_the_process_tracking_settings_as_they_were(registered,
                                                                       monkeypatch):
    """Registration points MLflow's fluent API at the sweep's server for a moment only: a
    client the caller makes afterwards, and a subprocess it starts, still resolve their own
    tracking and registry URIs (a leaked one sent later lookups to a server long gone)."""
    import os

    import mlflow
    from mlflow import MlflowClient

    from sweeps.model_registry import register_generator

    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(key, raising=False)
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)
    elsewhere = "http://127.0.0.1:9"
    register_generator(registered["uri"], registered["run_id"], registered["checkpoint"],
                       NAME, {"trial_id": "abc"}, "sweep-1")
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ
    assert mlflow.get_registry_uri() == mlflow.get_tracking_uri() != registered["uri"]
    assert MlflowClient(elsewhere)._registry_uri == elsewhere


def test_loaded_by_name_it_draws_what_synthesize_draws(registered, tmp_path, monkeypatch):
    """load_model("models:/NAME/1").predict equals gensweep synthesize from the checkpoint
    folder and from --model, for the same seed; a class draws that class."""
    import mlflow

    from sweeps import synthesize
    from trainables.checkpoint import load_generator
    from trainables.draws import draw

    # through the environment, which monkeypatch puts back: nothing leaks to later tests
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registered["uri"])
    model = mlflow.pyfunc.load_model(registered["first"])
    drawn = model.predict({"n": 40, "seed": 2})
    assert drawn.dtype == np.uint8 and drawn.shape == (40, 28, 28)

    # --mlflow-uri wins over a process that points elsewhere (nothing listens on port 9)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    exports = {}
    for source in (["--checkpoint", str(registered["checkpoint"])],
                   ["--model", registered["first"], "--mlflow-uri", registered["uri"]]):
        out = tmp_path / f"{source[0][2:]}.npz"
        assert synthesize.main([*source, "--n", "40", "--seed", "2", "--no-score",
                                "--out", str(out)]) == 0
        with np.load(out, allow_pickle=False) as data:
            exports[source[0]] = data["images"], data["labels"]
    assert np.array_equal(exports["--checkpoint"][0], drawn)
    assert np.array_equal(exports["--model"][0], drawn)
    sheet = json.loads((tmp_path / "model.json").read_text())
    assert sheet["checkpoint"] == registered["first"]
    # the export from the registry is named on the run that logged the generator
    run = registered["client"].get_run(registered["run_id"])
    (synthetic,) = [i for i in run.inputs.dataset_inputs if i.tags[0].value == "synthetic"]
    assert synthetic.dataset.name == "synthetic-model.npz"
    assert json.loads(synthetic.dataset.source)["generator"] == registered["first"]

    net, cfg, _ = load_generator(registered["checkpoint"])
    threes = model.predict({"n": 12, "class": 3, "sampler": "class-gmm", "seed": 5})
    assert np.array_equal(threes, draw(net, cfg, "class-gmm", 12, 5, label=3)[0])
    prior = model.predict({"n": 8, "sampler": "prior", "seed": 1})
    assert np.array_equal(prior, draw(net, cfg, "prior", 8, 1)[0])
    with pytest.raises(Exception, match="a class .* needs a labelled sampler"):
        model.predict({"n": 8, "sampler": "prior", "class": 2})
    with pytest.raises(Exception, match="not one of"):
        model.predict({"n": 8, "sampler": "reconstruction"})


def test_a_missing_model_or_registry_is_one_line_and_writes_nothing(registered, tmp_path,
                                                                    capsys):
    from sweeps import synthesize

    out = tmp_path / "x.npz"
    cases = [(["--model", f"models:/{NAME}/7", "--mlflow-uri", registered["uri"]], 2,
              "not in the registry"),
             (["--model", "gensweep-mnist-vae", "--mlflow-uri", registered["uri"]], 2,
              "expected models:/NAME/VERSION"),
             (["--model", f"models:/{NAME}/1", "--mlflow-uri",
               f"http://127.0.0.1:{fk.free_port()}"], 1,
              # no embedded store to fall back on: the advice names the server to pass
              "--port 5000`), or pass the --mlflow-uri of the server that holds the model")]
    for argv, code, words in cases:
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            synthesize.main([*argv, "--no-score", "--out", str(out)])
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == code and len(err) == 1 and words in err[0], (argv, err)
        assert "Traceback" not in err[0]
    assert not list(tmp_path.iterdir())  # nothing written, nothing half-written
