"""Memorisation checks on real MNIST (scorers.memorisation): copies of training images are
flagged, fresh digits and a trained VAE's samples are not."""
import numpy as np
import pytest

from scorers import memorisation as memo
from trainables.datasets import load_dataset


@pytest.fixture(scope="module")
def mnist():
    ds = load_dataset("mnist", subset=3000, seed=0)
    return ds.train.images, ds.test.images


def flat(images):
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def test_a_generator_that_returns_training_images_is_flagged(mnist):
    train_images, _ = mnist
    train = memo.training_set(flat(train_images))
    copies = train_images[np.random.default_rng(1).choice(len(train_images), 500)]
    res = memo.memorisation(train, flat(copies))
    assert res["near_copies"] == 1.0 and res["authenticity"] == 0.0
    assert (res["nearest_sq"] < 1e-3).all()  # 0 up to float32 round-off (a copy)
    # a copy with a little noise on top is still a copy
    noisy = np.clip(flat(copies) + np.random.default_rng(2).normal(0, 0.02, (500, 784)), 0, 1)
    assert memo.memorisation(train, noisy)["near_copies"] > 0.95


def test_fresh_digits_count_as_the_quantile_says(mnist):
    train_images, test_images = mnist
    train = memo.training_set(flat(train_images))
    res = memo.memorisation(train, flat(test_images[:2000]))
    # by construction about QUANTILE of fresh draws fall inside the threshold
    assert res["near_copies"] < 5 * memo.QUANTILE
    assert 0.3 < res["authenticity"] < 0.7  # Alaa et al.: 0.5 for the data distribution


def test_noise_is_authentic_and_not_memorised(mnist):
    train = memo.training_set(flat(mnist[0]))
    noise = np.random.default_rng(3).random((300, 784)).astype(np.float32)
    res = memo.memorisation(train, noise)
    assert res["near_copies"] == 0.0 and res["authenticity"] == 1.0


def test_a_trained_vaes_samples_are_not_memorised(tmp_path, mnist):
    from trainables.config import TrainConfig
    from trainables.trainable import LocalReporter, run_training

    cfg = TrainConfig(model="vae", arch="small", subset=3000, test_subset=200, batch_size=64,
                      lr=2e-3, latent_dim=16, train_images=30_000, n_samples=(500,))
    samples = run_training(cfg, LocalReporter(tmp_path)).samples
    train = memo.training_set(flat(mnist[0]))
    res = memo.memorisation(train, flat(samples))
    assert res["near_copies"] < 0.05 and res["authenticity"] > 0.5


def test_closest_pairs_and_their_picture(mnist):
    train_images, _ = mnist
    train = memo.training_set(flat(train_images))
    samples = np.concatenate([train_images[:3], np.zeros((5, 28, 28), np.uint8)])
    res = memo.memorisation(train, flat(samples))
    pairs = memo.closest_pairs(res, k=4)
    assert sorted((p[0], p[1]) for p in pairs[:3]) == [(0, 0), (1, 1), (2, 2)]
    assert all(p[2] < 0.05 for p in pairs[:3]) and pairs[3][2] > 1
    png = memo.pairs_picture(samples, train_images, pairs)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_input_is_refused(mnist):
    train = memo.training_set(flat(mnist[0][:50]))
    with pytest.raises(ValueError, match="same space"):
        memo.memorisation(train, np.zeros((4, 10)))
    with pytest.raises(ValueError, match="NaN or inf"):
        memo.memorisation(train, np.full((4, 784), np.nan))


# ------------------------------------------------------------------ data-copying (C_T)
def test_copies_fail_the_data_copying_test_and_held_out_digits_pass(mnist):
    """Meehan et al.'s C_T against held-out real digits: noisy copies of training images sit
    far below its -3 cut-off, other held-out digits near 0, noise far above it."""
    from scorers import copying

    train_images, test_images = mnist
    train = memo.training_set(flat(train_images))
    held_out = flat(test_images[:1000])

    def c_t(images):
        x = flat(images) if images.dtype == np.uint8 else images
        return copying.copying_statistic(train, x, memo.memorisation(train, x)["nearest_sq"],
                                         held_out, "test")

    rng = np.random.default_rng(4)
    copies = flat(train_images[rng.choice(len(train_images), 1000)])
    noisy = np.clip(copies + rng.normal(0, 0.05, copies.shape), 0, 1).astype(np.float32)
    assert c_t(noisy) < copying.COPYING_Z
    fresh = c_t(test_images[1000:2000])
    assert abs(fresh) < -copying.COPYING_Z, fresh
    assert c_t(rng.random((1000, 784)).astype(np.float32)) > -copying.COPYING_Z
    assert copying.verdict(c_t(noisy), 0.0).startswith("data-copying")
    assert copying.verdict(fresh, 0.01).startswith("no sign of data-copying")
    assert copying.verdict(fresh, 0.2).startswith("data-copying")  # near copies alone


def test_the_u_statistic_matches_its_definition():
    """The rank form against the pair count it stands for (ties count half)."""
    from scorers.copying import mann_whitney_z

    rng = np.random.default_rng(5)
    a, b = rng.integers(0, 20, 40).astype(float), rng.integers(0, 20, 60).astype(float)
    u = sum((x > y) + 0.5 * (x == y) for x in a for y in b)
    m, n = len(a), len(b)
    assert mann_whitney_z(a, b) == pytest.approx((u - m * n / 2) / np.sqrt(m * n * (m + n + 1) / 12))
    assert mann_whitney_z(a - 100, b) < -5 and mann_whitney_z(a + 100, b) > 5
