"""The Inception v3 scorer (TensorFlow/Keras): build, fine-tune, predict, save, load.

Architecture and training follow the paper (section 4.2.3): grayscale images repeated to
RGB, resized to 75x75 (the smallest input Keras' InceptionV3 accepts), scaled to [-1, 1]
as Inception's ``preprocess_input`` does, ``InceptionV3(include_top=False,
pooling="avg")`` plus a ``Dense(10, softmax)`` head, categorical cross-entropy, Adam.
The preprocessing is part of the model graph, so training, the stored real-test
features and every later prediction see exactly the same pixels. The penultimate
features used for FID/KID/... are the 2048-d average-pooled vector.

One addition: after every epoch the BatchNormalization moving statistics are re-estimated
as a plain average over ``BN_RECAL_IMAGES`` training images ("precise BN"). Keras' moving
averages (momentum 0.99) need hundreds of steps to forget their initial values; after a
short CPU fine-tune they are still mostly the init, and the network then predicts one
class for everything in inference mode (10% test accuracy measured on MNIST after 3 short
epochs). Re-estimating changes no trained weight; after the paper's 20 x 469 steps it
makes no measurable difference.

TensorFlow is imported inside the functions, so importing this module stays cheap.
"""
from __future__ import annotations

import logging
import os
import weakref
from pathlib import Path

import numpy as np

from scorers.spec import N_CLASSES, init_error
from trainables.device import gpu_share, ray_assignment
from trainables.quiet import filter_stderr

log = logging.getLogger(__name__)

INPUT_SIZE = 75
FEATURE_DIM = 2048
PREDICT_BATCH = 256  # bounds memory for any N: one 256x75x75x3 batch at a time
BN_RECAL_IMAGES = 2048
BN_RECAL_BATCH = 128
WARMUP_FRACTION = 0.05
WEIGHTS_FILE = "model.weights.h5"
ARCHITECTURE = {"base": "keras.applications.InceptionV3", "include_top": False,
                "input_shape": [INPUT_SIZE, INPUT_SIZE, 3], "pooling": "avg",
                "head": f"Dense({N_CLASSES}, softmax)", "features": f"avg-pooled ({FEATURE_DIM})",
                "bn_recalibration_images": BN_RECAL_IMAGES}
PREPROCESSING = {"input": "28x28 grayscale in [0, 1]", "resize": f"bilinear to {INPUT_SIZE}x{INPUT_SIZE}",
                 "channels": "grayscale repeated to RGB", "scale": "x * 2 - 1 (Inception preprocess_input)"}
IMAGENET_URL_HINT = "https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"


def configure_tf():
    """Import TensorFlow quietly (``trainables.quiet``); bound its GPU memory to this
    process's share, or let it grow instead of grabbing the whole GPU."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    filter_stderr()
    import tensorflow as tf

    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0:
        # Ray sets OMP_NUM_THREADS to an actor's CPU share; TF ignores it and would run one
        # thread per core, competing with the trials on the same node.
        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(int(threads))
        except RuntimeError:  # TF already running in this process: too late, keep its pools
            pass
    gpus = tf.config.list_physical_devices("GPU")
    share = gpu_share()
    for gpu in gpus:
        try:
            limit = gpu_memory_limit_mb(share)
            if limit is None:
                tf.config.experimental.set_memory_growth(gpu, True)
            else:  # a fractional Ray share: torch in the same process gets the rest
                tf.config.set_logical_device_configuration(
                    gpu, [tf.config.LogicalDeviceConfiguration(memory_limit=limit)])
        except RuntimeError:  # already initialised by someone else in this process: keep theirs
            pass
    if not gpus and ray_assignment().gpus > 0:
        _log_cpu_fallback_once()
    return tf


_FALLBACK_LOGGED = []


def _log_cpu_fallback_once() -> None:
    if not _FALLBACK_LOGGED:
        _FALLBACK_LOGGED.append(True)
        log.warning("Ray assigned a GPU share to this Inception scorer, but TensorFlow finds no "
                    "GPU here (a logical GPU?); running on the CPU")


def gpu_memory_limit_mb(share: float) -> int | None:
    """TensorFlow's memory cap for a fractional GPU share (None: whole GPU, grow as needed),
    from ``nvidia-smi``'s total for the first visible GPU."""
    if share >= 1:
        return None
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.total",
                              "--format=csv,noheader,nounits"], capture_output=True,
                             text=True, timeout=10, check=True).stdout.split()
        return max(256, int(float(out[0]) * share))
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def check_init(init: str) -> None:
    """Fail fast, before TensorFlow is even imported, on inits that cannot work."""
    if init in ("scratch", "imagenet"):
        return
    path = Path(init)
    if not path.is_file():
        what = "it is a directory" if path.is_dir() else "no such file"
        raise init_error("inception", init, f"{what}; it is neither 'scratch', 'imagenet' nor "
                         "an existing weights file (HuggingFace ids only work for the vit scorer)")
    if path.suffix != ".h5":
        raise init_error("inception", init, "expected a Keras HDF5 weights file ending in .h5")


