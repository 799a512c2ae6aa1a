"""Samples from the prior (the paper scores 1,000 and 5,000 of them) or from a mixture
fitted to the encoder's latent codes; labelled samples from per-class latent mixtures or a
class-conditional model; labelled reconstructions of real images (named as such); and PNG
grids.

One seeded draw of ``max(n_samples)`` images is saved; the 1K set is its first 1,000 images (a
prefix of an i.i.d. sample is itself an i.i.d. sample), so 1K and 5K scores come from one
decoder pass and the files stay small (uint8, like the real data).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from trainables.conditional import N_CLASSES, clears_labels, is_conditional, set_labels

SAMPLES_FILE, GRID_FILE = "samples.npz", "samples_grid.png"
LABELLED_FILE, CLASS_GRID_FILE = "labelled.npz", "labelled_grid.png"


@torch.no_grad()
def sample_prior(model, n: int, seed: int = 0, batch_size: int = 500) -> np.ndarray:
    """``n`` images decoded from z ~ N(0, I), as uint8 (n, 28, 28). A conditional model's
    prior is its mixture over classes: each image's class is drawn as in
    :func:`balanced_labels` (seeded), and then forgotten."""
    if is_conditional(model):
        return sample_conditional(model, balanced_labels(n, seed), seed, batch_size)[0]
    return _decode(model, n, None, seed, batch_size)


def draw_samples(model, sampler: str, n: int, seed: int, train_images: np.ndarray,
                 batch_size: int = 500) -> np.ndarray:
    """``n`` unlabelled images from ``sampler`` (trainables.config.SAMPLERS), uint8."""
    if sampler == "latent-gmm":
        return sample_latent_gmm(model, train_images, n, seed, batch_size=batch_size)
    return sample_prior(model, n, seed=seed, batch_size=batch_size)


GMM_COMPONENTS, GMM_FIT_IMAGES = 10, 10_000


def latent_mixture(codes: np.ndarray, n: int, seed: int = 0,
                   components: int = GMM_COMPONENTS) -> np.ndarray:
    """``n`` latent vectors from a Gaussian mixture (``components``, full covariances)
    fitted to ``codes`` (N, latent), seeded; in a shuffled order, so any prefix is an
    i.i.d. draw (sklearn draws component by component)."""
    from sklearn.mixture import GaussianMixture

    codes = np.asarray(codes, np.float64)
    gmm = GaussianMixture(min(components, len(codes)), covariance_type="full",
                          random_state=seed).fit(codes)
    z, _ = gmm.sample(n)
    return z[np.random.default_rng(seed).permutation(n)].astype(np.float32)


@torch.no_grad()
def encoder_means(model, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """The encoder's means (the codes) of uint8 ``images``, as float32 (N, latent)."""
    model.eval()
    device = next(model.parameters()).device
    codes = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(images[start:start + batch_size]).float()
        codes.append(model.encoder(x.div_(255.0).unsqueeze(1).to(device)).embedding.cpu())
    return torch.cat(codes).numpy() if codes else np.zeros((0, model.latent_dim), np.float32)


