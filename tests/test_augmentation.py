"""The augmentation utility (``scorers.augmentation``) on the real MNIST: adding real images
recovers all of the real-data gain by construction, adding noise recovers none of it, and
every arm trains for the same number of batches."""
import numpy as np
import pytest

from scorers import augmentation, utility
from scorers.keys import augment_key
from trainables.datasets import load_dataset, stratified_index

N = 1000


@pytest.fixture(scope="module")
def scarce():
    data = load_dataset("mnist")
    index = stratified_index(data.train.labels, 100, seed=0)  # ~10 per class
    return data, index


def test_real_images_recover_the_gain_and_noise_does_not(scarce):
    data, index = scarce
    real = data.train.images[index], data.train.labels[index]
    test = augmentation.reference_test_set(data)
    test = test[0][:2000], test[1][:2000]
    more = augmentation.other_real(data.train.images, data.train.labels, index, N, seed=0)
    assert not set(map(bytes, more[0])) & set(map(bytes, real[0]))  # disjoint from the scarce
    assert np.bincount(more[1], minlength=10).tolist() == [N // 10] * 10
    # "generated" images that are other real images: as good as the ceiling's
    twin = augmentation.other_real(data.train.images, data.train.labels, index, N, seed=1)
    good = augmentation.augmentation_utility(real, twin, more, test, seeds=(0, 1))
    noise = np.random.default_rng(0).integers(0, 256, (N, 28, 28), dtype=np.uint8)
    bad = augmentation.augmentation_utility(real, (noise, more[1]), more, test, seeds=(0, 1))
    assert good[augment_key(N, "more_real")] > good[augment_key(N, "real")] + 0.05
    assert good[augment_key(N, "recovered")] == pytest.approx(1.0, abs=0.35)
    assert bad[augment_key(N, "recovered")] < 0.3
    assert bad[augment_key(N, "real")] == good[augment_key(N, "real")]  # same arm, same seeds
    assert np.isfinite(good[augment_key(N, "gain", sd=True)])
    with pytest.raises(ValueError, match="same number of added images"):
        augmentation.augmentation_utility(real, twin, (more[0][:10], more[1][:10]), test)


def test_a_step_budget_trains_exactly_that_many_batches():
    from torch.optim.optimizer import register_optimizer_step_post_hook

    steps = []
    handle = register_optimizer_step_post_hook(lambda *args: steps.append(1))  # counts real steps
    try:
        x = np.zeros((100, 28, 28), np.uint8)
        y = np.arange(100) % 10
        utility.train_classifier(x, y, steps=7)
        assert len(steps) == 7
        steps.clear()
        utility.train_classifier(x, y)  # the CAS recipe: EPOCHS passes of ceil(100 / 64)
        assert len(steps) == utility.EPOCHS * 2
    finally:
        handle.remove()


@pytest.mark.slow
def test_gensweep_score_augment_reports_the_gain(tmp_path, smoke_scorers, capsys):
    """``gensweep score --augment``: real training images as the 'samples' of a generator
    trained on 10 per class; the JSON holds every arm, and the gain is positive."""
    import json

    from scorers import score_cli

    data = load_dataset("mnist")
    scarce = stratified_index(data.train.labels, 100, seed=3)
    more = augmentation.other_real(data.train.images, data.train.labels, scarce, 1000, seed=4)
    np.savez(tmp_path / "s.npz", images=more[0], labels=more[1])
    assert score_cli.main(["--dataset", "mnist", "--samples", str(tmp_path / "s.npz"),
                           "--n", "1000", "--augment", "--train-per-class", "10",
                           "--train-seed", "3", "--json",
                           *[f"--scorer-dir={k}={v}" for k, v in smoke_scorers.items()]]) == 0
    scores = json.loads(capsys.readouterr().out)["scores"]
    for stat in ("real", "augmented", "more_real", "gain"):
        assert augment_key(1000, stat) in scores and augment_key(1000, stat, sd=True) in scores
    assert scores[augment_key(1000, "gain")] > 0.03
