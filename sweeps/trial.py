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


def actor_scorer(actor_names: dict, namespace: str | None, ns, dataset: str):
    """A ``samples -> metrics`` function that asks every named scorer actor in parallel."""

    def score(samples) -> dict:
        import ray

        handles = {kind: ray.get_actor(name, namespace=namespace)
                   for kind, name in actor_names.items()}
        refs = [h.score.remote(samples, ns=tuple(ns), dataset=dataset)
                for h in handles.values()]
        merged = {}
        for part in ray.get(refs):
            merged.update(part)
        return merged

    return score


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
    from trainables.trainable import train

    from trainables.trainable import Probe

    values = trial_config(config, trial_plan)
    scorer = probe = None
    if trial_plan.actor_names:
        scorer = actor_scorer(trial_plan.actor_names, trial_plan.namespace, trial_plan.ns,
                              values["dataset"])
        if trial_plan.probe_n:
            probe = Probe(trial_plan.probe_n, probe_scorer(
                trial_plan.actor_names, trial_plan.namespace, trial_plan.probe_n,
                values["dataset"]))
    train(values, scorer=scorer, probe=probe)
