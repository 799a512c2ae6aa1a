"""What the augmentation utility (``scorers.augmentation``) costs on this machine, measured:
100 real images per class (MNIST, seed 0), N = 1,000 and 5,000 added images, the default
classifier seeds (3 per arm, 9 classifiers), tested on the 5,000 reference-half images.
Other real training images stand in for the generated ones (the cost depends on the sizes
only), so each run also prints the share recovered, which should be near 1.

    GENSWEEP_DATA_DIR=../shared/data .venv/bin/python bench/augmentation_cost.py [--ns 1000,5000]
"""
from __future__ import annotations

import argparse
import time

from scorers import augmentation
from scorers.keys import augment_key
from trainables.datasets import load_dataset, stratified_index


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ns", default="1000,5000")
    p.add_argument("--per-class", type=int, default=100)
    args = p.parse_args(argv)
    data = load_dataset("mnist")
    index = stratified_index(data.train.labels, 10 * args.per_class, seed=0)
    real = data.train.images[index], data.train.labels[index]
    test = augmentation.reference_test_set(data)
    for n in (int(x) for x in args.ns.split(",")):
        more = augmentation.other_real(data.train.images, data.train.labels, index, n, seed=0)
        stand_in = augmentation.other_real(data.train.images, data.train.labels, index, n,
                                           seed=1)
        t = time.perf_counter()
        out = augmentation.augmentation_utility(real, stand_in, more, test)
        took = time.perf_counter() - t
        print(f"N = {n}: {took:.1f} s for {3 * len(augmentation.SEEDS)} classifiers "
              f"({took / (3 * len(augmentation.SEEDS)):.1f} s each); real alone "
              f"{out[augment_key(n, 'real')]:.3f}, + N stand-ins "
              f"{out[augment_key(n, 'augmented')]:.3f}, + N more real "
              f"{out[augment_key(n, 'more_real')]:.3f}, recovered "
              f"{out[augment_key(n, 'recovered')]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
