"""bench/results_page.py, the generator of docs/results-cpu.md's tables, on a constructed
sweep folder: the search trials are ranked without the confirmation trials (a repeat on a
lucky seed must not become "best"), and the confirmed configurations are shown with their
means, spreads and the verdict, all read from the sweep's own files."""
import importlib.util
import json
from pathlib import Path

from sweeps import confirm, report

NS = (1000, 5000)
TS, IS = "ts_5k_mean", "is_5k_mean"
REPO = Path(__file__).resolve().parents[1]


def results_page():
    spec = importlib.util.spec_from_file_location("results_page", REPO / "bench/results_page.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trial(trial_id, ts, phase="search", confirms="", seed=0):
    return {"trial_id": trial_id, "status": "finished", "phase": phase, "confirms": confirms,
            "lr": 1e-3, "batch_size": 32, "latent_dim": 16, "images_seen": 64000, TS: ts,
            IS: ts - 0.1, "_config": {"lr": 1e-3, "seed": seed, confirm.CONFIRMS: confirms}}


def test_confirmation_trials_are_not_ranked_and_the_verdict_is_shown(tmp_path):
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    scorers = {}
    for kind in ("inception", "vit"):
        folder = tmp_path / kind
        folder.mkdir()
        (folder / "metadata.json").write_text(json.dumps(
            {"scorer_id": f"{kind}-id", "test_accuracy": 0.98, "test_images": 10000}))
        scorers[kind] = str(folder)
    search = [trial("aaaa", 8.0), trial("bbbb", 7.9)]
    repeats = [trial("c_00000", 9.5, "confirm", "aaaa", 1000),  # the lucky seed
               trial("c_00001", 7.8, "confirm", "aaaa", 1001),
               trial("c_00002", 7.7, "confirm", "bbbb", 1000),
               trial("c_00003", 7.6, "confirm", "bbbb", 1001)]
    report.write_results(sweep, search + repeats)
    (sweep / "sweep.json").write_text(json.dumps({
        "plan": {"objective": [TS], "ns": list(NS)}, "ceiling": {TS: 9.2, IS: 9.3},
        "scorers": scorers, "minutes": 40.0}))
    entries = confirm.summarise(repeats, search, NS)
    confirm.write_confirmed(sweep, entries, NS)
    decision = confirm.verdict(entries, [TS], NS)
    (sweep / "best_config.json").write_text(json.dumps({"confirmation": decision}))

    page = results_page().page(sweep, "t", None)
    table = page.split("Confirmed on fresh seeds")[0]
    assert "**best**, aaaa (finished)" in table and "c_0000" not in table
    assert "4 trials" not in page and "2 trials (2 scored)" in page
    assert "| aaaa | " in page and "8.650 +- 1.202 [8.000]" in page  # TS over seeds 9.5, 7.8
    assert ("Winner: aaaa" in page if decision["winner"]
            else "No winner declared (aaaa, bbbb): tied" in page), page
