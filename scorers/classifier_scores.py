"""Scores of a sample set under one scorer: a pure composition of ``scorers.metrics`` and
``scorers.reference`` (KID, MMD and 1-NN as defined in ``scorers.two_sample``).

Keys are flat (``scorers.keys``), so they go straight into Ray Tune results and MLflow
metrics. For each sample count n the first n samples are scored: the IS formula (10 splits)
over the scorer's probabilities, and, in its features against the first n images of the real
reference half, FID, KID, MMD, 1-NN, precision, recall, density and coverage, plus
predicted-class coverage; at the largest n, the 95% bootstrap interval over the samples of
FID (in narrow features), KID and coverage (``scorers.bootstrap``).

MMD's Gaussian bandwidth is the median pairwise distance of the reference images (one
kernel for every trial of a sweep). The real-data ceiling (``ceiling``) is the same
dictionary for the first n images of the real *ceiling* half, which never overlaps the
reference half (``scorers.realsplit``).
"""
from __future__ import annotations

import numpy as np

from scorers import bootstrap, metrics
from scorers.copying import copying_statistic
from scorers.fid import frechet_distance_to_reference
from scorers.images import as_unit_float
from scorers.keys import IS_SPLITS, memo_key, score_key
from scorers.memorisation import memorisation
from scorers.realsplit import HALF
from scorers.reference import two_sample_to_reference
from scorers.spec import N_CLASSES


def check_ns(ns) -> tuple[int, ...]:
    """Sample counts as a sorted tuple of distinct ints in 10..5000 (IS needs 10 splits,
    the reference half has 5000 images)."""
    if isinstance(ns, (int, np.integer)) and not isinstance(ns, bool):
        ns = (ns,)
    try:
        values = [int(n) for n in ns if not isinstance(n, bool) and int(n) == n]
        ok = len(values) == len(tuple(ns)) and len(values) > 0
    except (TypeError, ValueError):
        ok = False
    if not ok or any(not IS_SPLITS <= n <= HALF for n in values):
        raise ValueError(f"ns={ns!r}: expected one or more integer sample counts in "
                         f"{IS_SPLITS}..{HALF} (e.g. (1000, 5000))")
    return tuple(sorted(set(values)))


def score_predictions(kind: str, probs: np.ndarray, feats: np.ndarray, reference,
                      ns) -> dict[str, float]:
    """The score dictionary from already computed predictions.

    ``reference(n) -> ReferenceStats`` gives the real side of every score for the first n
    real reference images (``scorers.reference``; a long-lived scorer computes it once per
    n). ``probs``/``feats`` hold at least max(ns) sample rows, in sample order.
    """
    out: dict[str, float] = {}
    ns = check_ns(ns)
    for n in ns:
        if len(probs) < n:
            raise ValueError(f"{len(probs)} samples given but n={n} requested; expected at "
                             f"least {n} images")
        # float64 once here: FID and the two-sample scores would each convert the features
        fake_p, fake_f = probs[:n], np.asarray(feats[:n], dtype=np.float64)
        ref = reference(n)
        stats = dict(zip(("mean", "std"), metrics.inception_score(fake_p, IS_SPLITS)))
        stats["fid"] = frechet_distance_to_reference(ref, fake_f)
        # the sample-set spread, at the largest n only: it is the number reported
        resamples = bootstrap.resample_counts(n) if n == max(ns) else None
        stats.update(two_sample_to_reference(ref, fake_f, resamples))
        if resamples is not None and fake_f.shape[1] <= bootstrap.FID_MAX_DIM:
            stats["fid_lo"], stats["fid_hi"] = bootstrap.interval(stats["fid"], np.array(
                [frechet_distance_to_reference(ref, np.repeat(fake_f, w.astype(int), axis=0))
                 for w in resamples]))
        cov = metrics.class_coverage(fake_p, n_classes=N_CLASSES)
        stats.update(class_coverage=cov["coverage"], class_entropy=cov["class_entropy"])
        out.update({score_key(kind, n, stat): value for stat, value in stats.items()})
    return {k: float(v) for k, v in out.items()}


def memorisation_scores(scorer, feats: np.ndarray, n: int, train: dict,
                        held_out: bool = True) -> dict[str, float]:
    """``near_copies``, ``authenticity`` and (with ``held_out``) the data-copying C_T of the
    first n samples' features against the training images ``train`` describes ({"subset":
    ..., "seed": ...}); the held-out side is the first n images of the real ceiling half."""
    training = scorer.training_set(train.get("subset"), train.get("seed", 0))
    res = memorisation(training, feats[:n])
    out = {memo_key(scorer.kind, n, stat): res[stat] for stat in ("near_copies", "authenticity")}
    if held_out:
        out[memo_key(scorer.kind, n, "copying")] = copying_statistic(
            training, feats[:n], res["nearest_sq"], scorer.real("ceiling", n)[1], ("ceiling", n))
    return out


def score_images(scorer, images, ns=(1000, 5000), dataset: str | None = None,
                 train: dict | None = None) -> dict[str, float]:
    """Scores of ``images`` (N >= max(ns); the first n are used for each n) under ``scorer``.

    ``dataset``: what the images are samples of; a scorer fine-tuned on another dataset
    raises ValueError, as do malformed images (see ``scorers.images``). ``train``: the
    generator's training images ({"subset": ..., "seed": ...}); given, the memorisation
    scores in this scorer's features are added at the largest n.
    """
    ns = check_ns(ns)
    scorer.check_dataset(dataset)
    x = as_unit_float(images)
    if len(x) < max(ns):
        raise ValueError(f"{len(x)} images given but n={max(ns)} requested; expected at least "
                         f"{max(ns)} images")
    probs, feats = scorer.predict(x[:max(ns)])
    out = score_predictions(scorer.kind, probs, feats, scorer.reference_stats, ns)
    if train is not None:
        out.update(memorisation_scores(scorer, feats, max(ns), train))
    return out


def ceiling(scorer, ns=(1000, 5000), train: dict | None = None) -> dict[str, float]:
    """The real-data ceiling: the same scores for the first n images of the real ceiling half
    (test images: never trained on, so their memorisation scores are what fresh draws get)."""
    ns = check_ns(ns)
    probs, feats = scorer.real("ceiling", max(ns))
    out = score_predictions(scorer.kind, probs, feats, scorer.reference_stats, ns)
    if train is not None:  # the held-out images are these: no data-copying test
        out.update(memorisation_scores(scorer, feats, max(ns), train, held_out=False))
    return out
