"""What one sweep trial runs: train (resumably), then score its samples on the shared actors.

No trial loads a classifier: it looks the sweep's named ``ScorerActor``s up and sends them its
prior samples. The trial's config holds its hyperparameters only; everything the sweep's
trials share arrives as a frozen ``TrialPlan`` through ``tune.with_parameters``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

# Sweeps written before plans existed (16ac32f and earlier) kept their plumbing in the trial
# config under these keys; a resumed trial of such a sweep drops them (its TrialPlan carries
# the same values).
LEGACY_PLUMBING = ("_ns", "_namespace", "_scorers")


@dataclass(frozen=True)
class TrialPlan:
    """What every trial of a sweep shares: TrainConfig constants and the scorer actors."""

    constants: dict = field(default_factory=dict)
    actor_names: dict = field(default_factory=dict)  # kind -> actor name
    namespace: str | None = None
    ns: tuple = (1000, 5000)
    probe_n: int | None = None  # TS of this many prior samples after every round (for ASHA)
    cas_ceiling: float | None = None  # the fixed CNN's accuracy trained on real images
    # A score request unanswered this long (a hung or starved actor) fails the trial with
    # ScoringTimeout instead of holding its resources for ever; Tune then retries it from its
    # last checkpoint. 5,000 samples take under a minute per actor on a CPU, so 30 minutes
    # leaves room for a queue of every other trial's requests.
    score_timeout_s: float = 1800.0


class ScoringTimeout(RuntimeError):
    """A scorer actor did not answer a trial's request in time."""


PAIRS_FILE = "memorisation_pairs.png"
# Memorisation in a scorer's features needs the whole training set through it once per
# actor: seconds for the ViT, minutes for Inception on a CPU, so the ViT's features are used.
MEMO_KINDS = ("vit",)


def actor_scorer(actor_names: dict, namespace: str | None, ns, dataset: str,
                 train: dict | None = None, cas_ceiling: float | None = None,
                 timeout_s: float = TrialPlan.score_timeout_s):
    """A ``samples -> metrics`` function that asks every named scorer actor in parallel. With
    ``train`` (the trial's training images: {"subset", "seed"}) it adds the memorisation
    checks: in pixel space here, while the actors score, and in the ViT's features there,
    plus the closest sample / training-image pairs as a PNG (under ``_artifacts``).
    Raises :class:`ScoringTimeout` when the actors have not answered within ``timeout_s``."""

    def score(samples, labelled=None) -> dict:
        import ray

        handles = {kind: ray.get_actor(name, namespace=namespace)
                   for kind, name in actor_names.items()}
        refs = [h.score.remote(samples, ns=tuple(ns), dataset=dataset,
                               train=train if kind in MEMO_KINDS else None)
                for kind, h in handles.items()]
        # the trial's own CPU would idle while the actors score: it does these meanwhile
        merged = pixel_memorisation(samples, max(ns), dataset, train) if train else {}
        if labelled is not None:
            merged.update(train_on_synthetic(labelled, dataset, cas_ceiling,
                                             train.get("data_dir") if train else None))
        from ray.exceptions import GetTimeoutError

        try:
            parts = ray.get(refs, timeout=timeout_s)
        except GetTimeoutError:
            raise ScoringTimeout(
                f"scorer actors {', '.join(actor_names.values())} did not answer within "
                f"{timeout_s:g} s; check that they are alive (ray list actors) and not "
                f"starved of CPU (--scorer-cpus)") from None
        for part in parts:
            merged.update(part)
        return merged

    return score


def train_on_synthetic(labelled, dataset: str, ceiling: float | None, data_dir=None) -> dict:
    """``cas_L`` (and its ratio to the real-data ceiling) of the labelled samples."""
    from scorers.keys import cas_key
    from scorers.utility import classification_accuracy_score
    from trainables.datasets import load_dataset

    images, labels = labelled
    test = load_dataset(dataset, data_dir).test
    acc = classification_accuracy_score(images, labels, test.images, test.labels)
    out = {cas_key(len(images)): acc}
    if ceiling:
        out[cas_key(len(images), ratio=True)] = acc / ceiling
    return out


def pixel_memorisation(samples, n: int, dataset: str, train: dict) -> dict:
    """Memorisation of the first ``n`` samples in pixel space, and the PNG of the closest
    pairs, against the trial's own training images."""
    from scorers import memorisation as memo
    from trainables.datasets import load_dataset

    images = load_dataset(dataset, train.get("data_dir"), subset=train["subset"],
                          seed=train["seed"]).train.images
    out = memo.pixel_memorisation(samples, images, n)
    png = out.pop("_pairs_png")
    return {**out, "_artifacts": {PAIRS_FILE: png}}


def probe_scorer(actor_names: dict, namespace: str | None, n: int, dataset: str):
    """``samples -> {probe key: TS}`` from the ViT actor alone: about a second for 1,000
    samples on one CPU thread, so it can run after every round."""
    from scorers.keys import probe_key, score_key

    vit = actor_scorer({"vit": actor_names["vit"]}, namespace, (n,), dataset)

    def score(samples) -> dict:
        return {probe_key(n): vit(samples)[score_key("vit", n, "mean")]}

    return score


def trial_config(config: dict, trial_plan: TrialPlan) -> dict:
    """The trial's TrainConfig fields: the shared constants, then its hyperparameters."""
    hyper = {k: v for k, v in config.items() if k not in LEGACY_PLUMBING}
    return {**trial_plan.constants, **hyper}


def sweep_trial(config: dict, trial_plan: TrialPlan) -> None:
    """Ray Tune function trainable for sweeps: ``trainables.trainable.train`` + shared scoring."""
    from trainables.trainable import Probe, train

    values = trial_config(config, trial_plan)
    scorer = probe = None
    if trial_plan.actor_names:
        # the images this trial trains on: what the memorisation checks compare samples with
        training_images = {"subset": values.get("subset"), "seed": values.get("seed", 0),
                           "data_dir": values.get("data_dir")}
        scorer = actor_scorer(trial_plan.actor_names, trial_plan.namespace, trial_plan.ns,
                              values["dataset"], training_images, trial_plan.cas_ceiling,
                              trial_plan.score_timeout_s)
        if trial_plan.probe_n:
            probe = Probe(trial_plan.probe_n, probe_scorer(
                trial_plan.actor_names, trial_plan.namespace, trial_plan.probe_n,
                values["dataset"]))
    train(values, scorer=scorer, probe=probe)