def build(init: str = "scratch", seed: int = 0):
    """The scorer network (inputs (N, 28, 28, 1) in [0, 1]; outputs (probs, features))."""
    check_init(init)
    configure_tf()
    import keras

    keras.utils.set_random_seed(seed)
    weights = None if init == "scratch" else init
    try:
        base = keras.applications.InceptionV3(include_top=False, weights=weights,
                                              input_shape=(INPUT_SIZE, INPUT_SIZE, 3),
                                              pooling="avg")
    except Exception as exc:  # Keras raises bare Exception for download failures
        where = f" from {IMAGENET_URL_HINT}" if init == "imagenet" else ""
        raise init_error("inception", init, f"loading the weights{where} failed "
                         f"({type(exc).__name__}: {str(exc).strip()[:300]})") from exc
    image = keras.Input((28, 28, 1), name="image")
    x = keras.layers.Resizing(INPUT_SIZE, INPUT_SIZE, interpolation="bilinear")(image)
    x = keras.layers.Concatenate(axis=-1)([x, x, x])
    x = keras.layers.Rescaling(2.0, offset=-1.0)(x)
    features = base(x)
    probs = keras.layers.Dense(N_CLASSES, activation="softmax", name="head")(features)
    return keras.Model(image, [probs, features], name="inception_scorer")


def _batchnorms(model) -> list:
    import keras

    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found += _batchnorms(layer)
    return found


def recalibrate_batchnorm(model, x: np.ndarray, seed: int) -> int:
    """Set BN moving statistics to the average over up to BN_RECAL_IMAGES of ``x``."""
    layers = _batchnorms(model)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.permutation(len(x))[:BN_RECAL_IMAGES])
    saved = [layer.momentum for layer in layers]
    try:
        for k, start in enumerate(range(0, len(idx), BN_RECAL_BATCH)):
            # momentum k/(k+1) makes the moving value the running mean of the batch statistics
            for layer in layers:
                layer.momentum = k / (k + 1)
            model(x[idx[start:start + BN_RECAL_BATCH]], training=True)
    finally:
        for layer, m in zip(layers, saved):
            layer.momentum = m
    return len(idx)


def learning_rate(lr: float, schedule: str, total_steps: int):
    """Adam's learning rate: ``lr`` throughout (the paper), or a linear warm-up over the first
    ``WARMUP_FRACTION`` of ``total_steps`` to ``lr`` then cosine decay to 0."""
    if schedule == "constant":
        return lr
    import keras

    warmup = max(1, int(WARMUP_FRACTION * total_steps))
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(1, total_steps - warmup), warmup_target=lr, warmup_steps=warmup)


