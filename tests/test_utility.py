"""Train-on-synthetic accuracy (scorers.utility) and the labelled samples it learns from
(trainables.samples: per-class latent mixtures, and reconstructions named as such), on
real MNIST."""
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


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small VAE trained briefly on MNIST, with the labelled samples a sweep's trial draws."""
    from trainables.config import TrainConfig
    from trainables.trainable import LocalReporter, run_training

    cfg = TrainConfig(model="vae", arch="small", subset=3000, test_subset=200, batch_size=64,
                      lr=2e-3, train_images=30_000, n_samples=(100,), labelled_samples=500)
    return cfg, run_training(cfg, LocalReporter(tmp_path_factory.mktemp("vae")))


@pytest.fixture(scope="module")
def real_reader(mnist):
    """The fixed CNN trained on 5,000 real images: what reads a sample's class."""
    images, labels = stratified_subset(mnist.train.images, mnist.train.labels, 5000, 0)
    return utility.train_classifier(images, labels)


def predicted(net, images) -> np.ndarray:
    import torch

    x = torch.from_numpy(utility.check_labelled(images, np.zeros(len(images), int))[0])
    with torch.inference_mode():
        return net(x.unsqueeze(1)).argmax(1).numpy()


def test_a_trials_labelled_samples_are_generated_class_by_class(trained, mnist, real_reader):
    """The labelled set a trial's CAS learns from comes from each class's own latent mixture:
    balanced, and of the class it is labelled with (as a classifier trained on real digits
    reads it)."""
    from trainables.samples import class_grid

    cfg, result = trained
    data = np.load(result.final_dir / "labelled.npz")
    images, labels = data["images"], data["labels"]
    assert images.shape == (500, 28, 28) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [50] * 10
    assert (result.final_dir / "labelled_grid.png").is_file()
    assert class_grid(images, labels).shape == (10 * 30 + 2, 10 * 30 + 2)  # a row per class
    agree = (predicted(real_reader, images) == labels).mean()
    assert agree > 0.7, agree  # chance: 0.1
    cas = utility.classification_accuracy_score(images, labels, mnist.test.images[:2000],
                                                mnist.test.labels[:2000])
    assert cas > 0.6


def test_cas_sees_the_generator_not_reconstructions(trained, mnist, real_reader, monkeypatch):
    """Collapse the generator's latent draws to one point: the per-class samples, and so
    their CAS, collapse, while reconstructions of training images do not change at all. A
    CAS computed from reconstructions could not tell the two generators apart."""
    from trainables import samples

    cfg, result = trained
    model = _model(cfg, result)
    classes = samples.balanced_labels(500, 4)
    recon = samples.sample_reconstruction(model, mnist.train.images, mnist.train.labels, 200, 4)
    assert recon[0].shape == (200, 28, 28) and sorted(set(recon[1])) == list(range(10))
    assert (mnist.train.labels[recon[2]] == recon[1]).all()  # named sources, of that class
    test_x, test_y = mnist.test.images[:2000], mnist.test.labels[:2000]

    def cas(images, labels):
        return utility.classification_accuracy_score(images, labels, test_x, test_y)

    good = samples.sample_class_gmm(model, mnist.train.images, mnist.train.labels, classes, 4)
    monkeypatch.setattr(samples, "latent_mixture",
                        lambda codes, n, seed=0, components=1: np.zeros(
                            (n, codes.shape[1]), np.float32))
    collapsed = samples.sample_class_gmm(model, mnist.train.images, mnist.train.labels,
                                         classes, 4)
    again = samples.sample_reconstruction(model, mnist.train.images, mnist.train.labels, 200, 4)
    assert all(np.array_equal(a, b) for a, b in zip(recon, again))
    assert len(np.unique(collapsed[0].reshape(500, -1), axis=0)) == 1
    assert cas(*good) > cas(*collapsed) + 0.3, (cas(*good), cas(*collapsed))


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
