"""Optuna search for sweeps whose scores exist only when a trial has finished.

Ray's ``OptunaSearch`` expects the objective in every result and reads a trial that ends
without it as *pruned*. Our trials report losses per round and IS / TS once, at the end. A
trial the scheduler stopped early (ASHA) is indeed *pruned*: TPE counts it among the bad
configurations. A diverged trial, or one that finished without scores, has no score at all
and counts as *failed*, so TPE never mistakes it for a configuration worth exploring around.
"""
from __future__ import annotations

import functools
import logging

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=None)
def score_search_class():
    from ray.tune.search.optuna import OptunaSearch

    class ScoreSearch(OptunaSearch):
        """``OptunaSearch`` that ignores per-epoch results and fails unscored trials."""

        def on_trial_result(self, trial_id, result):
            # Intermediate values would only feed Optuna's pruners, which we do not use (ASHA
            # prunes in Tune). Forwarding them also breaks resume: a restored trial re-reports
            # its final result to an Optuna trial that is already complete.
            return

        def on_trial_complete(self, trial_id, result=None, error=False):
            metrics = self.metric if isinstance(self.metric, list) else [self.metric]
            status = (result or {}).get("status")
            unscored = not result or any(result.get(m) is None for m in metrics)
            if status == "diverged":
                log.info("trial %s diverged: told to Optuna as failed", trial_id)
                unscored = True
            if unscored and status == "training" and not error:
                log.info("trial %s stopped early by the scheduler: told to Optuna as pruned",
                         trial_id)
                result = None  # no value, no error: Ray tells Optuna PRUNED
            elif unscored and not error:
                error, result = True, None
            super().on_trial_complete(trial_id, result=result, error=error)

    return ScoreSearch


ORPHAN_ATTR = "gensweep.orphan"


def close_orphan_trials(study_name: str, storage_url: str) -> int:
    """Tell Optuna FAIL for the trials still RUNNING once Tune's search is over; returns
    how many. Only a driver killed between an Optuna "ask" and Tune's next save of its
    state leaves one: the resumed search asks again, and no Tune trial ever runs the first
    ask. FAIL, so TPE learns nothing from it, with a user attribute that says why."""
    import optuna

    study = optuna.load_study(study_name=study_name, storage=storage_url)
    orphans = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for frozen in orphans:
        optuna.trial.Trial(study, frozen._trial_id).set_user_attr(
            ORPHAN_ATTR, "asked before the sweep was killed; no Tune trial ran it")
        study.tell(frozen.number, state=optuna.trial.TrialState.FAIL)
    if orphans:
        log.info("resume: %d Optuna trial(s) asked before the kill and never run, told to "
                 "Optuna as failed: %s", len(orphans), [t.number for t in orphans])
    return len(orphans)
