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
import shutil
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

CODE = Path(__file__).with_name("generator_pyfunc.py")
TRAINABLES = Path(__file__).resolve().parents[1] / "trainables"
ARTIFACT_NAME, CHECKPOINT_ARTIFACT = "generator", "checkpoint"
# what a user passes to predict; the prior, so checking it at log time needs no dataset
EXAMPLE = {"n": 4, "class": -1, "sampler": "prior", "seed": 0}
WEIGHTS = ("model.safetensors", "state.json")  # what load_generator reads
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
    returns ``models:/NAME/VERSION``. A version of this sweep and checkpoint that exists
    already is returned as it is (a replayed call registers nothing twice)."""
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(uri, registry_uri=uri)
    sha = checkpoint_sha256(checkpoint)
    for version in _versions(client, name):
        if version.tags.get(SWEEP_TAG) == sweep_id and version.tags.get(SHA_TAG) == sha:
            return f"models:/{name}/{version.version}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    with tempfile.TemporaryDirectory() as tmp:
        # the weights and the config: not the optimiser's state, nor the grid
        staged = Path(tmp) / CHECKPOINT_ARTIFACT
        staged.mkdir()
        for name_ in WEIGHTS:
            shutil.copy2(Path(checkpoint) / name_, staged / name_)
        # on the parent run; the sweep's writer sets its final status after this call
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name=ARTIFACT_NAME, python_model=str(CODE),
                artifacts={CHECKPOINT_ARTIFACT: str(staged)}, code_paths=[str(TRAINABLES)],
                signature=signature(), input_example=EXAMPLE, pip_requirements=REQUIREMENTS)
    version = mlflow.register_model(info.model_uri, name)
    for key, value in {**tags, SWEEP_TAG: sweep_id, SHA_TAG: sha}.items():
        client.set_model_version_tag(name, version.version, key, str(value))
    log.info("registered the generator as models:/%s/%s", name, version.version)
    return f"models:/{name}/{version.version}"


def _versions(client, name: str) -> list:
    from mlflow.exceptions import MlflowException

    try:
        return client.search_model_versions(f"name = '{name}'")
    except MlflowException:
        return []


def fetch_checkpoint(model_uri: str, tracking_uri: str, into: Path) -> Path:
    """Download a registered generator's checkpoint folder into ``into``; RegistryError
    naming the model if it does not exist or is not a gensweep generator."""
    import mlflow
    from mlflow.exceptions import MlflowException

    if not model_uri.startswith("models:/") or model_uri.count("/") < 2:
        raise RegistryError(f"--model {model_uri}: expected models:/NAME/VERSION (or "
                            f"models:/NAME@ALIAS)")
    try:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(into),
                                                    tracking_uri=tracking_uri)
    except MlflowException as exc:
        raise RegistryError(f"--model {model_uri}: not in the registry at this tracking URI "
                            f"({exc.message.splitlines()[0]})") from exc
    folder = Path(local) / "artifacts" / CHECKPOINT_ARTIFACT
    if not (folder / "model.safetensors").is_file():
        raise RegistryError(f"--model {model_uri}: not a gensweep generator (no "
                            f"artifacts/{CHECKPOINT_ARTIFACT}/model.safetensors)")
    return folder


def source_run(model_folder: Path) -> str | None:
    """The run a downloaded model was logged on (its MLmodel's ``run_id``)."""
    import yaml

    path = Path(model_folder) / "MLmodel"
    return yaml.safe_load(path.read_text()).get("run_id") if path.is_file() else None
