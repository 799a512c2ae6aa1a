"""What the sample-set intervals (``scorers.bootstrap``) add to a trial's scores, measured in
one run: FID and the scores against the reference at n = 5,000, without and with the 100
bootstrap replicates, in the ViT's 128-d features (FID, KID and coverage intervals) and in
Inception's 2048-d ones (KID and coverage only; FID replicates there would cost about as
much as 100 FIDs).

    .venv/bin/python bench/bootstrap_cost.py [--n 5000] [--repeats 3]

Features are Gaussian draws of the scorers' widths (the cost depends on the shapes only).
Prints the median seconds of each and their ratio.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from scorers import bootstrap
from scorers.classifier_scores import score_predictions
from scorers.reference import reference_stats


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    for kind, dim in (("vit", 128), ("inception", 2048)):
        real, fake = rng.standard_normal((args.n, dim)), 1.1 * rng.standard_normal((args.n, dim))
        probs = rng.dirichlet(np.ones(10), size=args.n)
        ref = reference_stats(real)
        times = {"scores": [], "with intervals": []}
        runs = {"scores": lambda: _without_intervals(probs, fake, ref),
                "with intervals": lambda: score_predictions(kind, probs, fake, lambda n: ref,
                                                            (args.n,))}
        for _ in range(args.repeats):  # alternating, so drift hits both alike
            for label, run in runs.items():
                t = time.perf_counter()
                run()
                times[label].append(time.perf_counter() - t)
        plain, boot = (statistics.median(v) for v in times.values())
        print(f"{kind} ({dim}-d, n = {args.n}, {bootstrap.REPLICATES} replicates): scores "
              f"{plain:.2f} s, with intervals {boot:.2f} s, ratio {boot / plain:.2f}")
    return 0


def _without_intervals(probs, fake, ref):
    """What ``score_predictions`` computes at one n, less the intervals."""
    from scorers import reference
    from scorers.fid import frechet_distance_to_reference
    from scorers.metrics import inception_score

    inception_score(probs, 10)
    frechet_distance_to_reference(ref, fake)
    return reference.two_sample_to_reference(ref, fake)


if __name__ == "__main__":
    raise SystemExit(main())
