"""Inception v3 predictions: the Keras model called eagerly against ``scorers.inception.predict``
(one traced graph per model), in one run: images per second, the ratio, and the largest
differences between the two outputs.

Both sides predict the same images in batches of ``PREDICT_BATCH`` on one TensorFlow thread
(as in a scorer actor beside the trials); rounds alternate the sides so that the machine's
noise hits both alike, and the median round of each is compared. Given a scorer folder its
fine-tuned weights are used, otherwise a scratch network (the cost is the same)::

    OMP_NUM_THREADS=1 .venv/bin/python bench/inception_graph.py --scorer DIR/inception/ID
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scorer", help="an inception scorer folder (default: a scratch network)")
    ap.add_argument("--images", type=int, default=1280)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import numpy as np

    from scorers import inception

    model = inception.load(Path(args.scorer)) if args.scorer else inception.build("scratch")
    x = np.random.default_rng(0).random((args.images, 28, 28), dtype=np.float32)

    def eager(images):
        probs, feats = [], []
        for start in range(0, len(images), inception.PREDICT_BATCH):
            p, f = model(images[start:start + inception.PREDICT_BATCH, ..., None], training=False)
            probs.append(p.numpy())
            feats.append(f.numpy())
        probs = np.concatenate(probs).astype(np.float64)
        return probs / probs.sum(1, keepdims=True), np.concatenate(feats)

    sides = {"eager": eager, "graph": lambda images: inception.predict(model, images)}
    outputs = {name: fn(x[:inception.PREDICT_BATCH]) for name, fn in sides.items()}  # warm-up
    times = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, fn in sides.items():
            start = time.perf_counter()
            outputs[name] = fn(x)
            times[name].append(time.perf_counter() - start)
    rate = {name: args.images / statistics.median(t) for name, t in times.items()}
    for name in sides:
        print(f"{name:>6}: {rate[name]:6.0f} images/s")
    print(f" ratio: graph {rate['graph'] / rate['eager']:.2f}x eager "
          f"({args.images} images, {args.rounds} rounds, OMP_NUM_THREADS="
          f"{os.environ['OMP_NUM_THREADS']})")
    (pe, fe), (pg, fg) = outputs["eager"], outputs["graph"]
    print(f"  max |difference|: probabilities {np.abs(pe - pg).max():.2e}, "
          f"features {np.abs(fe - fg).max():.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
