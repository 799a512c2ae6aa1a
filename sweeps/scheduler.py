"""The sweep's early-stopping scheduler: ASHA that lets the paper's configuration finish, and
never stops a trial whose training is done.

Every sweep's table compares its best trial with the paper point's final scores (the first
trial of every sweep), so that trial must reach them; ASHA alone stops it whenever it
trails its rung, as a small-budget CPU run often makes it. Its results still count in ASHA's
rungs, against which the other trials are judged.

ASHA also keeps a rung at ``max_t`` itself (with a budget of four rungs' worth: 1/4, 1/2 and
all of it). A trial's last round lands there, and stopping it then saves no training: it
only loses the scores the trial was about to draw and report. So a result at the budget
always continues.

A module of its own because it subclasses a Ray class: only ``sweeps.tuner.make_scheduler``
imports it, when a sweep builds its Tuner.
"""
from __future__ import annotations

from ray.tune.schedulers import ASHAScheduler

from sweeps.spaces import is_paper_point


class PaperPointASHA(ASHAScheduler):
    def __init__(self, paper_point: dict, **kwargs):
        super().__init__(**kwargs)
        self.paper_point = dict(paper_point)
        self.budget, self.clock = kwargs["max_t"], kwargs["time_attr"]

    def on_trial_result(self, tune_controller, trial, result):
        action = super().on_trial_result(tune_controller, trial, result)
        if action == self.STOP and (is_paper_point(trial.config, self.paper_point)
                                    or result.get(self.clock, 0) >= self.budget):
            # it goes on; ASHA's debug count of stopped trials is then one too high
            return self.CONTINUE
        return action
