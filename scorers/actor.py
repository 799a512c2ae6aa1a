"""A long-lived scorer service for Ray: load a scorer once, score many sample sets.

``ScorerActor`` is a plain class (usable and testable without Ray); ``start_scorer_actor``
wraps it with ``ray.remote`` as a *named* actor, so every trial of a sweep finds the same
instance by name instead of loading its own copy of Inception v3 / ViT. The actor is
restartable: ``max_restarts=-1`` brings a crashed actor back (it reloads the immutable
scorer folder), and ``max_task_retries`` re-runs the calls that were in flight. Inference
is deterministic (fixed batches, eval mode, seeded KID subsets), so a retried call returns
exactly what an undisturbed one would have.

Devices: given ``num_gpus`` > 0 Ray exposes a GPU to the actor and TensorFlow (memory
growth on) or torch use it; otherwise everything runs on the CPU. Predictions run in
bounded batches, so the actor's memory does not grow with the number of samples scored
beyond the outputs themselves.
"""
from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from scorers.classifier_scores import ceiling, score_images
from scorers.scorer_cache import load_scorer, read_metadata

log = logging.getLogger(__name__)

DEFAULT_MAX_TASK_RETRIES = 3
# A score request unanswered this long (a hung or starved actor) fails the trial with
# ScoringTimeout instead of holding its resources for ever; Tune then retries it from its
# last checkpoint. 5,000 samples take under a minute per actor on a CPU, so 30 minutes
# leaves room for a queue of every other trial's requests.
SCORE_TIMEOUT_S = 1800.0


class ScoringTimeout(RuntimeError):
    """A scorer actor did not answer a request in time."""


def placement() -> dict:
    """This process's Ray node and assigned resources ({} outside a Ray worker)."""
    import sys

    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return {}
    ctx = ray.get_runtime_context()
    return {"node_id": ctx.get_node_id(), "resources": dict(ctx.get_assigned_resources()),
            "gpu_ids": [str(i) for i in ctx.get_accelerator_ids().get("GPU", [])]}


class ScorerActor:
    """Serves one scorer folder: ``score``, ``ceiling``, ``info``, ``ping``."""

    def __init__(self, scorer_dir, expected_dataset: str | None = None, data_dir=None) -> None:
        self._scorer = load_scorer(scorer_dir, data_dir=data_dir)
        # Refuse at start-up rather than on every trial's first score.
        self._scorer.check_dataset(expected_dataset)
        self._folder = str(Path(scorer_dir).expanduser().resolve())

    def score(self, images, ns=(1000, 5000), dataset: str | None = None,
              train: dict | None = None) -> dict:
        """``scorers.classifier_scores.score_images`` of ``images`` (flat dict of floats)."""
        return score_images(self._scorer, images, ns=ns, dataset=dataset, train=train)

    def ceiling(self, ns=(1000, 5000), train: dict | None = None) -> dict:
        """The real-test ceiling (first n images of the real ceiling half), same keys."""
        return ceiling(self._scorer, ns, train=train)

    def info(self) -> dict:
        """The scorer's metadata (kind, dataset, scorer_id, test_accuracy, ...), its folder,
        and where it runs: Ray's node and assigned resources (as Ray reports them)."""
        return {**self._scorer.metadata, "folder": self._folder, "placement": placement()}

    def ping(self) -> dict:
        """Cheap liveness check; the pid lets tests (and operators) find the process."""
        return {"ok": True, "pid": os.getpid(), "host": socket.gethostname(),
                "kind": self._scorer.kind, "dataset": self._scorer.dataset,
                "scorer_id": self._scorer.scorer_id, "folder": self._folder}


def start_scorer_actor(scorer_dir, name: str, *, num_cpus: float = 1, num_gpus: float = 0,
                       namespace: str | None = None, lifetime: str | None = None,
                       expected_dataset: str | None = None, data_dir=None,
                       scheduling_strategy=None, max_task_retries: int = DEFAULT_MAX_TASK_RETRIES,
                       verify: bool = True):
    """Start (or join) the named actor serving ``scorer_dir``; returns its handle.

    A second call with the same ``name`` and ``namespace`` returns the SAME actor
    (``get_if_exists``). With ``verify`` the call waits until the actor has loaded its
    scorer and checks that an existing actor of that name serves the same folder,
    so a name clash or an unloadable folder fails here, not in the first trial.
    ``lifetime="detached"`` keeps the actor after the driver exits (default: the job's).
    """
    import ray

    folder = Path(scorer_dir).expanduser().resolve()
    # cheap validation before anything is scheduled
    meta = read_metadata(folder, dataset=expected_dataset)
    if not isinstance(name, str) or not name:
        raise ValueError(f"actor name must be a non-empty string; got {name!r}")
    options = dict(name=name, namespace=namespace, lifetime=lifetime, get_if_exists=True,
                   max_restarts=-1, max_task_retries=max_task_retries, num_cpus=num_cpus,
                   num_gpus=num_gpus)
    if scheduling_strategy is not None:
        options["scheduling_strategy"] = scheduling_strategy
    handle = ray.remote(ScorerActor).options(**options).remote(
        str(folder), expected_dataset, None if data_dir is None else str(data_dir))
    if verify:
        try:
            served = ray.get(handle.ping.remote())["folder"]
        except ray.exceptions.RayActorError as exc:
            if not getattr(exc, "actor_init_failed", False):
                raise
            ray.kill(handle)  # max_restarts=-1 would otherwise reload it forever
            # Ray's text is the actor's traceback; its last line is the scorer's own error.
            lines = [l.strip() for l in (exc.error_msg or "").splitlines() if l.strip()]
            raise ValueError(f"scorer actor {name!r} could not load {folder}: "
                             f"{lines[-1] if lines else exc}") from exc
        if served != str(folder):
            raise ValueError(f"actor {name!r} (namespace {namespace!r}) already serves {served}, "
                             f"not {folder}; choose another name")
    log.info("scorer actor %r serves %s scorer %s", name, meta["kind"], folder)
    return handle


class ActorScorer:
    """A ``scorers.scorecard.SampleScorer`` over the named actor ``name``: the request goes
    out at once, and the wait raises :class:`ScoringTimeout` after ``timeout_s``."""

    def __init__(self, name: str, namespace: str | None, dataset: str,
                 timeout_s: float = SCORE_TIMEOUT_S) -> None:
        self.name, self.namespace, self.dataset, self.timeout_s = name, namespace, dataset, timeout_s

    def __call__(self, images, ns, train: dict | None):
        import ray
        from ray.exceptions import GetTimeoutError

        handle = ray.get_actor(self.name, namespace=self.namespace)
        ref = (handle.ceiling.remote(tuple(ns), train=train) if images is None else
               handle.score.remote(images, ns=tuple(ns), dataset=self.dataset, train=train))

        def wait() -> dict:
            try:
                return ray.get(ref, timeout=self.timeout_s)
            except GetTimeoutError:
                raise ScoringTimeout(
                    f"scorer actor {self.name} did not answer within {self.timeout_s:g} s; "
                    f"check that it is alive (ray list actors) and not starved of CPU "
                    f"(--scorer-cpus)") from None

        return wait


def actor_scorers(actor_names: dict, namespace: str | None, dataset: str,
                  timeout_s: float = SCORE_TIMEOUT_S) -> dict:
    """``kind -> ActorScorer`` for a sweep's named actors."""
    return {kind: ActorScorer(name, namespace, dataset, timeout_s)
            for kind, name in actor_names.items()}
