"""Class-conditional models (trainables.conditional): the label reaches every network, training
and sampling hand it over, checkpoints keep it, and a briefly trained conditional VAE draws
the class it is asked for."""
import numpy as np
import pytest
import torch

from trainables.conditional import LabelsMissing, set_labels
from trainables.config import ConfigError, TrainConfig
from trainables.models import build_model

TINY = dict(arch="small", subset=600, test_subset=300, batch_size=100, n_samples=(64,))


@pytest.mark.parametrize("model", ["vae", "vaegan"])
def test_the_label_reaches_encoder_decoder_and_discriminator(model):
    net = build_model(TrainConfig(model=model, conditional=True, **TINY)).eval()
    x, z = torch.rand(4, 1, 28, 28), torch.randn(4, net.latent_dim)
    outputs = {}
    for c in (3, 5):
        set_labels(net, torch.full((4,), c))
        outputs[c] = (net.encoder(x).embedding, net.decoder(z).reconstruction,
                      net.discriminator(x).embedding if model == "vaegan" else None)
    for a, b in zip(outputs[3], outputs[5]):
        if a is not None:
            assert not torch.allclose(a, b)  # the same input, another class: another output
    set_labels(net, None)
    with pytest.raises(LabelsMissing, match="batch of 4 without its labels"):
        net.decoder(z)
    set_labels(net, torch.zeros(3))
    with pytest.raises(LabelsMissing, match="3 set"):
        net.decoder(z)


def test_discriminator_features_do_not_need_the_label():
    net = build_model(TrainConfig(model="vaegan", conditional=True, **TINY))
    set_labels(net, None)
    out = net.discriminator(torch.rand(2, 1, 28, 28), output_layer_levels=[3])
    assert "embedding" not in out and out["embedding_layer_3"].shape[0] == 2
    set_labels(net, torch.tensor([1, 2]))
    last = net.discriminator(torch.rand(2, 1, 28, 28), output_layer_levels=[-1])
    assert last["embedding"].shape == (2, 1) and torch.all((last["embedding"] > 0)
                                                           & (last["embedding"] < 1))


def test_unconditional_models_are_unchanged_and_config_checks_the_flag():
    plain = build_model(TrainConfig(model="vaegan", **TINY))
    assert plain.condition is None and plain.decoder.layers[0].in_features == plain.latent_dim
    cond = build_model(TrainConfig(model="vaegan", conditional=True, **TINY))
    assert cond.decoder.layers[0].in_features == cond.latent_dim + 10
    assert TrainConfig.from_dict({"conditional": np.bool_(True)}).conditional is True
    for bad in ("yes", 0.5, 2):
        with pytest.raises(ConfigError, match="conditional="):
            TrainConfig.from_dict({"conditional": bad})
    assert TrainConfig.from_dict({"conditional": np.int64(0)}).conditional is False
    with pytest.raises(ConfigError, match="reconstruction_layer=5"):
        TrainConfig(model="vaegan", conditional=True, reconstruction_layer=5)


@pytest.mark.parametrize("model", ["vae", "vaegan"])
def test_conditional_training_checkpoints_and_draws_labelled_samples(tmp_path, model):
    from trainables.checkpoint import load_generator
    from trainables.samples import balanced_labels, sample_conditional
    from trainables.trainable import LocalReporter, run_training

    cfg = TrainConfig(model=model, conditional=True, epochs=1, labelled_samples=100, **TINY)
    result = run_training(cfg, LocalReporter(tmp_path))
    assert result.status == "finished" and result.samples.shape == (64, 28, 28)
    data = np.load(result.final_dir / "labelled.npz")
    assert np.bincount(data["labels"]).tolist() == [10] * 10
    generator, saved_cfg, _ = load_generator(result.final_dir)
    assert saved_cfg.conditional and generator.condition is not None
    labels = balanced_labels(100, seed=cfg.seed + 4)
    images, drawn = sample_conditional(generator, labels, seed=cfg.seed + 4)
    # the saved set is the model's own draw, each image beside the class it was asked for
    assert np.array_equal(images, data["images"]) and np.array_equal(drawn, data["labels"])
    assert generator.condition.labels is None  # cleared after use: never fed to a later call


def test_sampling_a_class_from_an_unconditional_model_is_refused():
    from trainables.samples import sample_conditional

    with pytest.raises(ValueError, match="not class-conditional"):
        sample_conditional(build_model(TrainConfig(model="vae", **TINY)), np.zeros(4))


def test_balanced_labels():
    from trainables.samples import balanced_labels

    ordered = balanced_labels(25, shuffle=False)
    assert np.all(np.diff(ordered.astype(int)) >= 0) and set(np.bincount(ordered)) == {2, 3}
    shuffled = balanced_labels(25, seed=1)
    assert sorted(shuffled) == sorted(ordered) and not np.array_equal(shuffled, ordered)


