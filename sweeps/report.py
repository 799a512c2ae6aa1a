"""End of a sweep: the best trials beside the paper's numbers and the real-data ceiling.

Writes ``results.csv`` (every trial) and ``best_config.json`` (the winner's hyperparameters,
scores and the command that retrains it) into the sweep folder, and prints how to open the
MLflow UI and optuna-dashboard on the sweep.
"""
from __future__ import annotations

import csv
import json
import math
import re
from pathlib import Path

from scorers.keys import cas_key, ceiling_key, score_key
from sweeps.redact import redact_url
from sweeps.spaces import is_paper_point
from sweeps.ui import runs_url

# Section 5, Tables 1 and 2 (fine-tuned Inception v3 and ViT scorers).
PAPER_RESULTS = {
    "mnist": {"vae": {"is_1k": 8.028, "is_5k": 8.281, "ts_1k": 7.113, "ts_5k": 7.313},
              "vaegan": {"is_1k": 8.031, "is_5k": 8.043, "ts_1k": 7.893, "ts_5k": 8.210}},
    "fashion-mnist": {"vae": {"is_1k": 5.683, "is_5k": 5.817, "ts_1k": 5.572, "ts_5k": 5.827},
                      "vaegan": {"is_1k": 4.891, "is_5k": 4.995, "ts_1k": 4.593, "ts_5k": 4.791}},
}
HYPER_KEYS = ("lr", "latent_dim", "epochs", "batch_size", "adversarial_loss_scale",
              "reconstruction_layer", "conditional")
# PAPER_RESULTS keys are IS / TS means without the "_mean" suffix: is_1k, ts_5k, ...


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def final_status(last_result: dict) -> str:
    """A completed trial's status: finished, diverged, or stopped (a scheduler ended it
    while it was still training, as ASHA does with the trials it judges hopeless)."""
    status = str(last_result.get("status", "finished"))
    return "stopped" if status == "training" else status


def collect_rows(result_grid, constants: dict | None = None) -> list[dict]:
    """One flat dict per trial: id, status, hyperparameters and final metrics. ``constants``
    are the settings every trial shared (the plan's), merged under each trial's config."""
    rows = []
    for result in result_grid:
        metrics = dict(result.metrics or {})
        config = {**(constants or {}), **{k: v for k, v in (result.config or {}).items()
                                          if not k.startswith("_")}}
        status = "error" if result.error else final_status(metrics)
        rows.append({"trial_id": metrics.get("trial_id", ""), "status": status,
                     **{k: config.get(k) for k in HYPER_KEYS if k in config},
                     **{k: v for k, v in metrics.items() if _finite(v)},
                     "_config": config, "_path": str(result.path) if result.path else "",
                     "_checkpoint": result.checkpoint.path if result.checkpoint else ""})
    return rows


def mark_paper_trial(rows: list[dict], point: dict) -> None:
    """Flag the trial that ran the paper's configuration (``points_to_evaluate``)."""
    for r in rows:
        r["paper_config"] = is_paper_point(r["_config"], point)


def rank_trials(rows: list[dict], metrics: list[str]) -> list[dict]:
    """The sweep's ranking rule: one objective ranks the trials, several give their Pareto
    front (no weighting of one score against another is implied)."""
    return pareto_front(rows, metrics) if len(metrics) > 1 else rank(rows, metrics)


def rank(rows: list[dict], metrics: list[str]) -> list[dict]:
    """Finished trials with every objective metric, best first (lexicographic on metrics)."""
    scored = [r for r in rows if r["status"] == "finished" and all(_finite(r.get(m)) for m in metrics)]
    return sorted(scored, key=lambda r: tuple(-r[m] for m in metrics))


def pareto_front(rows: list[dict], metrics: list[str]) -> list[dict]:
    """Trials no other trial beats on every metric (all maximised)."""
    scored = rank(rows, metrics)
    front = []
    for r in scored:
        dominated = any(all(o[m] >= r[m] for m in metrics) and any(o[m] > r[m] for m in metrics)
                        for o in scored if o is not r)
        if not dominated:
            front.append(r)
    return front


def _fmt(value, width=8) -> str:
    if value is None or value == "":
        return "-".rjust(width)
    if isinstance(value, float):
        text = f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e4 else f"{value:.3f}"
        return text.rjust(width)
    return str(value).rjust(width)


