"""Samples from the prior (the paper scores 1,000 and 5,000 of them) and a PNG grid to look at.

One seeded draw of ``max(n_samples)`` images is saved; the 1K set is its first 1,000 images (a
prefix of an i.i.d. sample is itself an i.i.d. sample), so 1K and 5K scores come from one
decoder pass and the files stay small (uint8, like the real data).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

SAMPLES_FILE, GRID_FILE = "samples.npz", "samples_grid.png"


@torch.no_grad()
def sample_prior(model, n: int, seed: int = 0, batch_size: int = 500) -> np.ndarray:
    """``n`` images decoded from z ~ N(0, I), as uint8 (n, 28, 28)."""
    model.eval()
    device = next(model.parameters()).device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    out = []
    for start in range(0, n, batch_size):
        m = min(batch_size, n - start)
        z = torch.randn(m, model.latent_dim, generator=gen).to(device)
        x = model.decoder(z).reconstruction.reshape(m, 28, 28)
        out.append(torch.round(x.clamp(0, 1) * 255).to(torch.uint8).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 28, 28), np.uint8)


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


def save_grid(images: np.ndarray, path, cols: int = 8, scale: int = 3) -> Path:
    """Write a PNG grid of the first 64 images, upscaled so it is readable in the MLflow UI."""
    from PIL import Image

    grid = image_grid(images, cols)
    img = Image.fromarray(grid, mode="L")
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    path = Path(path)
    img.save(path)
    return path


def save_samples(images: np.ndarray, folder) -> dict:
    """Save ``samples.npz`` (key ``samples``) and the grid PNG into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / SAMPLES_FILE, samples=images)
    save_grid(images, folder / GRID_FILE)
    return {"samples": str(folder / SAMPLES_FILE), "grid": str(folder / GRID_FILE)}


def load_samples(path) -> np.ndarray:
    """Load a ``samples.npz`` written by :func:`save_samples` (never with pickle)."""
    with np.load(path, allow_pickle=False) as data:
        return data["samples"]
