"""What the training-data scores cost, at 1K and 5K samples, on this machine.

    GENSWEEP_DATA_DIR=... .venv/bin/python bench/sample_set_costs.py [--ns 1000,5000]
        [--vit-dir DIR] [--json out.json]

Times, in one process, with perturbed real test images standing in for samples:

* ``cas``: the fixed CNN of ``scorers.utility`` trained on n labelled images and tested on
  the 10,000 test images (what a trial pays per scored set), and ``cas_ceiling``: the same
  on n real training images (paid once per sweep);
* ``memo_pixels``: nearest training image of n samples among the 60,000 training images in
  pixels, plus the training side's own quantile (``training_set``, paid once per set of
  training images: timed apart as ``memo_pixels_train_side``);
* with ``--vit-dir``: ``two_sample`` (KID, MMD, 1-NN, precision, recall, density and
  coverage against the reference half, ``scorers.reference``) and ``memo_vit`` on the ViT's
  features, the forward pass excluded (``vit_predict`` shows it for scale); the training
  side in ViT features (60,000 predictions, once per sweep in the actor) as
  ``memo_vit_train_side``.

Each is timed once (these are seconds-long steps, not microbenchmarks); compare within
one run. Threads: the libraries' defaults unless OMP_NUM_THREADS is set.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, round(time.perf_counter() - t0, 2)


def fake_samples(images: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """n test images, blurred a little and noised: sample-like, not copies."""
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(seed)
    x = images[rng.choice(len(images), n, replace=False)].astype(np.float32) / 255
    x = np.stack([gaussian_filter(i, 0.7) for i in x]) + rng.normal(0, 0.05, x.shape)
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


def run(ns: list[int], vit_dir: str | None) -> list[dict]:
    from scorers import memorisation as memo
    from scorers import utility
    from trainables.datasets import load_dataset

    data = load_dataset("mnist")
    flat_train = data.train.images.reshape(len(data.train.images), -1).astype(np.float32) / 255
    train_side, t_side = timed(memo.training_set, flat_train)
    scorer = None
    if vit_dir:
        from scorers.reference import two_sample_to_reference
        from scorers.scorer_cache import load_scorer

        scorer = load_scorer(vit_dir)
        vit_train, t_vit_side = timed(scorer.training_set, None, 0)
    rows = []
    for n in ns:
        x = fake_samples(data.test.images, n, seed=n)
        labels = data.test.labels[:n]  # the label counts matter for the cost, not the values
        row = {"n": n, "memo_pixels_train_side": t_side}
        _, row["cas"] = timed(utility.classification_accuracy_score, x, labels,
                              data.test.images, data.test.labels)
        _, row["cas_ceiling"] = timed(utility.real_ceiling, data, n)
        _, row["memo_pixels"] = timed(memo.memorisation, train_side,
                                      x.reshape(n, -1).astype(np.float32) / 255)
        if scorer is not None:
            (_, feats), row["vit_predict"] = timed(scorer.predict, x)
            ref = scorer.reference_stats(n)
            _, row["two_sample"] = timed(two_sample_to_reference, ref, feats)
            _, row["memo_vit"] = timed(memo.memorisation, vit_train, feats)
            row["memo_vit_train_side"] = t_vit_side
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="bench/sample_set_costs.py",
                                description=__doc__.split("\n")[0])
    p.add_argument("--ns", default="1000,5000")
    p.add_argument("--vit-dir")
    p.add_argument("--json")
    args = p.parse_args(argv)
    print(f"cpus {os.cpu_count()}, load avg {os.getloadavg()[0]:.1f}", flush=True)
    rows = run([int(v) for v in args.ns.split(",")], args.vit_dir)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
