"""The VAE-GAN training step against pythae's own, in one run: time per step and the ratio.

Both sides train copies of the same small VAE-GAN on the same batches and noise, rounds
interleaved so that other work on the machine slows both alike; the medians of the rounds'
times per step are compared. The two end with the same weights (checked here, and bit for bit
in ``tests/test_vaegan_step.py``, which holds pythae's step as the oracle)::

    .venv/bin/python bench/vaegan_step.py --batch-size 32 --threads 1
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
from test_vaegan_step import pythae_step  # noqa: E402

from trainables.config import TrainConfig  # noqa: E402
from trainables.loop import _vaegan_step, make_optimizers  # noqa: E402
from trainables.models import build_model  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a quick-preset "
                    "trial runs one: two trials share the 2-core machine)")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=30, help="steps per round and side")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    bs = args.batch_size
    cfg = TrainConfig(model="vaegan", arch="small", batch_size=bs, lr=2e-3, reconstruction_layer=2)
    torch.manual_seed(0)
    ours = build_model(cfg)
    theirs = copy.deepcopy(ours)
    sides = {"pythae": (theirs, make_optimizers(theirs, "vaegan", 2e-3), pythae_step),
             "ours": (ours, make_optimizers(ours, "vaegan", 2e-3), _vaegan_step)}
    data = torch.rand(args.steps * bs, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    times = {name: [] for name in sides}
    for r in range(args.rounds + 1):  # round 0 warms up and is not counted
        for name, (model, opts, step) in sides.items():
            start = time.perf_counter()
            for i in range(args.steps):
                torch.manual_seed(r * args.steps + i)
                step(model({"data": data[i * bs:(i + 1) * bs]}, epoch=1), opts)
            if r:
                times[name].append((time.perf_counter() - start) / args.steps)
    same = all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(),
                                                 theirs.state_dict().values()))
    med = {name: statistics.median(t) for name, t in times.items()}
    for name, t in med.items():
        print(f"{name:>7}: {t * 1000:6.1f} ms/step, {bs / t:6.0f} images/s "
              f"(rounds: {', '.join(f'{x * 1000:.0f}' for x in times[name])} ms)")
    print(f"speed-up ours / pythae: {med['pythae'] / med['ours']:.2f}x at batch {bs}, "
          f"{args.threads} thread(s); same weights after {args.rounds + 1} rounds: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
