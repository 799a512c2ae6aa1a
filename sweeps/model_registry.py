"""The sweep's winner as a registered MLflow model, and a registered model back as a
checkpoint folder.

``register_generator`` logs a checkpoint as a pyfunc model (``sweeps.generator_pyfunc``,
logged as code; the weights stay in safetensors) on the sweep's parent run, registers it
under ``model_name(dataset, space)`` (e.g. ``gensweep-mnist-vaegan``) and tags the version
with the scores, the sweep and the scorers. It is idempotent, so the tracking writer may
replay it: a version already registered from the same sweep and checkpoint is returned.
``fetch_checkpoint`` downloads a ``models:/NAME/VERSION``'s checkpoint for
``gensweep synthesize --model``.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from sweeps.redact import redact_url
from sweeps.tracking_server import bound_http_retries, check_reachable

log = logging.getLogger(__name__)

CODE = Path(__file__).with_name("generator_pyfunc.py")
TRAINABLES = Path(__file__).resolve().parents[1] / "trainables"
ARTIFACT_NAME, CHECKPOINT_ARTIFACT = "generator", "checkpoint"
# what a user passes to predict; the prior, so checking it at log time needs no dataset
EXAMPLE = {"n": 4, "class": -1, "sampler": "prior", "seed": 0}
WEIGHTS = ("model.safetensors", "state.json")  # what load_generator reads
_URI_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
SWEEP_TAG, SHA_TAG = "gensweep.sweep_id", "gensweep.checkpoint_sha256"
# What the logged model needs beside its code (trainables travels with it).
REQUIREMENTS = ["torch>=2.13,<2.14", "pythae==0.1.2", "numpy>=2.4,<2.5",
                "safetensors>=0.8,<0.9", "scikit-learn", "pandas"]


class RegistryError(RuntimeError):
    """A registered model that does not exist or cannot be read."""


def model_name(dataset: str, space: str) -> str:
    return f"gensweep-{dataset}-{space}"


def supports_registry(uri: str) -> bool:
    """MLflow's Model Registry needs a database or a tracking server, not a file store."""
    return not uri.startswith("file:") and "://" in uri


def signature():
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, Schema, TensorSpec

    return ModelSignature(
        inputs=Schema([ColSpec("long", "n"), ColSpec("long", "class", required=False),
                       ColSpec("string", "sampler", required=False),
                       ColSpec("long", "seed", required=False)]),
        outputs=Schema([TensorSpec(np.dtype(np.uint8), (-1, 28, 28))]))


def checkpoint_sha256(checkpoint: Path) -> str:
    return hashlib.sha256((Path(checkpoint) / "model.safetensors").read_bytes()).hexdigest()


def register_generator(uri: str, run_id: str, checkpoint, name: str, tags: dict,
                       sweep_id: str) -> str:
    """Log ``checkpoint`` as a pyfunc model on run ``run_id`` and register it as ``name``;
    returns ``models:/NAME/VERSION``. Idempotent, so a replayed call registers nothing
    twice: a version of this sweep and checkpoint is returned as it is, and a model already
    logged for them is registered rather than logged again. The identity tags are created
    with the logged model and with the version, never in a later call."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(uri, registry_uri=uri)
    sha = checkpoint_sha256(checkpoint)
    identity = {SWEEP_TAG: sweep_id, SHA_TAG: sha}
    for version in _versions(client, name):
        if all(version.tags.get(k) == v for k, v in identity.items()):
            return f"models:/{name}/{version.version}"
    run = client.get_run(run_id)
    logged = client.search_logged_models(
        [run.info.experiment_id],
        filter_string=f"tags.`{SWEEP_TAG}` = '{sweep_id}' AND tags.`{SHA_TAG}` = '{sha}'")
    if logged:
        model_uri = f"models:/{logged[0].model_id}"
    else:
        model_uri = _log(uri, client, run, checkpoint, identity)
    with _fluent_uris(uri):
        version = mlflow.register_model(
            model_uri, name, tags={**{k: str(v) for k, v in tags.items()}, **identity})
    log.info("registered the generator as models:/%s/%s", name, version.version)
    return f"models:/{name}/{version.version}"


def _log(uri: str, client, run, checkpoint, identity: dict) -> str:
    """Log the pyfunc on ``run``, leaving the run's status as it was (the sweep's writer
    sets the parent run's final status)."""
    import mlflow

    try:
        with _fluent_uris(uri), tempfile.TemporaryDirectory() as tmp:
            # the weights and the config: not the optimiser's state, nor the grid
            staged = Path(tmp) / CHECKPOINT_ARTIFACT
            staged.mkdir()
            for name_ in WEIGHTS:
                shutil.copy2(Path(checkpoint) / name_, staged / name_)
            with mlflow.start_run(run_id=run.info.run_id):
                info = mlflow.pyfunc.log_model(
                    name=ARTIFACT_NAME, python_model=str(CODE),
                    artifacts={CHECKPOINT_ARTIFACT: str(staged)},
                    code_paths=[str(TRAINABLES)], signature=signature(),
                    input_example=EXAMPLE, pip_requirements=REQUIREMENTS, tags=identity)
        return info.model_uri
    finally:
        client.update_run(run.info.run_id, status=run.info.status)


