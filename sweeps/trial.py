"""What one sweep trial runs: train (resumably), then score its samples on the shared actors.

No trial loads a classifier: it looks the sweep's named ``ScorerActor``s up and sends them its
samples, through ``scorers.scorecard`` like every other scored set. The trial's config holds
its hyperparameters only; everything the sweep's trials share arrives as a frozen
``TrialPlan`` through ``tune.with_parameters``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from scorers.actor import SCORE_TIMEOUT_S, ActorScorer, actor_scorers
from scorers.keys import probe_key, score_key
from scorers.scorecard import TrainingImages, scorecard
from trainables.trainable import Probe, train


@dataclass(frozen=True)
class TrialPlan:
    """What every trial of a sweep shares: TrainConfig constants and the scorer actors."""

    constants: dict = field(default_factory=dict)
    actor_names: dict = field(default_factory=dict)  # kind -> actor name
    namespace: str | None = None
    ns: tuple = (1000, 5000)
    probe_n: int | None = None  # TS of this many prior samples after every round (for ASHA)
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
    """``samples -> {probe key: TS}`` from the ViT actor alone: about a second for 1,000
    samples on one CPU thread, so it can run after every round."""
    n = trial_plan.probe_n
    vit = ActorScorer(trial_plan.actor_names["vit"], trial_plan.namespace, dataset,
                      trial_plan.score_timeout_s)

    def score(samples) -> dict:
        return {probe_key(n): vit(samples, (n,), None)()[score_key("vit", n, "mean")]}

    return score


def trial_config(config: dict, trial_plan: TrialPlan) -> dict:
    """The trial's TrainConfig fields: the shared constants, then its hyperparameters."""
    return {**trial_plan.constants, **config}


def sweep_trial(config: dict, trial_plan: TrialPlan) -> None:
    """Ray Tune function trainable for sweeps: ``trainables.trainable.train`` + shared scoring."""
    values = trial_config(config, trial_plan)
    scorer = probe = None
    if trial_plan.actor_names:
        scorer = trial_scorer(trial_plan, values)
        if trial_plan.probe_n:
            probe = Probe(trial_plan.probe_n, probe_scorer(trial_plan, values["dataset"]))
    train(values, scorer=scorer, probe=probe)
