"""Train-on-synthetic accuracy (scorers.utility) and labelled reference-guided samples
(trainables.samples.sample_reference), on real MNIST."""
import numpy as np
import pytest

from scorers import utility
from trainables.datasets import load_dataset, stratified_subset


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist")


def test_the_fixed_cnn_learns_real_digits_and_not_shuffled_labels(mnist):
    images, labels = stratified_subset(mnist.train.images, mnist.train.labels, 2000, 0)
    test_x, test_y = mnist.test.images[:2000], mnist.test.labels[:2000]
    real = utility.classification_accuracy_score(images, labels, test_x, test_y)
    shuffled = np.random.default_rng(0).permutation(labels)
    chance = utility.classification_accuracy_score(images, shuffled, test_x, test_y)
    assert real > 0.9 and chance < 0.3
    # the same data and seed give the same number: CAS compares data, not luck
    assert utility.classification_accuracy_score(images, labels, test_x, test_y) == real


def test_reference_guided_samples_are_labelled_by_class_and_carry_it(tmp_path, mnist):
    from trainables.config import TrainConfig
    from trainables.samples import class_grid, sample_reference
    from trainables.trainable import LocalReporter, run_training

    cfg = TrainConfig(model="vae", arch="small", subset=3000, test_subset=200, batch_size=64,
                      lr=2e-3, train_images=30_000, n_samples=(100,), labelled_samples=500)
    result = run_training(cfg, LocalReporter(tmp_path))
    data = np.load(result.final_dir / "labelled.npz")
    images, labels = data["images"], data["labels"]
    assert images.shape == (500, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [50] * 10  # balanced, class by class
    assert (result.final_dir / "labelled_grid.png").is_file()
    assert class_grid(images, labels).shape == (10 * 30 + 2, 10 * 30 + 2)  # a row per class
    # the labels mean something: a classifier trained on them reads real test digits
    cas = utility.classification_accuracy_score(images, labels, mnist.test.images[:2000],
                                                mnist.test.labels[:2000])
    assert cas > 0.6
    again = sample_reference(_model(cfg, result), mnist.train.images, mnist.train.labels, 20, 4)
    assert again[0].shape == (20, 28, 28) and sorted(set(again[1])) == list(range(10))


def _model(cfg, result):
    from safetensors.torch import load_file

    from trainables.models import build_model

    model = build_model(cfg)
    model.load_state_dict(load_file(result.final_dir / "model.safetensors"))
    return model


@pytest.mark.parametrize("labels, needle", [
    (np.arange(5), r"10 images but labels of shape \(5,\)"),
    (np.full(10, 10), "labels must be integers in 0..9"),
    (np.full(10, 0.5), "labels must be integers"),
])
def test_bad_labels_are_refused(labels, needle):
    with pytest.raises(ValueError, match=needle):
        utility.check_labelled(np.zeros((10, 28, 28), np.uint8), labels)
