"""A finished sweep's results as a Markdown section for ``docs/results-cpu.md``.

    python bench/results_page.py SWEEP_DIR --name vaegan-mnist [--img docs/img]

Prints the scorers' test accuracies, the real-data ceiling, the paper-config trial, the best
trial (by the sweep's objective) and each search trial's scores with their ratio to the
ceiling, then the configurations confirmed on fresh seeds and the verdict, all read from the
sweep's own files (``sweep.json``, ``results.csv``, ``confirmed.csv``, ``best_config.json``,
the scorer folders' ``metadata.json``); copies the best and the paper-config trials' sample grids, labelled
grids and memorisation pairs into ``--img`` as ``<name>-best-*.png`` / ``<name>-paper-*.png``.
Nothing is computed here: every number is one the sweep wrote.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path


def columns(n: int) -> list[tuple[str, str]]:
    """(key, heading) of the table's scores at n samples."""
    from scorers.keys import cas_key, memo_key, n_label, score_key

    L = n_label(n).upper()
    return [(score_key("vit", n, "mean"), f"TS {L}"), (score_key("inception", n, "mean"), f"IS {L}"),
            (score_key("inception", n, "fid"), "FID (Inc.)"),
            (score_key("vit", n, "precision"), "prec. (ViT)"),
            (score_key("vit", n, "recall"), "recall (ViT)"), (cas_key(n), "CAS"),
            (cas_key(n, ratio=True), "CAS / real"),
            (memo_key("pixels", n, "near_copies"), "near_copies")]


IMAGES = ("samples_grid.png", "labelled_grid.png", "memorisation_pairs.png")


def final_checkpoint(sweep: Path, trial_id: str) -> Path | None:
    points = sorted((sweep / "tune" / f"trial_{trial_id}").glob("checkpoint_*"))
    return points[-1] if points else None


def fmt(v, digits=3) -> str:
    if v is None or v == "":
        return "-"
    return f"{float(v):.{digits}f}"


def page(sweep: Path, name: str, img: Path | None) -> str:
    from sweeps import report

    saved = json.loads((sweep / "sweep.json").read_text())
    plan, ceiling = saved["plan"], saved.get("ceiling", {})
    # the search trials: a confirmation trial repeats one of them on a fresh seed, and its
    # scores enter only the confirmation's means (ranking it here would pick a lucky seed)
    rows = [r for r in report.read_results(sweep) if r.get("phase") != "confirm"]
    objective = plan["objective"]
    n = max(plan["ns"])
    COLS = columns(n)
    ts_key, is_key = COLS[0][0], COLS[1][0]
    ranked = report.rank(rows, list(objective)) if len(objective) == 1 else \
        report.pareto_front(rows, list(objective))
    paper = next((r for r in rows if r.get("paper_config")), None)
    best = ranked[0] if ranked else None
    out = [f"Sweep folder `{sweep}`; objective {', '.join(objective)}; "
           f"{len(rows)} trials ({sum(r.get('status') == 'finished' for r in rows)} scored), "
           f"{saved.get('minutes', '?')} min end to end.", "", "Scorers:", ""]
    for kind, folder in saved["scorers"].items():
        meta = json.loads((Path(folder) / "metadata.json").read_text())
        degraded = meta.get("degraded_accuracy") or {}
        out.append(f"- {kind} `{meta['scorer_id']}`: test accuracy "
                   f"{100 * meta['test_accuracy']:.2f}% on {meta['test_images']} test images"
                   + (f"; blurred 1 px and dimmed to 70%: "
                      f"{100 * degraded['blur_1px_dim_70']:.2f}%"
                      if "blur_1px_dim_70" in degraded else ""))
    out += ["", "| trial | lr | batch | latent | images | " +
            " | ".join(h for _, h in COLS) + " | TS / real | IS / real |",
            "|" + " --- |" * (len(COLS) + 7)]
    ceil_ts, ceil_is = ceiling.get(ts_key), ceiling.get(is_key)

    def line(label, r):
        ratios = [fmt(r[k] / c, 2) if r.get(k) not in (None, "") and c else "-"
                  for k, c in ((ts_key, ceil_ts), (is_key, ceil_is))]
        return (f"| {label} | {fmt(r.get('lr'), 5)} | {r.get('batch_size', '-')} | "
                f"{r.get('latent_dim', '-')} | {r.get('images_seen', '-')} | "
                + " | ".join(fmt(r.get(k)) for k, _ in COLS) + f" | {' | '.join(ratios)} |")

    out.append("| real data (ceiling) | | | | | " +
               " | ".join(fmt(ceiling.get(k)) for k, _ in COLS) +
               " | 1.00 | 1.00 |")
    for r in sorted(rows, key=lambda r: (r is not best, r is not paper,
                                         -(r.get(ts_key) or 0))):
        tag = ("**best**, " if r is best else "") + ("paper config, " if r is paper else "")
        out.append(line(f"{tag}{r['trial_id']} ({r.get('status')})", r))
    out += confirmation(sweep, saved, n)
    if img is not None:
        img.mkdir(parents=True, exist_ok=True)
        for label, r in (("best", best), ("paper", paper)):
            point = final_checkpoint(sweep, r["trial_id"]) if r else None
            for f in IMAGES if point else ():
                if (point / f).is_file():
                    shutil.copy(point / f, img / f"{name}-{label}-{f}")
                    out.append(f"\n{label} trial, `{f}`: ![{label} {f}]"
                               f"(img/{name}-{label}-{f})")
    return "\n".join(out)


def confirmation(sweep: Path, saved: dict, n: int) -> list[str]:
    """The confirmed configurations (``confirmed.csv``): each headline measure's mean +- SD
    over the fresh seeds, the search trial's own value in brackets, and the verdict that
    ``best_config.json`` records."""
    import csv

    from sweeps.confirm import headline

    path = sweep / "confirmed.csv"
    if not path.is_file():
        return ["", "No configuration was confirmed on fresh seeds."]
    names = headline([n])
    entries = list(csv.DictReader(path.open()))
    if not entries:
        return ["", "The confirmation phase wrote no configuration (`confirmed.csv` is empty)."]
    out = ["", f"Confirmed on fresh seeds (seeds {entries[0]['seeds']}; mean +- SD over the "
           f"seeds, the search trial's own value in brackets):", "",
           "| configuration (search trial) | " + " | ".join(v[0] for v in names.values()) + " |",
           "|" + " --- |" * (len(names) + 1)]
    for e in entries:
        cells = [f"{fmt(e[f'{k}_mean'])} +- {fmt(e[f'{k}_sd'])} [{fmt(e[f'{k}_search'])}]"
                 if e.get(f"{k}_mean") else "-" for k in names]
        out.append(f"| {e['confirms']} | " + " | ".join(cells) + " |")
    best = sweep / "best_config.json"
    verdict = json.loads(best.read_text()).get("confirmation") if best.is_file() else None
    if verdict:
        out += ["", f"Winner: {verdict['winner']} ({verdict['reason']})." if verdict["winner"]
                else f"No winner declared ({', '.join(verdict['tied']) or 'none tied'}): "
                     f"{verdict['reason']}."]
        out += [f"Warning: {w}" for w in verdict.get("warnings", [])]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench/results_page.py", description=__doc__.split("\n")[0])
    p.add_argument("sweep")
    p.add_argument("--name", required=True)
    p.add_argument("--img")
    args = p.parse_args(argv)
    print(page(Path(args.sweep), args.name, Path(args.img) if args.img else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
