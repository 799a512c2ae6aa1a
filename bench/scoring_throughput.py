"""Scoring throughput: the full score path against the bare classifier forward pass.

    .venv/bin/python bench/scoring_throughput.py [--full] [--samples 5000] [--repeats 2] [--json PATH]

Why: a trial's scoring cost should be the classifiers' forward pass; everything the
scoring adds on top (input checks, IS, FID, KID, MMD, 1-NN, coverage) is overhead, with a
target of at most 10%. For each scorer (Inception v3 -> IS, ViT -> TS), in one process,
each repeat times, in alternating order:

* full: ``scorers.classifier_scores.score_images(scorer, x, ns)`` (ns = 1000 and 5000 as in sweeps),
  which runs ``Scorer.predict`` once and every metric of ``score_predictions``;
* split: ``Scorer.predict(x)`` alone (the bare forward pass, "bare"), then on its output
  each metric timed separately at every n. "IS+FID" = bare + the IS and FID calls. KID,
  MMD and 1-NN run together against the reference (``two_sample_to_reference``); each is
  also timed alone by its definition (recomputing the real side), for comparison only.

Overhead = time / bare - 1; images/s = samples / time. The whole pipeline sums both
scorers. Samples are perturbed real MNIST ceiling-half images (see ``shared_scorers.py``);
scorers are the same small cached ones (same architecture and cost as the paper's). The
real reference features come from the scorer folder, so no real image is predicted in
the timed region (one warm-up predict runs first), and the real side of the scores is
computed once per scorer before timing (``Scorer.reference_stats``; printed as a one-off), as a
scorer actor does once per sweep. Threads: TensorFlow and torch use
their defaults (all cores) unless OMP_NUM_THREADS is set.
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)
KINDS = ("inception", "vit")


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def oracles():
    """The scores by their definitions, ``tests/oracles.py`` (the shipped code has one path
    per score; the plain versions are kept as the tests' oracles)."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "tests" / "oracles.py"
    spec = importlib.util.spec_from_file_location("gensweep_oracles", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def metric_calls(scorer) -> dict:
    """name -> fn(real_f, fake_p, fake_f, n): the calls ``score_predictions`` makes per n
    (against the scorer's precomputed reference side, as ``score_images`` does), then the
    same metrics by their definitions, recomputing the real side on every call as the code
    did before ``scorers.reference`` (in ``DEFINITIONS``: timed for comparison, in no total)."""
    from scorers import metrics
    from scorers.classifier_scores import IS_SPLITS
    from scorers.fid import frechet_distance_to_reference
    from scorers.reference import KID_SUBSET_SIZE, kid_subsets, two_sample_to_reference
    from scorers.spec import N_CLASSES

    definition = oracles()
    return {
        "is": lambda rf, p, f, n: metrics.inception_score(p, IS_SPLITS),
        "fid": lambda rf, p, f, n: frechet_distance_to_reference(scorer.reference_stats(n), f),
        "two_sample": lambda rf, p, f, n: two_sample_to_reference(scorer.reference_stats(n), f),
        "coverage": lambda rf, p, f, n: metrics.class_coverage(p, n_classes=N_CLASSES),
        "fid_direct": lambda rf, p, f, n: definition.frechet_distance(rf, f),
        "kid": lambda rf, p, f, n: definition.kernel_inception_distance(
            rf, f, subsets=kid_subsets(n), subset_size=KID_SUBSET_SIZE, seed=0),
        "mmd": lambda rf, p, f, n: definition.kernel_mmd(rf, f),
        "nn1": lambda rf, p, f, n: definition.nn1_accuracy(rf, f),
    }


DEFINITIONS = ("fid_direct", "kid", "mmd", "nn1")
SCORE_PATH = ("is", "fid", "two_sample", "coverage")  # what score_images runs after predict
METRICS = (*SCORE_PATH, *DEFINITIONS)


def split_run(scorer, x, ns) -> dict:
    """Bare predict, then each metric of ``score_predictions`` on its output, timed apart."""
    (probs, feats), bare = timed(scorer.predict, x)
    calls = metric_calls(scorer)
    out = {"bare": bare, **{name: 0.0 for name in calls}, "reference": 0.0}
    for n in ns:
        (_, real_f), t = timed(scorer.real, "reference", n)
        out["reference"] += t
        for name, fn in calls.items():
            out[name] += timed(fn, real_f, probs[:n], feats[:n], n)[1]
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--full", action="store_true", help="5 repeats instead of 2")
    p.add_argument("--samples", type=int, default=5000, help="images scored (default 5000)")
    p.add_argument("--repeats", type=int, help="timed repeats per variant (quick 2, full 5)")
    p.add_argument("--data-dir", help="MNIST folder (default $GENSWEEP_DATA_DIR)")
    p.add_argument("--scorer-epochs", type=int, default=1)
    p.add_argument("--scorer-subset", type=int, default=1000)
    p.add_argument("--json", help="write the raw numbers here")
    return p


def summarise(kinds: list, rows: list, n: int) -> dict:
    """Medians per scorer and for both together, with overheads relative to bare predict."""
    out = {}
    for kind in [*kinds, "both"]:
        use = [r for r in rows if kind == "both" or r["kind"] == kind]
        by_rep = {}
        for r in use:
            rep = by_rep.setdefault(r["repeat"], {"bare": 0.0, "is_fid": 0.0, "split_all": 0.0,
                                                  "full": 0.0})
            rep["bare"] += r["split"]["bare"]
            rep["is_fid"] += r["split"]["bare"] + r["split"]["is"] + r["split"]["fid"]
            rep["split_all"] += r["split"]["bare"] + sum(r["split"][m] for m in SCORE_PATH)
            rep["full"] += r["full"]
        reps = list(by_rep.values())
        med = {key: statistics.median(r[key] for r in reps)
               for key in ("bare", "is_fid", "split_all", "full")}
        out[kind] = {
            "median_s": med,
            "images_per_s": {key: n / v for key, v in med.items()},
            # per-repeat ratios (both variants of one repeat ran back to back), then median
            "overhead_is_fid": statistics.median(r["is_fid"] / r["bare"] - 1 for r in reps),
            "overhead_full": statistics.median(r["full"] / r["bare"] - 1 for r in reps),
            # the same metrics timed on the bare pass's own output: immune to the predict
            # noise between the two variants
            "overhead_split_all": statistics.median(r["split_all"] / r["bare"] - 1 for r in reps),
            "metric_median_s": {m: statistics.median(
                sum(r["split"][m] for r in use if r["repeat"] == rep) for rep in by_rep)
                for m in ("reference", *METRICS)},
        }
    return out


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    repeats = args.repeats or (5 if args.full else 2)
    n = args.samples
    ns = tuple(sorted({min(1000, n), n}))
    from shared_scorers import make_samples, write_report

    from scorers.classifier_scores import score_images
    from scorers.scorer_cache import ensure_scorer, load_scorer

    x = make_samples(n, 1, args.data_dir)[0]
    scorers, one_off = {}, {}
    for kind in KINDS:
        folder = ensure_scorer("mnist", kind, epochs=args.scorer_epochs, subset=args.scorer_subset,
                               eval_subset=None, data_dir=args.data_dir, progress=False)
        scorers[kind] = load_scorer(folder, data_dir=args.data_dir)
        scorers[kind].predict(x[:256])  # warm-up: graph tracing, thread pools, allocator
        # One-off per scorer (an actor does it once per sweep): the real side of every score.
        for n_ in ns:
            one_off[f"{kind}_reference_stats_{n_}_s"] = timed(scorers[kind].reference_stats, n_)[1]
    rows = []
    for rep in range(repeats):
        for kind, scorer in scorers.items():
            row = {"kind": kind, "repeat": rep}
            order = ("full", "split") if rep % 2 == 0 else ("split", "full")
            for variant in order:
                if variant == "full":
                    row["full"] = timed(score_images, scorer, x, ns=ns, dataset="mnist")[1]
                else:
                    row["split"] = split_run(scorer, x, ns)
            rows.append(row)
            s = row["split"]
            print(f"repeat {rep} {kind}: bare {s['bare']:.2f}s ({n / s['bare']:.0f} img/s), "
                  f"IS+FID {s['bare'] + s['is'] + s['fid']:.2f}s, full {row['full']:.2f}s "
                  f"({n / row['full']:.0f} img/s) -> overhead full "
                  f"{100 * (row['full'] / s['bare'] - 1):+.1f}%; metrics "
                  + ", ".join(f"{m} {s[m]:.3f}s" for m in METRICS), flush=True)
    summary = summarise(list(scorers), rows, n)
    print("one-off per scorer, not in the timed repeats: " + ", ".join(
        f"{k} {v:.2f}s" for k, v in one_off.items()), flush=True)
    for kind, s in summary.items():
        ips = s["images_per_s"]
        print(f"{kind}: images/s bare {ips['bare']:.1f}, predict+IS+FID {ips['is_fid']:.1f}, "
              f"full score_images {ips['full']:.1f}; overhead IS+FID "
              f"{100 * s['overhead_is_fid']:+.1f}%, full {100 * s['overhead_full']:+.1f}% "
              f"(all metrics on the bare pass's output {100 * s['overhead_split_all']:+.1f}%; "
              f"target <= 10%)", flush=True)
    if args.json:
        report = {"samples": n, "ns": list(ns), "repeats": repeats, "cpus": os.cpu_count(),
                  "threads_env": os.environ.get("OMP_NUM_THREADS"),
                  "scorers": {k: str(s.folder) for k, s in scorers.items()},
                  "date": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows, "summary": summary,
                  "one_off_s": one_off}
        write_report(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