def test_a_briefly_trained_conditional_vae_draws_the_class_it_is_asked_for(tmp_path):
    """Asked for class c from pure noise (no reference image), it draws a c: a classifier
    trained on those samples reads real test digits (a decoder that ignored the label would
    give about 0.1)."""
    from scorers import utility
    from trainables.checkpoint import load_generator
    from trainables.datasets import load_dataset
    from trainables.samples import balanced_labels, sample_conditional
    from trainables.trainable import LocalReporter, run_training

    cfg = TrainConfig(model="vae", arch="small", subset=3000, test_subset=200, batch_size=64,
                      lr=2e-3, train_images=30_000, n_samples=(100,), conditional=True)
    generator, _, _ = load_generator(run_training(cfg, LocalReporter(tmp_path)).final_dir)
    images, labels = sample_conditional(generator, balanced_labels(500, seed=5), seed=5)
    mnist = load_dataset("mnist")
    test_x, test_y = mnist.test.images[:2000], mnist.test.labels[:2000]
    cas = utility.classification_accuracy_score(images, labels, test_x, test_y)
    shuffled = utility.classification_accuracy_score(
        images, np.random.default_rng(0).permutation(labels), test_x, test_y)
    assert cas > 0.6 and shuffled < 0.3


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """A conditional and an unconditional tiny VAE's final checkpoints."""
    from trainables.trainable import LocalReporter, run_training

    root = tmp_path_factory.mktemp("ckpts")
    return {cond: run_training(TrainConfig(model="vae", conditional=cond, epochs=1, **TINY),
                               LocalReporter(root / str(cond))).final_dir
            for cond in (True, False)}


