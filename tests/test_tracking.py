"""The sweep's one MLflow writer (sweeps/tracking.py) on a real SQLite store: what a failing
server misses, for the parent run and the child runs alike, is kept and replayed in order,
once; a restarted tuning forgets the kept calls of trials it will not continue."""
import json
import pickle

import pytest
from mlflow.tracking import MlflowClient

from sweeps import tracking


@pytest.fixture
def tracker(tmp_path):
    t = tracking.SweepTracker(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path)
    t.open("gensweep-vae-mnist", "sweep", {"space": "vae"}, {}, sweep_key="s1")
    return t


def journal(t) -> list[str]:
    if not t.journal_path.is_file():
        return []
    return [json.loads(line)["op"] for line in t.journal_path.read_text().splitlines()]


def test_parent_and_child_calls_missed_by_a_failing_server_are_replayed_once(
        tracker, monkeypatch, tmp_path):
    def down(*args, **kwargs):
        raise ConnectionError("tracking server went away")

    monkeypatch.setattr(MlflowClient, "log_batch", down)
    monkeypatch.setattr(MlflowClient, "set_terminated", down)
    monkeypatch.setattr(tracking, "server_answers", lambda uri: False)  # /health fails too
    tracker.trial_started("t1", "trial_t1", {"lr": 0.1})
    tracker.trial_result("t1", "trial_t1", {"lr": 0.1}, {"train_loss": 2.0, "round": 1}, 1)
    tracker.log_metrics({"ceiling_ts_5k_mean": 9.1, "not_finite": float("nan")})
    tracker.tag_ranks([{"trial_id": "t1"}])
    tracker.finish("FINISHED")
    assert journal(tracker) == ["start", "metrics", "sweep_metrics", "ranks", "sweep_finish"]

    monkeypatch.undo()
    resumed = pickle.loads(pickle.dumps(tracker))  # as a resumed driver holds it
    assert resumed.close() == 0 and not tracker.journal_path.exists()
    assert resumed.replay() == 0  # nothing left, nothing sent twice

    client = MlflowClient(tracker.uri)
    parent = client.get_run(tracker.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics == {"ceiling_ts_5k_mean": 9.1}
    (child,) = client.search_runs([tracker.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{tracker.parent_run_id}'")
    assert child.data.params == {"lr": "0.1"} and child.data.tags[tracking.RANK_TAG] == "1"
    assert [m.value for m in client.get_metric_history(child.info.run_id, "train_loss")] == [2.0]


def test_a_restarted_tuning_drops_the_kept_calls_of_its_old_trials(tracker, monkeypatch):
    def down(*args, **kwargs):
        raise ConnectionError("tracking server went away")

    monkeypatch.setattr(MlflowClient, "log_batch", down)
    monkeypatch.setattr(tracking, "server_answers", lambda uri: False)
    tracker.trial_started("t1", "trial_t1", {"lr": 0.1})
    tracker.log_metrics({"ceiling_ts_5k_mean": 9.1})
    monkeypatch.undo()
    tracker._down = False
    tracker.delete_children()
    assert journal(tracker) == ["sweep_metrics"]  # the parent's call stays


def test_each_child_run_names_the_real_data_it_trained_and_was_scored_on(tracker):
    """MLflow dataset inputs: the train subset and the test set's reference half, with
    their digests; a trial started again (a replay, a resumed driver) links them once;
    another subset seed, another training digest, the same reference."""
    params = {"dataset": "mnist", "subset": 600, "test_subset": 300, "seed": 0, "lr": 0.1}
    tracker.trial_started("t1", "trial_t1", params)
    pickle.loads(pickle.dumps(tracker)).trial_started("t1", "trial_t1", params)
    tracker.trial_started("t2", "trial_t2", {**params, "seed": 1000})
    client = MlflowClient(tracker.uri)
    runs = {r.data.tags[tracking.TRIAL_TAG]: r for r in client.search_runs(
        [tracker.experiment_id], f"tags.`mlflow.parentRunId` = '{tracker.parent_run_id}'")}
    inputs = {t: {(i.dataset.name, i.tags[0].value): i.dataset
                  for i in r.inputs.dataset_inputs} for t, r in runs.items()}
    assert set(inputs["t1"]) == {("mnist-train", "training"),
                                 ("mnist-test-reference", "evaluation")}
    scored = inputs["t1"][("mnist-test-reference", "evaluation")]
    assert json.loads(scored.profile)["num_rows"] == 5000
    assert scored.digest == inputs["t2"][("mnist-test-reference", "evaluation")].digest
    train = inputs["t1"][("mnist-train", "training")]
    source = json.loads(train.source)
    assert source["md5"]["train-images-idx3-ubyte"] == "6bbc9ace898e44ae57da46a324031adb"
    assert source["subset"] == 600 and json.loads(train.profile)["num_rows"] == 600
    assert inputs["t2"][("mnist-train", "training")].digest != train.digest


def test_a_resumed_search_deletes_the_runs_of_trials_its_saved_state_lost(tracker):
    tracker.trial_started("t1", "trial_t1", {"lr": 0.1})
    tracker.trial_started("t2", "trial_t2", {"lr": 0.2})  # started just before a kill
    tracker.trial_started("c1", "trial_c1", {"lr": 0.1, "confirms": "t1"})
    assert tracker.delete_unknown_children({"t1"}) == 1
    runs = tracker.client.search_runs(
        [tracker.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{tracker.parent_run_id}'")
    # the saved trial and the confirmation trial (another experiment's) stay
    assert sorted(r.data.tags[tracking.TRIAL_TAG] for r in runs) == ["c1", "t1"]
    assert tracker.delete_unknown_children({"t1"}) == 0


def test_a_kept_call_a_kill_cut_short_is_skipped_and_the_rest_replayed(tracker, monkeypatch):
    def down(*args, **kwargs):
        raise ConnectionError("tracking server went away")

    monkeypatch.setattr(MlflowClient, "set_terminated", down)
    monkeypatch.setattr(tracking, "server_answers", lambda uri: False)
    tracker.finish("FINISHED")
    with open(tracker.journal_path, "a") as fh:  # a kill in the middle of the next line
        fh.write('{"op": "sweep_metrics", "args": [{"ceiling_ts')
    monkeypatch.undo()
    assert tracker.close() == 0 and not tracker.journal_path.exists()
    assert MlflowClient(tracker.uri).get_run(tracker.parent_run_id).info.status == "FINISHED"


def test_a_journal_of_only_a_cut_short_line_is_cleared_and_later_calls_are_whole(
        tracker, monkeypatch):
    def down(*args, **kwargs):
        raise ConnectionError("tracking server went away")

    tracker.journal_path.write_text('{"op": "sweep_finish", "args": ["FINI')  # killed mid-line
    monkeypatch.setattr(MlflowClient, "set_terminated", down)
    monkeypatch.setattr(tracking, "server_answers", lambda uri: False)
    tracker.finish("FINISHED")  # kept after the cut line, on a line of its own
    assert [e["op"] for e in tracker.pending.read()] == ["sweep_finish"]
    monkeypatch.undo()
    assert tracker.close() == 0 and not tracker.journal_path.exists()
    assert MlflowClient(tracker.uri).get_run(tracker.parent_run_id).info.status == "FINISHED"

    tracker.journal_path.write_text('{"op": "sweep_fin')  # nothing but a cut line
    assert tracker.close() == 0 and not tracker.journal_path.exists()

