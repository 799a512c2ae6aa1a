"""The GPU code paths, taken on a CPU machine: Ray clusters that declare logical GPUs.

Ray accepts ``num_gpus`` on nodes without a GPU, so every branch that only runs when Ray sees
GPUs runs here: the preset and resource choice, GPU trial resources, scorer actors reserving
``--scorer-gpus``, scorer fine-tuning as a GPU Ray task with its folder shipped back, and the
device code falling back to the CPU (one log line) because the GPU is only logical. Each case
runs a real smoke sweep to the end and checks placement from what Ray told each trial and
actor (their assigned resources and node), recorded by the sweep, never from the code's
intent; and that the scorer cache holds no half-built folder.
"""
import json
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import faultkit as fk
import pytest

pytestmark = pytest.mark.slow
SMOKE = ["--space", "vae", "--preset", "smoke"]
FALLBACK = "but CUDA is not available in this process (a logical GPU?); running on the CPU"


@contextmanager
def cluster(head: dict, *workers: dict):
    """A Ray cluster of nodes on this machine (``ray.cluster_utils``, Ray's testing cluster)."""
    from ray.cluster_utils import Cluster

    small = {"object_store_memory": 150 * 2**20}
    c = Cluster(initialize_head=True,
                head_node_args={**small, "include_dashboard": False, **head})
    try:
        for w in workers:
            c.add_node(**small, **w)
        c.wait_for_nodes()
        yield c
    finally:
        c.shutdown()


