"""A sweep's outcome, once its trials are done: results.csv (search and confirmation
trials), the confirmed verdict, best_config.json, the summary figures, the winner registered
in MLflow, and the sweep recorded as finished."""
from __future__ import annotations

import logging
import time
from pathlib import Path

from scorers.keys import score_key
from scorers.scorer_cache import read_metadata
from sweeps import confirm, report, sweep_record
from sweeps.figures import summary_figures
from sweeps.model_registry import model_name
from sweeps.plan import SweepPlan

log = logging.getLogger(__name__)


def register_winner(plan: SweepPlan, saved: dict, best: dict, confirmation: dict | None,
                    tracker) -> None:
    """Register the winner's checkpoint (the confirmed winner's search trial, else the
    top-ranked one) as ``gensweep-DATASET-SPACE``, its version tagged with the scores (the
    fresh seeds' means and spreads when confirmed), whether a winner was declared, the
    trial, the sweep and the scorers. A registration that cannot be prepared is a warning:
    the sweep's results stand without it."""
    try:
        checkpoint, _ = sweep_record.trial_checkpoint(Path(plan.sweep_dir), best["trial_id"])
        mine = next((e for e in (confirmation or {}).get("entries", [])
                     if e["confirms"] == best["trial_id"]), None)
        if mine:
            scores = {**{f"confirmed_{k}_mean": v for k, v in mine["mean"].items()},
                      **{f"confirmed_{k}_sd": v for k, v in mine["sd"].items()}}
        else:
            scores = {k: best[k] for k in (*plan.objective, *confirm.headline(plan.ns))
                      if k in best}
        declared = bool(confirmation and confirmation["decision"]["winner"])
        tags = {**{k: f"{v:.6g}" for k, v in scores.items() if isinstance(v, (int, float))},
                "trial_id": best["trial_id"], "objective": ",".join(plan.objective),
                "confirmed": bool(mine), "winner_declared": declared,
                "parent_run_id": tracker.parent_run_id,
                "dataset": plan.request.dataset, "space": plan.request.space}
        for kind, folder in (saved.get("scorers") or {}).items():
            tags[f"scorer.{kind}.id"] = read_metadata(folder).get("scorer_id")
    except (ValueError, OSError, KeyError) as exc:
        log.warning("the winner is not registered in MLflow: %s", exc)
        return
    tracker.register_generator(checkpoint, model_name(plan.request.dataset, plan.request.space),
                               tags, plan.sweep_id)


def finish_sweep(plan: SweepPlan, saved: dict, rows: list[dict], ranked: list[dict],
                 confirm_rows: list[dict], ceiling: dict, tracker, started: float) -> dict:
    """Write results.csv (search and confirmation trials), the confirmed verdict,
    best_config.json and the summary figures, log them on the parent run, and record the
    sweep as finished."""
    sweep_dir = Path(plan.sweep_dir)
    metrics = list(plan.objective)
    for row in rows:
        row["phase"] = "search"
    for row in confirm_rows:
        row.update(phase="confirm", confirms=row["_config"].get(confirm.CONFIRMS),
                   seed=row["_config"].get("seed"))
    files = [report.write_results(sweep_dir, rows + confirm_rows)]
    summary = {"rows": rows, "ranked": ranked, "ceiling": ceiling, "metrics": metrics,
               "mlflow_uri": plan.mlflow_uri, "parent_run_id": tracker.parent_run_id,
               "experiment_id": tracker.experiment_id,
               "sweep_dir": sweep_dir, "minutes": (time.time() - started) / 60}
    best, confirmation = (ranked[0] if ranked else None), None
    if confirm_rows:
        entries = confirm.summarise(confirm_rows, rows, plan.ns)
        decision = confirm.verdict(entries, metrics, plan.ns)
        confirmation = {"decision": decision, "text": confirm.table(entries, decision,
                                                                    metrics[0], plan.ns),
                        "entries": entries}
        files.append(confirm.write_confirmed(sweep_dir, entries, plan.ns))
        text = sweep_dir / "summary" / "confirmation.txt"
        text.parent.mkdir(exist_ok=True)
        text.write_text(confirmation["text"] + "\n")
        files.append(text)
        chosen = decision["winner"] or (decision["ranking"] or [None])[0]
        best = next((r for r in rows if r["trial_id"] == chosen), best)
        mine = next((e for e in entries if e["confirms"] == chosen), None)
        if mine:
            tracker.log_metrics({**{f"confirmed_{k}_mean": v for k, v in mine["mean"].items()},
                                 **{f"confirmed_{k}_sd": v for k, v in mine["sd"].items()}})
        summary["confirmation"] = confirmation
    if best is not None:
        summary["best_config"] = report.write_best_config(
            sweep_dir, best, metrics, confirm.best_config_block(confirmation, best))
        files.append(summary["best_config"])
        tracker.log_metrics({f"best_{m}": best[m] for m in metrics if m in best})
        tracker.tag_ranks(ranked)
        register_winner(plan, saved, best, confirmation, tracker)

    both = [score_key(k, max(plan.ns), "mean") for k in ("inception", "vit")]
    front = report.pareto_front(rows, both)
    files += summary_figures(sweep_dir / "summary", rows, ranked, front, ceiling, plan)
    tracker.log_artifacts(files, "summary")
    tracker.finish("FINISHED" if ranked else "FAILED")
    summary["estimate_minutes"] = plan.estimate_minutes
    tracker.close()
    summary["registered_model"] = tracker.registered
    sweep_record.advance(sweep_dir, saved, "finished", minutes=round(summary["minutes"], 2))
    return summary