def test_export_of_a_conditional_model_is_labelled_class_by_class(tmp_path, checkpoints,
                                                                  monkeypatch):
    import json

    from sweeps import synthesize
    from trainables import samples

    out = tmp_path / "synth.npz"
    assert synthesize.main(["--checkpoint", str(checkpoints[True]), "--n", "200",
                            "--no-score", "--out", str(out)]) == 0
    with np.load(out, allow_pickle=False) as data:
        images, labels = data["images"], data["labels"]
    assert images.shape == (200, 28, 28) and labels.dtype == np.uint8
    assert np.array_equal(labels, np.repeat(np.arange(10), 20))  # class by class
    sheet = json.loads(out.with_suffix(".json").read_text())
    assert sheet["mode"] == "conditional" and sheet["conditional"] is True  # its default
    assert sheet["classes"] == [20] * 10 and out.with_suffix(".png").is_file()
    # a failure while writing leaves the good export as it was
    before = {p: p.read_bytes() for p in (out, out.with_suffix(".png"), out.with_suffix(".json"))}

    def broken(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(samples, "save_png", broken)
    with pytest.raises(SystemExit) as exc:
        synthesize.main(["--checkpoint", str(checkpoints[True]), "--n", "100", "--seed", "1",
                         "--no-score", "--out", str(out)])
    assert exc.value.code == 1
    assert {p: p.read_bytes() for p in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in before)


def test_export_refuses_conditional_mode_for_an_unconditional_model(tmp_path, checkpoints,
                                                                   capsys):
    from sweeps import synthesize

    with pytest.raises(SystemExit) as exc:
        synthesize.main(["--checkpoint", str(checkpoints[False]), "--mode", "conditional",
                         "--no-score", "--out", str(tmp_path / "x.npz")])
    err = [l for l in capsys.readouterr().err.splitlines() if "error" in l.lower()]
    assert exc.value.code == 2 and len(err) == 1
    assert "needs a model trained with --conditional" in err[0]
    assert not list(tmp_path.iterdir())


def test_export_from_the_latent_mixture_is_unlabelled_and_only_for_unconditional_models(
        tmp_path, checkpoints, capsys):
    import json

    from sweeps import synthesize

    out = tmp_path / "gmm.npz"
    assert synthesize.main(["--checkpoint", str(checkpoints[False]), "--mode", "latent-gmm",
                            "--n", "150", "--no-score", "--out", str(out)]) == 0
    with np.load(out, allow_pickle=False) as data:
        assert data.files == ["images"] and data["images"].shape == (150, 28, 28)
        gmm = data["images"]
    prior = tmp_path / "prior.npz"
    synthesize.main(["--checkpoint", str(checkpoints[False]), "--mode", "prior", "--n", "150",
                     "--no-score", "--out", str(prior)])
    with np.load(prior, allow_pickle=False) as data:
        assert not np.array_equal(data["images"], gmm)
    assert json.loads(out.with_suffix(".json").read_text())["mode"] == "latent-gmm"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        synthesize.main(["--checkpoint", str(checkpoints[True]), "--mode", "latent-gmm",
                         "--no-score", "--out", str(tmp_path / "x.npz")])
    err = [l for l in capsys.readouterr().err.splitlines() if "error" in l.lower()]
    assert exc.value.code == 2 and "class-conditional" in err[0]
    assert not (tmp_path / "x.npz").exists()


def test_the_default_labelled_export_is_generated_and_a_reconstruction_export_is_flagged(
        tmp_path, checkpoints, capsys):
    import json

    from sweeps import synthesize

    out = tmp_path / "generated.npz"
    assert synthesize.main(["--checkpoint", str(checkpoints[False]), "--n", "100",
                            "--no-score", "--out", str(out)]) == 0
    sheet = json.loads(out.with_suffix(".json").read_text())
    assert sheet["mode"] == "class-gmm" and "notice" not in sheet
    # the pixel-space copying test needs no scorer: every datasheet carries it
    assert "copying_pixels_100" in sheet["scores"]
    assert "data-copying" in sheet["data_copying"]["pixels"]
    with np.load(out, allow_pickle=False) as data:
        assert data.files == ["images", "labels"]
        assert np.bincount(data["labels"]).tolist() == [10] * 10
    capsys.readouterr()
    rec = tmp_path / "reconstructed.npz"
    assert synthesize.main(["--checkpoint", str(checkpoints[False]), "--n", "100",
                            "--mode", "reconstruction", "--no-score", "--out", str(rec)]) == 0
    sheet = json.loads(rec.with_suffix(".json").read_text())
    assert next(iter(sheet)) == "notice"  # the datasheet's first line says what it is
    assert "reconstruction of a named training image" in sheet["notice"]
    with np.load(rec, allow_pickle=False) as data:
        assert data.files == ["images", "labels", "sources"] and len(data["sources"]) == 100
    assert "not generated data" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        synthesize.main(["--checkpoint", str(checkpoints[True]), "--mode", "class-gmm",
                         "--no-score", "--out", str(tmp_path / "x.npz")])
    assert exc.value.code == 2


def test_exports_in_the_formats_training_code_reads(tmp_path, checkpoints, capsys):
    """imagefolder: one folder of PNGs per class, the layout torchvision's ImageFolder reads
    (torchvision does not install beside this CPU torch; PIL reading every file back, and
    the folder names, stand in for it). parquet: read with pyarrow, its image column decodes
    to the same pixels, and its schema carries the Hugging Face features (``datasets`` is not
    installed here). A `gensweep train --out` folder is taken as its latest checkpoint."""
    import json

    import pyarrow.parquet as pq
    from PIL import Image

    from sweeps import synthesize

    run = checkpoints[False].parent.parent  # the run folder gensweep train --out wrote
    npz = tmp_path / "set.npz"
    assert synthesize.main(["--checkpoint", str(run), "--n", "50", "--no-score",
                            "--out", str(npz)]) == 0
    with np.load(npz, allow_pickle=False) as data:
        images, labels = data["images"], data["labels"]

    folder = tmp_path / "set-folder"
    assert synthesize.main(["--checkpoint", str(run), "--n", "50", "--no-score",
                            "--format", "imagefolder", "--out", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == [str(c) for c in range(10)]
    back = {int(c.name): [np.asarray(Image.open(f)) for f in sorted(c.glob("*.png"))]
            for c in folder.iterdir()}
    assert {c: len(v) for c, v in back.items()} == {c: 5 for c in range(10)}
    assert np.array_equal(np.stack(back[0]), images[labels == 0])  # same draw, same pixels
    assert json.loads((tmp_path / "set-folder.json").read_text())["format"] == "imagefolder"

    table = tmp_path / "set.parquet"
    assert synthesize.main(["--checkpoint", str(run), "--n", "50", "--no-score",
                            "--format", "parquet", "--out", str(table)]) == 0
    read = pq.read_table(table)
    assert read.column_names == ["image", "label"]
    first = read.column("image")[0].as_py()["bytes"]
    assert np.array_equal(np.asarray(Image.open(__import__("io").BytesIO(first))), images[0])
    assert read.column("label").to_pylist() == labels.tolist()
    features = json.loads(read.schema.metadata[b"huggingface"])["info"]["features"]
    assert features["image"] == {"_type": "Image"} and features["label"]["_type"] == "ClassLabel"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:  # a format whose --out does not fit
        synthesize.main(["--checkpoint", str(run), "--n", "50", "--no-score",
                         "--format", "parquet", "--out", str(tmp_path / "x.npz")])
    assert exc.value.code == 2 and "expected a FILE.parquet" in capsys.readouterr().err


def test_resuming_a_conditional_run_without_the_flag_names_it(tmp_path):
    from trainables.checkpoint import CheckpointError
    from trainables.trainable import LocalReporter, run_training

    run_training(TrainConfig(model="vae", conditional=True, epochs=1, **TINY),
                 LocalReporter(tmp_path))
    again = TrainConfig(model="vae", epochs=2, **TINY)
    with pytest.raises(CheckpointError, match="conditional=True there, False here"):
        run_training(again, LocalReporter(tmp_path, resume=True))
