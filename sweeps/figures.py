"""Pictures of a finished sweep, logged on its MLflow parent run (``summary/``):

* ``scores.png``: every scored trial, IS against TS, with the Pareto front, the paper's
  configuration, the best trial and the real-data ceiling marked;
* ``top_trials.png``: the best trials' sample grids side by side, each labelled with its
  scores and key hyperparameters;
* ``importance.png``: how much each hyperparameter mattered to the objective (Optuna's
  fANOVA importances over the sweep's study), when the study has enough scored trials.

matplotlib and Optuna are imported inside the functions (they are heavy).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from scorers.keys import score_key

log = logging.getLogger(__name__)
SCATTER, MONTAGE, IMPORTANCE = "scores.png", "top_trials.png", "importance.png"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def scatter(rows: list, front: list, best: dict | None, ceiling: dict, ns, path: Path) -> Path:
    plt = _pyplot()
    n = max(ns)
    is_key, ts_key = score_key("inception", n, "mean"), score_key("vit", n, "mean")
    scored = [r for r in rows if is_key in r and ts_key in r]
    fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=110)
    ax.scatter([r[is_key] for r in scored], [r[ts_key] for r in scored], s=28, c="#7a8ba8",
               label=f"trials ({len(scored)} scored)")
    pts = sorted((r[is_key], r[ts_key]) for r in front if r in scored)
    if pts:
        ax.plot(*zip(*pts), "-o", c="#1f5fbf", ms=5, lw=1.2, label="Pareto front")
    paper = [r for r in scored if r.get("paper_config")]
    if paper:
        ax.scatter([paper[0][is_key]], [paper[0][ts_key]], marker="s", s=70, c="#d98c1f",
                   label="paper's configuration", zorder=3)
    if best is not None and best in scored:
        ax.scatter([best[is_key]], [best[ts_key]], marker="*", s=220, c="#c0262d",
                   label="best trial", zorder=4)
    if is_key in ceiling and ts_key in ceiling:
        ax.scatter([ceiling[is_key]], [ceiling[ts_key]], marker="D", s=60, c="#2a9d4b",
                   label="real data (ceiling)", zorder=3)
        ax.axvline(ceiling[is_key], c="#2a9d4b", lw=0.8, ls=":")
        ax.axhline(ceiling[ts_key], c="#2a9d4b", lw=0.8, ls=":")
    ax.set_xlabel(f"Inception Score ({is_key})")
    ax.set_ylabel(f"Transformer Score ({ts_key})")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _label(row: dict, ns) -> str:
    n = max(ns)
    parts = [f"IS {row.get(score_key('inception', n, 'mean'), float('nan')):.2f}",
             f"TS {row.get(score_key('vit', n, 'mean'), float('nan')):.2f}"]
    hyper = [f"lr {row['lr']:.1e}" if "lr" in row else "",
             f"z {row['latent_dim']}" if "latent_dim" in row else "",
             f"b {row['batch_size']}" if "batch_size" in row else ""]
    return "  ".join(parts) + "\n" + " ".join(h for h in hyper if h)


def montage(ranked: list, ns, path: Path, top: int = 4) -> Path | None:
    """The first ``top`` ranked trials' grids (``samples_grid.png`` in their checkpoints)."""
    from PIL import Image

    plt = _pyplot()
    shown = [(r, Path(r["_checkpoint"]) / "samples_grid.png") for r in ranked[:top]
             if r.get("_checkpoint")]
    shown = [(r, p) for r, p in shown if p.is_file()]
    if not shown:
        return None
    fig, axes = plt.subplots(1, len(shown), figsize=(3.2 * len(shown), 3.7), dpi=110,
                             squeeze=False)
    for ax, (rank, (row, grid)) in zip(axes[0], enumerate(shown, 1)):
        ax.imshow(np.asarray(Image.open(grid)), cmap="gray", vmin=0, vmax=255)
        name = "paper config" if row.get("paper_config") else row.get("trial_id", "")
        ax.set_title(f"#{rank} {name}\n{_label(row, ns)}", fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, bbox_inches="tight")  # the three-line titles, whole
    plt.close(fig)
    return path


def importance(study_name: str, storage: str, metric_names: list, path: Path) -> Path | None:
    """fANOVA importances of the hyperparameters for the (first) objective."""
    import optuna

    study = optuna.load_study(study_name=study_name, storage=storage)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(done) < 3:
        log.info("importance plot skipped: %d scored trials (needs 3)", len(done))
        return None
    target = (lambda t: t.values[0]) if len(metric_names) > 1 else None
    try:
        scores = optuna.importance.get_param_importances(study, target=target)
    except (ValueError, RuntimeError) as exc:  # e.g. a parameter that never varied
        log.info("importance plot skipped: %s", exc)
        return None
    plt = _pyplot()
    names = list(scores)[::-1]
    fig, ax = plt.subplots(figsize=(6.0, 0.45 * len(names) + 1.2), dpi=110)
    ax.barh(names, [scores[k] for k in names], color="#1f5fbf")
    ax.set_xlabel(f"importance for {metric_names[0]} (fANOVA, {len(done)} trials)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def summary_figures(folder: Path, rows, ranked, front, ceiling, plan) -> list[Path]:
    """Write every figure that can be drawn into ``folder``; a figure that fails is logged,
    never the end of the sweep."""
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    jobs = [(SCATTER, lambda p: scatter(rows, front, ranked[0] if ranked else None, ceiling,
                                        plan.ns, p)),
            (MONTAGE, lambda p: montage(ranked, plan.ns, p)),
            (IMPORTANCE, lambda p: importance(plan.study_name, plan.optuna_url,
                                              list(plan.objective), p))]
    for name, draw in jobs:
        try:
            out = draw(folder / name)
        except Exception as exc:  # a picture must not cost the sweep's results
            log.warning("could not draw %s: %s", name, exc)
            continue
        if out is not None:
            made.append(out)
    return made
