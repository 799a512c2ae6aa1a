"""What a user sees, in a real browser: a smoke sweep's stores served by ``gensweep ui`` (the
real MLflow UI and optuna-dashboard on 127.0.0.1), the pages loaded in headless Chromium,
and what they show asserted from the DOM. Screenshots are kept as test artifacts
(``$GENSWEEP_SCREENSHOTS``, else the test's folder).
"""
import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import faultkit as fk
import pytest

pytestmark = pytest.mark.slow
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def chromium(url: str, profile: Path, *, dump: bool = True, screenshot: Path | None = None,
             wait_ms: int = 25_000) -> str:
    """The page's DOM after its scripts ran (``--dump-dom``), or a screenshot."""
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
            "--no-first-run", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", f"--user-data-dir={profile}", f"--virtual-time-budget={wait_ms}",
            "--window-size=1400,1000"]
    args += [f"--screenshot={screenshot}"] if screenshot else (["--dump-dom"] if dump else [])
    r = subprocess.run([*args, url], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def visible_text(dom: str) -> str:
    """The page's text as a reader sees it: tags and styles out, whitespace collapsed."""
    import re

    text = re.sub(r"<(style|script)\b.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", text))


def wait_for(url: str, timeout: float = 120) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(1)
    raise AssertionError(f"{url} did not answer in {timeout}s")


@pytest.fixture(scope="module")
def served_sweep(tmp_path_factory, smoke_scorers):
    if CHROMIUM is None:
        pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
    root = tmp_path_factory.mktemp("ui")
    storage = root / "sweep"
    r = fk.sweep("--space", "vae", "--preset", "smoke", "--num-samples", "3",
                 "--storage", str(storage), timeout=900)
    assert r.returncode == 0, r
    mport, oport = fk.free_port(), fk.free_port()
    ui = subprocess.Popen([str(Path(fk.PY).parent / "gensweep"), "ui", str(storage),
                           "--mlflow-port", str(mport), "--optuna-port", str(oport)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{mport}/health")
        wait_for(f"http://127.0.0.1:{oport}/")
        saved = json.loads((storage / "sweep.json").read_text())
        yield {"storage": storage, "mlflow": f"http://127.0.0.1:{mport}",
               "optuna": f"http://127.0.0.1:{oport}", "saved": saved, "root": root}
    finally:
        fk.kill_group(ui)


def shots_dir(default: Path) -> Path:
    folder = Path(os.environ.get("GENSWEEP_SCREENSHOTS") or default)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_the_experiment_opens_on_its_runs_with_parent_and_children(served_sweep, tmp_path):
    from sweeps.ui import runs_url

    s = served_sweep
    exp = s["saved"]["experiment_id"]
    # the link the sweep and `gensweep ui` print: MLflow 3.17 would otherwise open its GenAI
    # view, which lists "evaluation runs" and not the training runs
    dom = chromium(runs_url(s["mlflow"], exp), tmp_path / "p1")
    (tmp_path / "runs.html").write_text(dom)
    rows = fk.results(s["storage"])
    sid = s["saved"]["plan"]["sweep_id"]
    # the training view's table: the parent, its children nested under it (counted)
    assert f"sweep-{sid}" in dom and "Model training" in dom, dom[-3000:]
    assert f"{1 + len(rows)} matching runs" in visible_text(dom), visible_text(dom)[-3000:]
    chromium(runs_url(s["mlflow"], exp), tmp_path / "p2",
             screenshot=shots_dir(tmp_path) / "mlflow_runs.png")
    # the winner's own page: a child of the parent, with its rank in its name
    _, _, children = fk.mlflow_runs(f"sqlite:///{s['storage'] / 'mlflow.db'}")
    (first,) = [c for c in children if c.data.tags.get("gensweep.rank") == "1"]
    page = chromium(f"{s['mlflow']}/#/experiments/{exp}/runs/{first.info.run_id}",
                    tmp_path / "p3")
    text = visible_text(page)
    assert f"trial_{first.data.tags['gensweep.trial_id']} (#1)" in text, text[-3000:]
    assert f"sweep-{sid}" in text, text[-3000:]  # its parent, linked from it


def test_the_parent_run_holds_the_sweep_summary(served_sweep, tmp_path):
    s = served_sweep
    exp, parent = s["saved"]["experiment_id"], s["saved"]["parent_run_id"]
    dom = chromium(f"{s['mlflow']}/#/experiments/{exp}/runs/{parent}/artifacts/summary",
                   tmp_path / "p3")
    for name in ("scores.png", "top_trials.png", "importance.png", "results.csv",
                 "best_config.json"):
        assert name in dom, (name, dom[-3000:])
    chromium(f"{s['mlflow']}/#/experiments/{exp}/runs/{parent}/artifacts/summary/scores.png",
             tmp_path / "p4", screenshot=shots_dir(tmp_path) / "mlflow_summary.png")


def test_optuna_dashboard_names_the_objective(served_sweep, tmp_path):
    s = served_sweep
    with urllib.request.urlopen(f"{s['optuna']}/api/studies", timeout=10) as resp:
        studies = json.loads(resp.read())["study_summaries"]
    study = [x for x in studies if x["study_name"] == s["saved"]["plan"]["study_name"]]
    assert study, studies
    dom = chromium(f"{s['optuna']}/dashboard/studies/{study[0]['study_id']}", tmp_path / "p5")
    assert "ts_500_mean" in dom and "Objective 0" not in dom, dom[-3000:]


def test_the_registered_winner_and_the_datasets_show_in_the_ui(served_sweep, tmp_path):
    """The Model Registry's page of the sweep's winner, its version's tags; a child run's
    datasets (the real splits it trained and was scored on)."""
    s = served_sweep
    best = json.loads((s["storage"] / "best_config.json").read_text())
    # the "Model training" view, as the sweep's links ask for (sweeps.ui.runs_url)
    url = f"{s['mlflow']}/#/models/gensweep-mnist-vae/versions/1?workflowType=machine_learning"
    text = visible_text(chromium(url, tmp_path / "p6"))
    assert "gensweep-mnist-vae" in text and "Version 1" in text, text[-3000:]
    assert best["trial_id"] in text and "ts_500_mean" in text, text[-3000:]  # its tags
    chromium(url, tmp_path / "p7", screenshot=shots_dir(tmp_path) / "mlflow_model.png")

    exp = s["saved"]["experiment_id"]
    _, _, children = fk.mlflow_runs(f"sqlite:///{s['storage'] / 'mlflow.db'}")
    run = (f"{s['mlflow']}/#/experiments/{exp}/runs/{children[0].info.run_id}"
           f"?workflowType=machine_learning")
    text = visible_text(chromium(run, tmp_path / "p8"))
    # the overview lists the first dataset with its digest and context, "+1" for the other
    train = [i.dataset for i in children[0].inputs.dataset_inputs if i.dataset.name == "mnist-train"]
    assert f"Datasets mnist-train ({train[0].digest}) training +1" in text, text[-3000:]
    chromium(run, tmp_path / "p9", screenshot=shots_dir(tmp_path) / "mlflow_datasets.png")