def fit(model, images: np.ndarray, labels: np.ndarray, *, epochs: int, batch_size: int,
        lr: float, seed: int, epoch_end, progress: bool = True,
        schedule: str = "constant", augment=None, batch_end=None) -> None:
    """Fine-tune ``model`` on (N, 28, 28) float [0, 1] ``images``; ``epoch_end(epoch, logs)``
    runs after each epoch (and after BN re-estimation) to evaluate. ``augment(images,
    epoch)`` gives each epoch's training images (default: the images themselves).
    ``batch_end()`` runs after every batch (``scorers.speed_probe`` times them)."""
    configure_tf()
    import keras
    from tqdm.auto import tqdm

    keras.utils.set_random_seed(seed)
    x = images[..., None].astype(np.float32, copy=False)
    y = labels.astype(np.int64)
    steps = -(-len(x) // batch_size)
    trainer = keras.Model(model.inputs, model.outputs[0])
    trainer.compile(optimizer=keras.optimizers.Adam(
                        learning_rate=learning_rate(lr, schedule, epochs * steps)),
                    loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    class Bar(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.bar = tqdm(total=steps, desc=f"inception epoch {epoch + 1}/{epochs}",
                            unit="batch", disable=not progress, leave=False)

        def on_train_batch_end(self, batch, logs=None):
            if batch_end is not None:
                batch_end()
            self.bar.update(1)
            logs = logs or {}
            self.bar.set_postfix(loss=f"{logs.get('loss', float('nan')):.3f}",
                                 acc=f"{logs.get('accuracy', float('nan')):.3f}")

        def on_epoch_end(self, epoch, logs=None):
            self.bar.close()

    for epoch in range(epochs):
        xe = x if augment is None else augment(images, epoch)[..., None].astype(np.float32)
        hist = trainer.fit(xe, y, batch_size=batch_size, epochs=1, shuffle=True, verbose=0,
                           callbacks=[Bar()])
        recalibrate_batchnorm(model, xe, seed + epoch)  # the statistics of what it trained on
        epoch_end(epoch, {"train_loss": float(hist.history["loss"][-1]),
                          "train_accuracy": float(hist.history["accuracy"][-1])})


_GRAPHS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _inference_graph(model):
    """The model's inference pass as one traced graph, made once per model.

    Called eagerly, Keras runs InceptionV3's ~300 layers op by op; traced, TensorFlow's graph
    optimiser fuses them (convolution, batch norm, activation), which predicts about 1.5x as
    many images per second on one CPU thread (``bench/inception_graph.py``) with the same
    features. A fixed signature traces once for every batch size."""
    fn = _GRAPHS.get(model)
    if fn is None:
        tf = configure_tf()
        owner = weakref.ref(model)  # a strong reference here would keep the model alive

        fn = tf.function(lambda batch: owner()(batch, training=False), input_signature=[
            tf.TensorSpec([None, 28, 28, 1], tf.float32)])
        _GRAPHS[model] = fn
    return fn


def predict(model, x: np.ndarray, batch_size: int = PREDICT_BATCH) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (N, 10) float64 and features (N, 2048) float32 of (N, 28, 28) [0, 1] images."""
    infer = _inference_graph(model)
    probs = np.empty((len(x), N_CLASSES), np.float64)
    feats = np.empty((len(x), FEATURE_DIM), np.float32)
    for start in range(0, len(x), batch_size):
        batch = np.asarray(x[start:start + batch_size, ..., None], dtype=np.float32)
        p, f = infer(batch)
        probs[start:start + len(batch)] = p.numpy()
        feats[start:start + len(batch)] = f.numpy()
    # float32 softmax rows sum to 1 only within ~1e-7; make them exact for the IS formula
    probs /= probs.sum(axis=1, keepdims=True)
    return probs, feats


def save(model, folder: Path) -> list[str]:
    model.save_weights(str(Path(folder) / WEIGHTS_FILE))
    return [WEIGHTS_FILE]


def load(folder: Path):
    """Rebuild the architecture in code and load only the weights (no pickles, no code)."""
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise ValueError(f"{folder}: missing {WEIGHTS_FILE}; not an inception scorer folder")
    model = build("scratch")
    try:
        model.load_weights(str(path))
    except (OSError, ValueError) as exc:  # not HDF5, truncated, or other layers' weights
        raise ValueError(f"{folder}: {WEIGHTS_FILE} cannot be loaded as this scorer's weights "
                         f"({type(exc).__name__}: {exc}); the folder is damaged or was not "
                         "written by gensweep: delete it to fine-tune again") from exc
    return model


def architecture(model) -> dict:
    return {**ARCHITECTURE, "parameters": int(model.count_params())}


def versions() -> dict:
    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__}
