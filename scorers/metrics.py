"""Sample-quality scores over numpy arrays (no deep-learning framework needed).

Every function takes plain arrays (classifier probabilities or feature vectors
from the fine-tuned scorer networks), computes in float64 and raises
``ValueError`` naming the expected shape/values on bad input (``scorers.arrays``).
Scores over features (FID, KID, MMD, 1-NN, precision, recall, density, coverage) are
computed against a cached real reference: ``scorers.fid`` and ``scorers.reference``.

Scores, what they mean and which way is better:

* ``inception_score`` (IS, higher is better; 1 <= IS <= number of classes):
  exp(E_x KL(p(y|x) || p(y))). High when each sample is classified confidently
  (low-entropy p(y|x)) and the samples spread over all classes (high-entropy
  p(y)). Salimans et al. 2016, "Improved Techniques for Training GANs";
  split/std conventions follow the original TF code and torch-fidelity.
  With the ViT scorer's probabilities the same formula is our "Transformer Score".
* ``class_coverage`` (higher coverage/entropy is better): share of classes that
  are predicted at least once and the entropy of the predicted-class histogram;
  a cheap mode-collapse check (entropy max is log(n_classes)).
"""
from __future__ import annotations

import numpy as np
from scipy.special import xlogy

from scorers.arrays import as_matrix, check_probs

IS_SHUFFLE_SEED = 0


def inception_score(probs, splits: int = 10,
                    shuffle_seed: int | None = IS_SHUFFLE_SEED) -> tuple[float, float]:
    """Inception Score of class probabilities ``probs`` (N, C); returns (mean, std).

    Rows are permuted with a fixed seed, then split into ``splits`` chunks
    (``np.array_split``); per chunk IS = exp(mean_x KL(p(y|x) || p(y))) with p(y) that
    chunk's mean. The std is the population std (ddof=0) over chunks, as in the TF reference
    and torch-fidelity. 0 * log 0 is taken as 0 (``scipy.special.xlogy``).

    Why the permutation: each split must be a fair draw of the whole set. The TF reference
    and torch-fidelity split in file order, so a class-sorted file (what a balanced export
    writes) puts one class in each split and scores about 1 whatever its quality. A fixed
    seed keeps every score deterministic; a canonical order (sorting by content) would too,
    but could itself correlate with class. ``shuffle_seed=None`` splits in file order.
    """
    if isinstance(splits, bool) or not isinstance(splits, (int, np.integer)) or splits < 1:
        raise ValueError(f"splits must be a positive integer; got {splits!r}")
    p = check_probs(probs)
    if shuffle_seed is not None:
        p = p[np.random.default_rng(shuffle_seed).permutation(p.shape[0])]
    if p.shape[0] < splits:
        raise ValueError(f"too few samples: probs has N={p.shape[0]} rows but splits={splits}; "
                         "need N >= splits")
    scores = []
    for chunk in np.array_split(p, splits, axis=0):
        py = chunk.mean(axis=0, keepdims=True)
        # where py == 0 the whole column is 0, so xlogy gives 0 there too
        kl = (xlogy(chunk, chunk) - xlogy(chunk, py)).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    scores = np.asarray(scores)
    return float(scores.mean()), float(scores.std(ddof=0))


def class_coverage(probs, n_classes: int | None = None) -> dict:
    """Predicted-class coverage and entropy of class scores ``probs`` (N, C).

    Only the argmax per row is used, so logits work as well as probabilities.
    ``n_classes`` defaults to C; a larger value counts classes the scorer
    cannot even output as uncovered.
    """
    p = as_matrix(probs, "probs")
    c = p.shape[1] if n_classes is None else int(n_classes)
    if c < p.shape[1]:
        raise ValueError(f"n_classes={c} is smaller than the number of probability columns "
                         f"({p.shape[1]}); expected n_classes >= C")
    counts = np.bincount(np.argmax(p, axis=1), minlength=c)
    freq = counts / counts.sum()
    return {
        "coverage": float((counts > 0).sum() / c),
        "class_entropy": float(-xlogy(freq, freq).sum()),
        "class_entropy_max": float(np.log(c)),
    }