def format_table(rows: list[dict], space: str, dataset: str, ns, ceiling: dict | None,
                 top: int = 5) -> str:
    score_cols = [score_key(kind, n, "mean") for kind in ("inception", "vit") for n in ns]
    fid_col = score_key("inception", max(ns), "fid")
    # the train-on-synthetic accuracy, where the trials drew labelled samples
    score_cols += [c for c in (cas_key(max(ns)),) if any(_finite(r.get(c)) for r in rows)]
    hyper = [k for k in HYPER_KEYS if any(k in r for r in rows)]
    head = ["trial", *hyper, *score_cols, fid_col]
    lines = ["  ".join(h.rjust(8) for h in head)]
    for r in rows[:top]:
        name = ("paper-cfg" if r.get("paper_config") else "") or str(r.get("trial_id", ""))[-8:]
        lines.append("  ".join([_fmt(name), *(_fmt(r.get(k)) for k in hyper),
                                *(_fmt(r.get(c)) for c in score_cols), _fmt(r.get(fid_col))]))
    paper = PAPER_RESULTS.get(dataset, {}).get(space)
    if paper:
        lines.append("  ".join([_fmt("paper"), *(_fmt("") for _ in hyper),
                                *(_fmt(paper.get(c.rsplit("_", 1)[0]) if c.endswith("_mean")
                                       else "") for c in score_cols),
                                _fmt("")]))
    if ceiling:
        lines.append("  ".join([_fmt("real"), *(_fmt("") for _ in hyper),
                                *(_fmt(ceiling.get(c, ceiling.get(ceiling_key(c))))
                                  for c in score_cols),
                                _fmt(ceiling.get(fid_col))]))
    if len(rows) > top:
        lines.append(f"(the {top} best of {len(rows)} ranked trials; all trials are in "
                     f"results.csv)")
    return "\n".join(lines)


def write_results(sweep_dir: Path, rows: list[dict]) -> Path:
    path = Path(sweep_dir) / "results.csv"
    keys = sorted({k for r in rows for k in r if not k.startswith("_")})
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k) for k in keys})
    return path


TEXT_COLUMNS = ("trial_id", "status", "error", "checkpoint", "model", "dataset", "arch",
                "phase", "confirms")
_NUMBER = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|-?inf|nan")


def read_results(sweep_dir: Path) -> list[dict]:
    """The rows ``write_results`` wrote, numbers as numbers (for a finished sweep's report)."""
    def value(key: str, text: str):
        if text in ("", "None"):
            return None
        if text in ("True", "False"):
            return text == "True"
        # Python's float() reads "12345_00001" (a Tune trial id) as a number: ids stay text
        if key in TEXT_COLUMNS or not _NUMBER.fullmatch(text):
            return text
        return int(text) if text.lstrip("-").isdigit() else float(text)

    with open(Path(sweep_dir) / "results.csv", newline="") as fh:
        return [{k: value(k, v) for k, v in row.items()} for row in csv.DictReader(fh)]


def write_best_config(sweep_dir: Path, best: dict, objective: list[str],
                      confirmation: dict | None = None) -> Path:
    config = best["_config"]
    args = [f"--model {config['model']}", f"--dataset {config['dataset']}",
            f"--arch {config['arch']}"]
    for key in ("epochs", "train_images", "lr", "latent_dim", "batch_size",
                "adversarial_loss_scale", "reconstruction_layer", "subset", "seed"):
        if config.get(key) is not None and (key not in ("adversarial_loss_scale",
                                                        "reconstruction_layer")
                                            or config["model"] == "vaegan"):
            args.append(f"--{key.replace('_', '-')} {config[key]}")
    if config.get("conditional"):
        args.append("--conditional")
    doc = {"objective": objective, "trial_id": best.get("trial_id"),
           "config": config,
           "scores": {k: v for k, v in best.items() if not k.startswith("_") and _finite(v)},
           "retrain": "python trainables/train.py " + " ".join(args) + " --out runs/best"}
    if confirmation is not None:
        doc["confirmation"] = confirmation
    path = Path(sweep_dir) / "best_config.json"
    path.write_text(json.dumps(doc, indent=1, default=str))
    return path


def how_to_look(sweep_dir: Path, mlflow_uri: str, optuna_url: str,
                experiment_id: str | None = None) -> str:
    mlflow_uri, optuna_url = redact_url(mlflow_uri), redact_url(optuna_url)
    if mlflow_uri.startswith("http"):
        ui = f"open {runs_url(mlflow_uri, experiment_id)} (through your tunnel)"
    else:
        ui = (f"mlflow ui --backend-store-uri {mlflow_uri} --host 127.0.0.1 --port 5000, "
              f"then {runs_url('http://127.0.0.1:5000', experiment_id)}")
    return (f"Both at once:               gensweep ui {sweep_dir}\n"
            f"Compare trials in MLflow:   {ui}\n"
            f"Optuna study:               optuna-dashboard {optuna_url} --host 127.0.0.1 "
            f"(pip install 'gensweep[ui]')\n"
            f"Sweep folder:               {sweep_dir} (results.csv, best_config.json, summary/)")
