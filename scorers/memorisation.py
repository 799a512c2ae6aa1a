"""Does a generator hand back its training images? Nearest-training-image checks (numpy).

The paper's motive for synthetic data is sharing it; a generator that returns copies of
its training images fails that, whatever its IS. For each sample we find its nearest
training image (Euclidean, in pixel space or a scorer's feature space) and report:

* ``near_copies``: the share of samples that are exact or near copies: closer to their
  nearest training image than ``QUANTILE`` (1%) of training images are to their own
  nearest other training image. A copy is at distance 0 and always counts; a fresh draw
  from the data distribution counts about 1% of the time by construction. It finds copies
  and nothing subtler: a generator that reproduces its training set loosely passes it (the
  data-copying test of ``scorers.copying`` is the one for that).
* ``authenticity`` (Alaa et al. 2022, "How Faithful is your Synthetic Data?"): the share
  of samples farther from their nearest training image r than r is from its own nearest
  other training image: a sample inside r's nearest-neighbour ball is "not authentic".
  About 0.5 for fresh draws from the data distribution, 0 for copies, 1 for samples far from everything.
* the closest sample-training pairs, for a picture (``closest_pairs``).

The training side (its images' own nearest-neighbour distances) is computed once per
training set, for a fixed-seed sample of ``QUANTILE_ROWS`` rows (the quantile) and, lazily,
for each training image some sample lands next to (authenticity).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from scorers.arrays import as_matrix, row_blocks, sq_dists_from_gram, sq_norms

QUANTILE = 0.01
QUANTILE_ROWS = 2000
SEED = 0


def nearest(queries: np.ndarray, data: np.ndarray, data_sq: np.ndarray,
            exclude_self: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(index, squared distance) of each query row's nearest ``data`` row, in row blocks.
    ``exclude_self[i]``: a data index query i may not match (itself, when queries are data)."""
    idx, dist = np.empty(len(queries), np.intp), np.empty(len(queries))
    q_sq = sq_norms(queries)
    for lo, hi in row_blocks(len(queries), len(data)):
        d = sq_dists_from_gram(queries[lo:hi] @ data.T, q_sq[lo:hi], data_sq)
        if exclude_self is not None:
            d[np.arange(hi - lo), exclude_self[lo:hi]] = np.inf
        idx[lo:hi] = d.argmin(axis=1)
        dist[lo:hi] = d[np.arange(hi - lo), idx[lo:hi]]
    return idx, dist


@dataclass
class TrainingSet:
    """A training set's side of the checks: its rows, their norms, the quantile threshold,
    and a cache of its rows' own nearest-neighbour distances."""

    x: np.ndarray
    sq: np.ndarray
    threshold_sq: float
    own_nn_sq: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)  # what scorers.copying derives from it

    def own_nearest(self, rows: np.ndarray) -> np.ndarray:
        """Squared distance of training rows ``rows`` to their nearest other training row."""
        todo = np.array(sorted(set(rows.tolist()) - set(self.own_nn_sq)), np.intp)
        if len(todo):
            _, d = nearest(self.x[todo], self.x, self.sq, exclude_self=todo)
            self.own_nn_sq.update(zip(todo.tolist(), d.tolist()))
        return np.array([self.own_nn_sq[r] for r in rows.tolist()])


def training_set(images, quantile: float = QUANTILE) -> TrainingSet:
    """The training side for ``images`` (N, D) (pixels or features; float)."""
    x = as_matrix(images, "training images", min_rows=2)
    x = np.ascontiguousarray(x, dtype=np.float32)  # float32: 60,000 x 784 is 188 MB
    sq = sq_norms(x)
    rng = np.random.default_rng(SEED)
    probe = np.sort(rng.choice(len(x), min(QUANTILE_ROWS, len(x)), replace=False))
    _, d = nearest(x[probe], x, sq, exclude_self=probe)
    train = TrainingSet(x=x, sq=sq, threshold_sq=float(np.quantile(d, quantile)))
    train.own_nn_sq.update(zip(probe.tolist(), d.tolist()))
    return train


def memorisation(train: TrainingSet, samples) -> dict:
    """``near_copies`` and ``authenticity`` shares of ``samples`` (M, D), and for each sample
    its nearest training row (``nearest_index``) and squared distance (``nearest_sq``)."""
    y = np.ascontiguousarray(as_matrix(samples, "samples"), dtype=np.float32)
    if y.shape[1] != train.x.shape[1]:
        raise ValueError(f"samples have {y.shape[1]} values per row but the training set "
                         f"{train.x.shape[1]}; expected the same space")
    idx, d = nearest(y, train.x, train.sq)
    d = np.maximum(d, 0.0)
    return {"near_copies": float((d < train.threshold_sq).mean()),
            "authenticity": float((d > train.own_nearest(idx)).mean()),
            "nearest_index": idx, "nearest_sq": d}


def closest_pairs(result: dict, k: int = 8) -> list[tuple[int, int, float]]:
    """The ``k`` (sample index, training index, distance) pairs closest together."""
    order = np.argsort(result["nearest_sq"], kind="stable")[:k]
    return [(int(i), int(result["nearest_index"][i]), float(np.sqrt(result["nearest_sq"][i])))
            for i in order]


def pairs_picture(samples: np.ndarray, train_images: np.ndarray,
                  pairs: list[tuple[int, int, float]], scale: int = 3) -> bytes:
    """PNG bytes: the closest pairs, each a sample above its nearest training image, with
    their distance (pixel units of [0, 1] images) underneath."""
    import io

    from PIL import Image, ImageDraw

    h = w = 28
    gap, text = 4, 12
    width = len(pairs) * (w + gap) + gap
    canvas = Image.new("L", (width, 2 * h + 3 * gap + text), 255)
    draw = ImageDraw.Draw(canvas)
    for col, (i, j, dist) in enumerate(pairs):
        x = gap + col * (w + gap)
        canvas.paste(Image.fromarray(samples[i]), (x, gap))
        canvas.paste(Image.fromarray(train_images[j]), (x, h + 2 * gap))
        draw.text((x, 2 * h + 2 * gap + 1), f"{dist:.2f}", fill=0)
    canvas = canvas.resize((canvas.width * scale, canvas.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()
