"""The registered generator, as MLflow loads it: ``mlflow.pyfunc.load_model("models:/NAME/V")``.

This file is logged as the model's code (MLflow's "models from code"), so loading it runs
this readable source, never a pickle; the weights are the checkpoint folder logged beside it
(``model.safetensors`` and ``state.json``). The ``trainables`` package travels with the model
(``code_paths``), so a user needs torch and pythae, not gensweep.

Input, one row per request (a pandas DataFrame or a dict of columns):
  ``n``        images to draw (required)
  ``class``    0-9: every image of that class (labelled samplers only); -1 or absent: none
  ``sampler``  prior, latent-gmm, class-gmm, conditional; absent: class-gmm (conditional for
               a class-conditional model), what ``gensweep synthesize`` draws by default
  ``seed``     the draw's seed (absent: 0)
Output: uint8 images (sum of n, 28, 28), the requests' draws one after another; a balanced
labelled draw is class by class, n / 10 per class (``trainables.samples.balanced_labels``).
The mixture samplers fit to the generator's training images, found as gensweep finds a
dataset (``GENSWEEP_DATA_DIR``, else the folder it was trained from, the cache, or a
download); ``prior`` needs no data.
"""
import math
import os
from pathlib import Path

import mlflow
import numpy as np
from mlflow.pyfunc import PythonModel


def _field(row, key, default):
    value = row.get(key, default)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return default
    return value


class GeneratorModel(PythonModel):
    """A gensweep VAE / VAE-GAN checkpoint that draws images on ``predict``."""

    def load_context(self, context):
        from trainables.checkpoint import load_generator

        self.model, self.cfg, _ = load_generator(Path(context.artifacts["checkpoint"]))

    def predict(self, context, model_input, params=None):
        from trainables.draws import GENERATED, default_mode, draw

        rows = (model_input.to_dict("records") if hasattr(model_input, "to_dict")
                else [dict(model_input)])
        out = []
        for row in rows:
            sampler = str(_field(row, "sampler", default_mode(self.cfg)))
            if sampler not in GENERATED:
                raise ValueError(f"sampler {sampler!r} is not one of {', '.join(GENERATED)}")
            label = int(_field(row, "class", -1))
            # the user's data folder before the one the generator was trained from
            images, _, _ = draw(self.model, self.cfg, sampler, int(row["n"]),
                                int(_field(row, "seed", 0)),
                                data_dir=os.environ.get("GENSWEEP_DATA_DIR"),
                                label=None if label < 0 else label)
            out.append(images)
        return np.concatenate(out) if out else np.zeros((0, 28, 28), np.uint8)


mlflow.models.set_model(GeneratorModel())
