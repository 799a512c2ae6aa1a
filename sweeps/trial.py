"""What one sweep trial runs: train (resumably), then score its samples on the shared actors.

No trial loads a classifier: it looks the sweep's named ``ScorerActor``s up and sends them its
samples, through ``scorers.scorecard`` like every other scored set. The trial's config holds
its hyperparameters only; everything the sweep's trials share arrives as a frozen
``TrialPlan`` through ``tune.with_parameters``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from scorers.actor import SCORE_TIMEOUT_S, ActorScorer, actor_scorers
from scorers.keys import combined_probe_key, probe_key, score_key
from scorers.scorecard import TrainingImages, scorecard
from scorers.utility import classification_accuracy_score
from sweeps.confirm import CONFIRMS
from trainables.datasets import load_dataset
from trainables.trainable import Probe, train


@dataclass(frozen=True)
class TrialPlan:
    """What every trial of a sweep shares: TrainConfig constants and the scorer actors."""

    constants: dict = field(default_factory=dict)
    actor_names: dict = field(default_factory=dict)  # kind -> actor name
    namespace: str | None = None
    ns: tuple = (1000, 5000)
    probe_n: int | None = None  # samples each round's probe scores (for the scheduler)
    # the objective's components: each gets a probe after every round (scorers.keys)
    probe_components: tuple = ("vit",)
    # component -> its real-data ceiling, which a probe of several components is read against
    probe_ceilings: dict = field(default_factory=dict)
    cas_ceiling: float | None = None  # the fixed CNN's accuracy trained on real images
    score_timeout_s: float = SCORE_TIMEOUT_S


def trial_scorer(trial_plan: TrialPlan, values: dict):
    """``(samples, labelled) -> scores``: the trial's scorecard on the sweep's actors, with
    memorisation against the images this trial trained on."""
    training = TrainingImages(values.get("subset"), values.get("seed", 0),
                              values.get("data_dir"))
    scorers = actor_scorers(trial_plan.actor_names, trial_plan.namespace, values["dataset"],
                            trial_plan.score_timeout_s)

    def score(samples, labelled=None) -> dict:
        return scorecard(samples, dataset=values["dataset"], ns=trial_plan.ns, scorers=scorers,
                         labelled=labelled, training=training,
                         cas_ceiling=trial_plan.cas_ceiling, pairs=True)

    return score


def probe_scorer(trial_plan: TrialPlan, dataset: str):
    """``(samples, labelled) -> probes``: after every round, each objective component's own
    score of ``probe_n`` samples (TS from the ViT actor, IS from the Inception actor, the
    CAS of as many labelled samples), and for several components their mean ratio to the
    real-data ceiling (``scorers.keys.scheduler_key``). The ViT's TS of 1,000 samples takes
    about a second on one CPU thread, Inception's IS several, the CAS a few."""
    n = trial_plan.probe_n
    components = tuple(trial_plan.probe_components)
    actors = {kind: ActorScorer(trial_plan.actor_names[kind], trial_plan.namespace, dataset,
                                trial_plan.score_timeout_s)
              for kind in components if kind != "cas"}

    def score(samples, labelled=None) -> dict:
        pending = {kind: actor(samples, (n,), None) for kind, actor in actors.items()}
        out = {}
        if "cas" in components:
            out[probe_key(n, "cas")] = classification_accuracy_score(
                *labelled, *load_test_set(dataset, trial_plan.constants.get("data_dir")))
        for kind, wait in pending.items():
            out[probe_key(n, kind)] = wait()[score_key(kind, n, "mean")]
        if len(components) > 1:
            ratios = [out[probe_key(n, c)] / (trial_plan.probe_ceilings.get(c) or 1.0)
                      for c in components]
            out[combined_probe_key(n)] = sum(ratios) / len(ratios)
        return out

    return score


def load_test_set(dataset: str, data_dir) -> tuple:
    test = load_dataset(dataset, data_dir).test
    return test.images, test.labels


def trial_config(config: dict, trial_plan: TrialPlan) -> dict:
    """The trial's TrainConfig fields: the shared constants, then its hyperparameters (and,
    for a confirmation trial, its fresh seed; the search trial it confirms is a label)."""
    return {**trial_plan.constants, **{k: v for k, v in config.items() if k != CONFIRMS}}


def sweep_trial(config: dict, trial_plan: TrialPlan) -> None:
    """Ray Tune function trainable for sweeps: ``trainables.trainable.train`` + shared scoring."""
    values = trial_config(config, trial_plan)
    scorer = probe = None
    if trial_plan.actor_names:
        scorer = trial_scorer(trial_plan, values)
        if trial_plan.probe_n:
            probe = Probe(trial_plan.probe_n, probe_scorer(trial_plan, values["dataset"]),
                          labelled="cas" in trial_plan.probe_components)
    train(values, scorer=scorer, probe=probe)
