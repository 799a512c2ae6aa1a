"""The names of every score, in one place: scoring, the sweep's objective, the report, the CLI
tables and the tests all build them here, so a rename cannot break one of them silently.

For a scorer of kind K (``inception`` or ``vit``; prefix P = ``is`` / ``ts``, the paper's
Inception and Transformer Scores) and a sample count n (label L: 1000 -> ``1k``, 5000 ->
``5k``, else the number)::

    P_L_mean, P_L_std                          IS formula, 10 splits
    fid_K_L                                    Frechet distance
    kid_K_L_mean, kid_K_L_std                  kernel inception distance
    mmd_K_L                                    Gaussian-kernel MMD^2
    nn1_K_L_acc, nn1_K_L_real, nn1_K_L_fake    1-NN two-sample accuracy
    precision_K_L, recall_K_L                  k-NN precision and recall (k = 3)
    density_K_L, knn_coverage_K_L              k-NN density and coverage (k = 5)
    class_coverage_K_L, class_entropy_K_L      predicted-class coverage and entropy
    fid_K_L_lo, kid_K_L_lo, knn_coverage_K_L_lo  (and _hi) their 95% bootstrap interval
                                               over the samples, at the largest n (FID's
                                               in features of at most 512 dimensions)

``class_coverage`` was ``coverage_K_L`` before precision and recall came (16ac32f and
earlier); the k-NN coverage of Naeem et al. is ``knn_coverage``, so no name changed meaning.

Train-on-synthetic accuracy (``scorers.utility``) of n labelled samples: ``cas_L``, and
``cas_L_ratio`` to the real-data ceiling; prior samples carry no label, so they get none.

Memorisation (``scorers.memorisation``), at the largest n, against the generator's training
images, in pixel space and in the ViT's features: ``near_copies_S_L`` (the share of exact or
near copies), ``authenticity_S_L`` and ``copying_S_L`` (the data-copying C_T of
``scorers.copying``; S = ``pixels`` or ``vit``).

The real-data ceiling of a key is ``ceiling_<key>`` on the sweep's parent run; a sweep's
scheduler judges trials by ``probe_ts_L``, the TS of L prior samples after every round.
"""
from __future__ import annotations

PREFIX = {"inception": "is", "vit": "ts"}
IS_SPLITS = 10  # the IS formula's splits: P_L_std is the deviation over these
# stat -> key pattern; {p} the kind's prefix, {k} the kind, {n} the sample-count label
PATTERNS = {
    "mean": "{p}_{n}_mean", "std": "{p}_{n}_std",
    "fid": "fid_{k}_{n}",
    "kid_mean": "kid_{k}_{n}_mean", "kid_std": "kid_{k}_{n}_std",
    "mmd": "mmd_{k}_{n}",
    "nn1_acc": "nn1_{k}_{n}_acc", "nn1_real": "nn1_{k}_{n}_real", "nn1_fake": "nn1_{k}_{n}_fake",
    "precision": "precision_{k}_{n}", "recall": "recall_{k}_{n}",
    "density": "density_{k}_{n}", "knn_coverage": "knn_coverage_{k}_{n}",
    "class_coverage": "class_coverage_{k}_{n}", "class_entropy": "class_entropy_{k}_{n}",
    # 95% bootstrap intervals over the samples, at the largest n (``scorers.bootstrap``)
    "fid_lo": "fid_{k}_{n}_lo", "fid_hi": "fid_{k}_{n}_hi",
    "kid_lo": "kid_{k}_{n}_lo", "kid_hi": "kid_{k}_{n}_hi",
    "knn_coverage_lo": "knn_coverage_{k}_{n}_lo", "knn_coverage_hi": "knn_coverage_{k}_{n}_hi",
}
INTERVAL_STATS = ("fid_lo", "fid_hi", "kid_lo", "kid_hi", "knn_coverage_lo", "knn_coverage_hi")
STATS = tuple(k for k in PATTERNS if k not in INTERVAL_STATS)  # scored at every n
# what an objective maximises: scorer kinds (their IS-formula mean) and "cas"
OBJECTIVES = {"ts": ("vit",), "is": ("inception",), "is+ts": ("inception", "vit"),
              "cas": ("cas",), "ts+cas": ("vit", "cas"), "is+cas": ("inception", "cas"),
              "is+ts+cas": ("inception", "vit", "cas")}