@torch.no_grad()
def decode_latents(model, z: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """Decode latent vectors ``z`` (N, latent) into uint8 (N, 28, 28) images."""
    model.eval()
    device = next(model.parameters()).device
    z = torch.from_numpy(np.asarray(z, np.float32))
    out = [_to_uint8(model.decoder(z[s:s + batch_size].to(device)).reconstruction
                     .reshape(-1, 28, 28)) for s in range(0, len(z), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 28, 28), np.uint8)


def _fit_pick(n_images: int, k: int, seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(seed).choice(n_images, min(k, n_images),
                                                      replace=False))


def sample_latent_gmm(model, train_images: np.ndarray, n: int, seed: int = 0,
                      fit_images: int = GMM_FIT_IMAGES, batch_size: int = 500) -> np.ndarray:
    """``n`` images decoded from :func:`latent_mixture` fitted to the encoder's means of
    ``fit_images`` seeded training images, as uint8 (n, 28, 28).

    A VAE's encoder does not fill N(0, I): the codes of real images leave holes, and the
    prior's draws that land there decode to blurred, in-between shapes. Sampling where the
    training images are encoded (Ghosh et al. 2020, "From Variational to Deterministic
    Autoencoders"; pythae's GaussianMixtureSampler, 10 components) avoids them. The
    mixture is fitted afresh for each call: about 2.6 s for 5,000 samples on one CPU
    thread (the small networks, 2026-12-05)."""
    if is_conditional(model):
        raise ValueError("a class-conditional model draws from the prior, class by class")
    pick = _fit_pick(len(train_images), fit_images, seed)
    z = latent_mixture(encoder_means(model, train_images[pick], batch_size), n, seed)
    return decode_latents(model, z, batch_size)


CLASS_GMM_COMPONENTS = 3


def sample_class_gmm(model, train_images: np.ndarray, train_labels: np.ndarray,
                     labels: np.ndarray, seed: int = 0, fit_images: int = GMM_FIT_IMAGES,
                     batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """Generated labelled samples from an unconditional model: for each class c, a Gaussian
    mixture (``CLASS_GMM_COMPONENTS``) fitted to the encoder's means of up to
    ``fit_images / 10`` seeded training images of class c, sampled and decoded; each image
    is labelled with the class whose mixture drew it. ``labels``: the class of each image
    to draw (e.g. :func:`balanced_labels`). Returns uint8 images and the labels (uint8).

    No image here is a reconstruction of a training image: the decoder sees fresh latent
    vectors, so what a classifier learns from them is what the generator learned."""
    if is_conditional(model):
        raise ValueError("a class-conditional model is told the class: use sample_conditional")
    labels = np.asarray(labels).astype(np.uint8)
    train_labels = np.asarray(train_labels)
    z = np.zeros((len(labels), model.latent_dim), np.float32)
    for c in np.unique(labels):
        where = np.flatnonzero(labels == c)
        own = np.flatnonzero(train_labels == c)
        if not len(own):
            raise ValueError(f"class {c} has no training images to fit its mixture to")
        pick = own[_fit_pick(len(own), fit_images // N_CLASSES, seed + int(c))]
        codes = encoder_means(model, train_images[pick], batch_size)
        z[where] = latent_mixture(codes, len(where), seed + int(c), CLASS_GMM_COMPONENTS)
    return decode_latents(model, z, batch_size), labels


def balanced_labels(n: int, seed: int = 0, shuffle: bool = True) -> np.ndarray:
    """``n`` labels, n / 10 of each class (to within one image): in a seeded
    random order, or class by class with ``shuffle=False``."""
    labels = (np.arange(n) * N_CLASSES // max(n, 1)).astype(np.uint8)
    return np.random.default_rng(seed).permutation(labels) if shuffle else labels


@torch.no_grad()
def sample_conditional(model, labels: np.ndarray, seed: int = 0,
                       batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """A conditional model's samples of the given classes: z ~ N(0, I), decoded with label
    ``labels[i]``. Returns uint8 images and the labels (uint8)."""
    if not is_conditional(model):
        raise ValueError("the model is not class-conditional: draw labelled samples from its "
                         "per-class latent mixtures instead (mode 'class-gmm')")
    labels = np.asarray(labels).astype(np.uint8)
    return _decode(model, len(labels), labels, seed, batch_size), labels


@clears_labels
def _decode(model, n: int, labels, seed: int, batch_size: int) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        z = torch.randn(m, model.latent_dim, generator=gen).to(device)
        if labels is not None:
            set_labels(model, torch.from_numpy(labels[start:start + m]).long().to(device))
        out.append(_to_uint8(model.decoder(z).reconstruction.reshape(m, 28, 28)))
    return np.concatenate(out) if out else np.zeros((0, 28, 28), np.uint8)


def _to_uint8(x) -> np.ndarray:
    return torch.round(x.clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()


@torch.no_grad()
@clears_labels
def sample_reconstruction(model, images: np.ndarray, labels: np.ndarray, n: int,
                          seed: int = 0, batch_size: int = 500
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` labelled reconstructions, "starting from a reference image instead of noise"
    (the paper, section 4): real training images of each class c (n / 10 of them, seeded,
    drawn without replacement while they last), z ~ q(z|x) from the encoder, decoded;
    labelled c. A conditional model is told c in both its encoder and its decoder.

    Every image is a reconstruction of a named training image: this is not generated data,
    and sharing it shares those images. Returns uint8 (n, 28, 28) images, uint8 labels and
    the index of each image's source in ``images``, class by class."""
    model.eval()
    device = next(model.parameters()).device
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    classes = np.unique(labels)
    per_class = np.full(len(classes), n // len(classes))
    per_class[: n % len(classes)] += 1
    chosen = np.concatenate([
        rng.choice(np.flatnonzero(labels == c), size=k, replace=k > (labels == c).sum())
        for c, k in zip(classes, per_class)])
    out = []
    for start in range(0, len(chosen), batch_size):
        idx = chosen[start:start + batch_size]
        x = torch.from_numpy(images[idx]).float().div_(255.0).unsqueeze(1).to(device)
        set_labels(model, torch.from_numpy(labels[idx]).long().to(device))
        enc = model.encoder(x)
        std = torch.exp(0.5 * enc.log_covariance)
        eps = torch.randn(std.shape, generator=gen).to(device)
        z = enc.embedding + eps * std
        out.append(_to_uint8(model.decoder(z).reconstruction.reshape(len(idx), 28, 28)))
    return np.concatenate(out), labels[chosen].astype(np.uint8), chosen


def image_grid(images: np.ndarray, cols: int = 8) -> np.ndarray:
    """Tile up to ``cols * cols`` (N, 28, 28) uint8 images into one uint8 image with 2px gaps."""
    images = images[: cols * cols]
    rows = int(np.ceil(len(images) / cols))
    h, w = images.shape[1:3]
    grid = np.full((rows * (h + 2) + 2, cols * (w + 2) + 2), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        grid[2 + r * (h + 2): 2 + r * (h + 2) + h, 2 + c * (w + 2): 2 + c * (w + 2) + w] = img
    return grid


def class_grid(images: np.ndarray, labels: np.ndarray, per_class: int = 10) -> np.ndarray:
    """One row per class (ascending), the first ``per_class`` images of that class each."""
    rows = []
    for c in np.unique(labels):
        picked = images[labels == c][:per_class]
        if len(picked) < per_class:
            picked = np.concatenate([picked, np.full((per_class - len(picked), 28, 28), 255,
                                                      np.uint8)])
        rows.append(picked)
    return image_grid(np.concatenate(rows), cols=per_class)


def save_png(grid: np.ndarray, path, scale: int = 3) -> Path:
    from PIL import Image

    img = Image.fromarray(grid, mode="L")
    img.resize((img.width * scale, img.height * scale), Image.NEAREST).save(path, format="PNG")
    return Path(path)


def save_grid(images: np.ndarray, path, cols: int = 8, scale: int = 3) -> Path:
    """Write a PNG grid of the first 64 images, upscaled so it is readable in the MLflow UI."""
    return save_png(image_grid(images, cols), path, scale)


def save_samples(images: np.ndarray, folder) -> dict:
    """Save ``samples.npz`` (key ``samples``) and the grid PNG into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / SAMPLES_FILE, samples=images)
    save_grid(images, folder / GRID_FILE)
    return {"samples": str(folder / SAMPLES_FILE), "grid": str(folder / GRID_FILE)}


def save_labelled(images: np.ndarray, labels: np.ndarray, folder) -> None:
    """``labelled.npz`` (keys ``images``, ``labels``) and a grid with one row per class."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / LABELLED_FILE, images=images, labels=labels)
    save_png(class_grid(images, labels), folder / CLASS_GRID_FILE)


def load_samples(path) -> np.ndarray:
    """Load a ``samples.npz`` written by :func:`save_samples` (never with pickle)."""
    with np.load(path, allow_pickle=False) as data:
        return data["samples"]