def node_ids(address: str) -> dict:
    """{node id: its Resources} from Ray's own node table."""
    code = ("import json, ray; ray.init(address=%r, log_to_driver=False); "
            "print(json.dumps({n['NodeID']: n['Resources'] for n in ray.nodes() if n['Alive']}))"
            % address)
    r = subprocess.run([fk.PY, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def trial_reports(storage: Path) -> dict:
    """{trial folder name: its result lines}."""
    return {t.name: fk.result_lines(t / "result.json")
            for t in sorted((storage / "tune").glob("trial_*"))}


def actor_placements(storage: Path) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{storage / 'mlflow.db'}")
    exp = client.get_experiment_by_name("gensweep-vae-mnist")
    (parent,) = [r for r in client.search_runs([exp.experiment_id])
                 if r.data.tags.get("gensweep.role") == "sweep"]
    return {k: json.loads(parent.data.tags[f"scorer.{k}.placement"]) for k in ("inception", "vit")}


def half_built(cache: Path) -> list:
    return [str(p) for p in cache.rglob("*") if p.name.startswith((".tmp-", ".old-"))]


def sweep(address, storage, *extra, cache=None, timeout=900):
    env = dict(os.environ)
    if cache is not None:
        env["GENSWEEP_CACHE_DIR"] = str(cache)
    return fk.sweep(*SMOKE, "--address", address, "--storage", str(storage), *extra,
                    env=env, timeout=timeout, logs=storage.parent / "driver")


def test_single_gpu_node_with_an_empty_cache(tmp_path):
    """The most common GPU set-up: one node, one GPU, nothing cached. The scorers are
    fine-tuned by a GPU Ray task on that same node and placed by the store (this crashed with
    'Directory not empty' when the task wrote the final cache folder itself); the scorer
    actors reserve --scorer-gpus; trials get the preset's GPU share."""
    cache = tmp_path / "empty-cache"
    with cluster({"num_cpus": 2, "num_gpus": 1}) as c:
        nodes = node_ids(c.address)
        r = sweep(c.address, tmp_path / "sweep", "--scorer-gpus", "0.25", cache=cache)
    assert r.returncode == 0, r
    driver = r.stdout + r.stderr
    assert driver.count("on a GPU worker (1 GPU") == 2, driver[-4000:]  # both scorers, as tasks
    for kind in ("inception", "vit"):
        folders = [p for p in (cache / "scorers" / "mnist" / kind).iterdir() if p.is_dir()]
        assert len(folders) == 1 and (folders[0] / "metadata.json").is_file(), folders
    assert half_built(cache) == []
    (node,) = nodes
    for kind, where in actor_placements(tmp_path / "sweep").items():
        assert where["node_id"] == node and where["resources"]["GPU"] == 0.25, (kind, where)
        assert where["gpu_ids"] == ["0"], where
    reports = trial_reports(tmp_path / "sweep")
    assert len(reports) == 2
    for lines in reports.values():
        last = lines[-1]
        assert last["status"] == "finished", last
        assert last["gpus_assigned"] == 0.5 and last["gpu_ids"] == "0", last
        assert last["device"] == "cpu" and last["node_id"] == node, last  # logical GPU
    assert FALLBACK in driver, driver[-4000:]


def test_gpu_worker_beside_a_cpu_head(tmp_path):
    """A head without GPUs (the driver and the scorer actors live there) and one GPU worker
    with its own disk: the fine-tunes run on the worker and come back through the object
    store into the driver's cache; trials asking a whole GPU run on the worker."""
    cache, worker_cache = tmp_path / "driver-cache", tmp_path / "worker-cache"
    worker_cache.mkdir()
    with cluster({"num_cpus": 1, "num_gpus": 0},
                 {"num_cpus": 2, "num_gpus": 1,
                  "env_vars": {"GENSWEEP_CACHE_DIR": str(worker_cache)}}) as c:
        nodes = node_ids(c.address)
        r = sweep(c.address, tmp_path / "sweep", "--gpus-per-trial", "1", cache=cache)
    assert r.returncode == 0, r
    (head,) = [n for n, res in nodes.items() if not res.get("GPU")]
    (gpu_node,) = [n for n, res in nodes.items() if res.get("GPU")]
    assert half_built(cache) == [] and list(worker_cache.rglob("metadata.json")) == []
    assert len(list((cache / "scorers").rglob("metadata.json"))) == 2
    for where in actor_placements(tmp_path / "sweep").values():
        assert where["node_id"] == head and where["resources"].get("CPU") == 0.5, where
        assert not where["resources"].get("GPU"), where
    for lines in trial_reports(tmp_path / "sweep").values():
        last = lines[-1]
        assert last["status"] == "finished" and last["node_id"] == gpu_node, last
        assert last["gpus_assigned"] == 1.0 and last["device"] == "cpu", last


def test_four_trials_share_one_gpu(tmp_path, smoke_scorers):
    """--gpus-per-trial 0.25: four trials run at once on the one GPU, each told its quarter.
    Each trains 20,000 images (40 passes over the smoke set), so a trial outlasts the 10-15 s
    Ray takes to start each next one on a 2-core machine: a smoke trial of one pass had
    ended 0.15 s before the fourth began (2026-12-07)."""
    with cluster({"num_cpus": 2, "num_gpus": 1}) as c:
        r = sweep(c.address, tmp_path / "sweep", "--num-samples", "4", "--gpus-per-trial", "0.25",
                  "--cpus-per-trial", "0.25", "--train-images", "20000")
    assert r.returncode == 0, r
    reports = trial_reports(tmp_path / "sweep")
    assert len(reports) == 4
    windows = []
    for lines in reports.values():
        assert lines[-1]["status"] == "finished", lines[-1]
        assert {l["gpus_assigned"] for l in lines} == {0.25}, lines[-1]
        assert {l["gpu_ids"] for l in lines} == {"0"}, lines[-1]
        first = lines[0]
        windows.append((first["timestamp"] - first["time_this_iter_s"], lines[-1]["timestamp"]))
    # all four were running at one moment: the latest start is before the earliest end
    assert max(s for s, _ in windows) < min(e for _, e in windows), windows


def test_more_gpus_than_the_cluster_has_is_refused_before_any_trial(tmp_path, smoke_scorers):
    with cluster({"num_cpus": 2, "num_gpus": 1}) as c:
        t0 = time.time()
        r = sweep(c.address, tmp_path / "sweep", "--gpus-per-trial", "2", timeout=300)
    assert r.returncode == 2, r
    errors = r.errors()
    assert len(errors) == 1 and "--gpus-per-trial 2 asks for more GPUs" in errors[0], r
    assert "largest node has 1" in errors[0] and "Traceback" not in r.stderr, r
    assert not (tmp_path / "sweep" / "tune").exists() and time.time() - t0 < 120