def n_label(n: int) -> str:
    """Key label of a sample count: 1000 -> '1k', 5000 -> '5k', 1500 -> '1500'."""
    return f"{n // 1000}k" if n % 1000 == 0 else str(n)


def score_key(kind: str, n: int, stat: str) -> str:
    """The flat metric name of ``stat`` of scorer ``kind`` at ``n`` samples."""
    if kind not in PREFIX:
        raise ValueError(f"scorer kind {kind!r} unknown; expected one of {', '.join(PREFIX)}")
    if stat not in PATTERNS:
        raise ValueError(f"score {stat!r} unknown; expected one of {', '.join(STATS)}")
    return PATTERNS[stat].format(p=PREFIX[kind], k=kind, n=n_label(n))


def objective_keys(objective: str, ns) -> tuple[str, ...]:
    """The metrics an objective maximises: the IS / TS means and the CAS, at the largest
    sample count."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r} unknown; choose one of "
                         f"{', '.join(OBJECTIVES)}")
    return tuple(cas_key(max(ns)) if kind == "cas" else score_key(kind, max(ns), "mean")
                 for kind in OBJECTIVES[objective])


def cas_key(n: int, ratio: bool = False) -> str:
    """Train-on-synthetic accuracy of n labelled samples (``scorers.utility``): ``cas_5k``,
    and ``cas_5k_ratio`` to the same classifier trained on n real images."""
    return f"cas_{n_label(n)}" + ("_ratio" if ratio else "")


AUGMENT_STATS = ("real", "augmented", "more_real", "gain", "recovered")


def augment_key(n: int, stat: str, sd: bool = False) -> str:
    """The augmentation utility of n generated images (``scorers.augmentation``):
    ``augment_real_5k`` (the scarce real images alone), ``augment_augmented_5k``,
    ``augment_more_real_5k``, ``augment_gain_5k`` (each with ``_sd`` over classifier seeds)
    and ``augment_recovered_5k``."""
    if stat not in AUGMENT_STATS:
        raise ValueError(f"augmentation {stat!r} unknown; expected one of {AUGMENT_STATS}")
    return f"augment_{stat}_{n_label(n)}" + ("_sd" if sd else "")


MEMO_STATS = ("near_copies", "authenticity", "copying")
MEMO_SPACES = ("pixels", "vit")  # where samples are compared with the training images


def memo_key(space: str, n: int, stat: str) -> str:
    """``near_copies_pixels_5k``, ``authenticity_vit_5k``, ``copying_pixels_5k`` (the C_T
    statistic), ... (``scorers.memorisation``, ``scorers.copying``)."""
    if space not in MEMO_SPACES or stat not in MEMO_STATS:
        raise ValueError(f"memorisation {stat!r} in {space!r} unknown; expected one of "
                         f"{MEMO_STATS} in one of {MEMO_SPACES}")
    return f"{stat}_{space}_{n_label(n)}"


# what each objective component's per-round probe measures: its own score on n samples
PROBE_PREFIX = {"vit": "ts", "inception": "is", "cas": "cas"}


def probe_key(n: int, component: str = "vit") -> str:
    """A per-round look at one objective component on ``n`` samples: ``probe_ts_1k`` (the
    ViT's TS), ``probe_is_1k`` (Inception's IS), ``probe_cas_1k`` (the CAS of n labelled
    samples)."""
    if component not in PROBE_PREFIX:
        raise ValueError(f"no probe for {component!r}; probes exist for "
                         f"{', '.join(PROBE_PREFIX)}")
    return f"probe_{PROBE_PREFIX[component]}_{n_label(n)}"


def scheduler_key(objective: str, n: int) -> str:
    """What a sweep's early stopping judges trials by: the objective's own probe, or for an
    objective of several scores the mean of their probes' ratios to the real-data ceiling
    (``probe_objective_1k``)."""
    components = OBJECTIVES[objective]
    return probe_key(n, components[0]) if len(components) == 1 else combined_probe_key(n)


def combined_probe_key(n: int) -> str:
    return f"probe_objective_{n_label(n)}"


def ceiling_key(key: str) -> str:
    """The real-data ceiling's value of ``key``, as the parent run and datasheets name it."""
    return f"ceiling_{key}"
