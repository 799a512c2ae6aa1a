"""What one sweep trial runs: train (resumably), then score its samples on the shared actors.

No trial loads a classifier: it looks the sweep's named ``ScorerActor``s up and sends them its
prior samples. Keys starting with ``_`` in the trial config are sweep plumbing (actor names,
sample counts), not hyperparameters.
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


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


def sweep_trial(config: dict) -> None:
    """Ray Tune function trainable for sweeps: ``trainables.trainable.train`` + shared scoring."""
    from trainables.trainable import train

    plumbing = {k: v for k, v in config.items() if k.startswith("_")}
    hyper = {k: v for k, v in config.items() if not k.startswith("_")}
    scorer = None
    if plumbing.get("_scorers"):
        scorer = actor_scorer(plumbing["_scorers"], plumbing.get("_namespace"),
                              plumbing.get("_ns", (1000, 5000)), hyper["dataset"])
    train(hyper, scorer=scorer)