@contextmanager
def _fluent_uris(uri: str):
    """Point MLflow's fluent API (``log_model`` has no client form) at ``uri``, then put
    the process back as it was: the module settings and the environment variables that
    ``set_tracking_uri``/``set_registry_uri`` also write, which the caller's later clients
    and every subprocess it starts would otherwise inherit."""
    import mlflow
    from mlflow.tracking._model_registry import utils as registry
    from mlflow.tracking._tracking_service import utils as tracking

    env = {k: os.environ.get(k) for k in _URI_ENV}
    before = (tracking._tracking_uri, registry._registry_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before[0])
        registry._registry_uri = before[1]
        for key, value in env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _versions(client, name: str) -> list:
    """The registered versions of ``name``; none if the model is not registered yet (any
    other failure is raised: a lookup that failed must not pass for "not registered")."""
    from mlflow.exceptions import MlflowException

    try:
        return client.search_model_versions(f"name = '{name}'")
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return []
        raise


def fetch_checkpoint(model_uri: str, tracking_uri: str | None, into: Path) -> Path:
    """Download a registered generator's checkpoint folder into ``into``; RegistryError
    naming the model if it does not exist or is not a gensweep generator, ValueError
    without a tracking URI, ConnectionError if the registry or its artifact store cannot be
    reached."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if not model_uri.startswith("models:/") or model_uri.count("/") < 2:
        raise RegistryError(f"--model {model_uri}: expected models:/NAME/VERSION (or "
                            f"models:/NAME@ALIAS)")
    if not tracking_uri:
        raise ValueError(f"--model {model_uri} needs the tracking URI of its registry: pass "
                         f"--mlflow-uri URI or set MLFLOW_TRACKING_URI")
    check_reachable(tracking_uri, advice=", or pass the --mlflow-uri of the server that "
                                         "holds the model")
    bound_http_retries()
    try:
        # through the fluent settings: download_artifacts resolves models:/ against the
        # process's registry whatever tracking_uri it is given
        with _fluent_uris(tracking_uri):
            local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri,
                                                        dst_path=str(into))
    except MlflowException as exc:
        why = (exc.message.splitlines() or [""])[0]
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(f"--model {model_uri}: not in the registry at this tracking "
                                f"URI ({why})") from exc
        raise ConnectionError(f"--model {model_uri}: the registry did not answer ({why})") \
            from exc
    except (OSError, ImportError) as exc:  # an artifact store that cannot be read from here
        raise ConnectionError(f"--model {model_uri}: its files could not be downloaded "
                              f"({exc})") from exc
    folder = Path(local) / "artifacts" / CHECKPOINT_ARTIFACT
    if not (folder / "model.safetensors").is_file():
        raise RegistryError(f"--model {model_uri}: not a gensweep generator (no "
                            f"artifacts/{CHECKPOINT_ARTIFACT}/model.safetensors)")
    log.info("using %s, downloaded from %s", model_uri, redact_url(tracking_uri))
    return folder


def source_run(model_folder: Path) -> str | None:
    """The run a downloaded model was logged on (its MLmodel's ``run_id``)."""
    import yaml

    path = Path(model_folder) / "MLmodel"
    return yaml.safe_load(path.read_text()).get("run_id") if path.is_file() else None
