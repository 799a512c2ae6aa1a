"""Networks, one real epoch, resume bit-for-bit, divergence, checkpoint safety, the CLI."""
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from trainables import checkpoint as ckpt
from trainables.config import ConfigError, TrainConfig
from trainables.datasets import load_dataset
from trainables.loop import evaluate
from trainables.models import build_model
from trainables.networks import build_networks
from trainables.trainable import LocalReporter, run_training

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
TINY = dict(arch="small", subset=600, test_subset=300, batch_size=100, n_samples=(64, 128))


@pytest.mark.parametrize("arch,width", [("paper", 1024), ("small", 128)])
def test_network_shapes(arch, width):
    enc, dec, disc = build_networks(arch, latent_dim=12, with_discriminator=True)
    x = torch.rand(3, 1, 28, 28)
    out = enc(x, output_layer_levels=[4])
    assert out.embedding.shape == (3, 12) and out.log_covariance.shape == (3, 12)
    assert out["embedding_layer_4"].shape == (3, width, 1, 1)
    assert dec(torch.randn(3, 12)).reconstruction.shape == (3, 1, 28, 28)
    assert disc(x).embedding.shape == (3, 1)
    d = disc(x, output_layer_levels=[1, 3])
    assert "embedding" not in d  # stopped at layer 3, as pythae does
    assert d["embedding_layer_1"].shape == (3, width // 8, 14, 14)
    assert d["embedding_layer_3"].shape == (3, width // 2, 3, 3)


def test_small_arch_is_much_smaller_than_paper():
    n = lambda arch: sum(p.numel() for p in build_model(TrainConfig(arch=arch)).parameters())
    assert n("small") * 30 < n("paper")


def test_paper_defaults_and_bad_config():
    assert TrainConfig(model="vaegan", dataset="mnist").lr == 1e-4
    fashion = TrainConfig(model="vaegan", dataset="fashion-mnist")
    assert (fashion.lr, fashion.latent_dim, fashion.epochs) == (1e-3, 32, 85)
    assert TrainConfig(model="vae", dataset="mnist").lr == 1e-3
    with pytest.raises(ConfigError, match="epochs=0"):
        TrainConfig(epochs=0)
    with pytest.raises(ConfigError, match="'celeba'"):
        TrainConfig(dataset="celeba")
    cfg = TrainConfig.from_dict({"lr": np.float64(2e-4), "latent_dim": np.int64(8)})
    assert type(cfg.latent_dim) is int and type(cfg.lr) is float
    # a misspelt search-space key must not train silently with the default value
    with pytest.raises(ConfigError, match="'latnt_dim'"):
        TrainConfig.from_dict({"lr": 2e-4, "latnt_dim": 8})
    with pytest.raises(ConfigError, match="train_images=0"):
        TrainConfig(train_images=0)


class Interrupt(Exception):
    pass


class StopAfter(LocalReporter):
    """Simulates the process dying right after epoch ``n`` was checkpointed."""

    def __init__(self, out, n):
        super().__init__(out)
        self.n = n

    def report(self, metrics, folder):
        super().report(metrics, folder)
        if metrics.get("epoch") == self.n and metrics["status"] == "training":
            raise Interrupt


def test_one_vae_epoch_lowers_the_loss(tmp_path):
    cfg = TrainConfig(model="vae", epochs=1, arch="small", subset=2000, test_subset=300,
                      batch_size=50, n_samples=(64, 128))
    test_x = torch.from_numpy(load_dataset("mnist", test_subset=300).test.images)
    test_x = test_x.float().div(255).unsqueeze(1)
    torch.manual_seed(0)
    before = evaluate(build_model(cfg), "vae", test_x, 300)
    result = run_training(cfg, LocalReporter(tmp_path))
    assert result.status == "finished"
    assert result.metrics["test_pixel_mse"] < 0.6 * before["pixel_mse"]
    assert result.metrics["test_loss"] < 0.6 * before["loss"]
    assert result.samples.shape == (128, 28, 28) and result.samples.dtype == np.uint8
    first = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert first["epoch"] == 1 and first["images_per_s"] > 0 and "test_loss" in first


def test_one_vaegan_epoch_updates_all_three_networks(tmp_path):
    cfg = TrainConfig(model="vaegan", epochs=1, **TINY)
    torch.manual_seed(cfg.seed)
    initial = {k: v.clone() for k, v in build_model(cfg).state_dict().items()}
    result = run_training(cfg, LocalReporter(tmp_path))
    folder = sorted((tmp_path / "checkpoints").iterdir())[-1]
    trained = build_model(cfg)
    ckpt.load_weights(folder, trained)
    for part in ("encoder", "decoder", "discriminator"):
        changed = [k for k, v in trained.state_dict().items()
                   if k.startswith(part) and not torch.equal(v, initial[k])]
        assert changed, f"{part} was not updated"
    for key in ("train_encoder_loss", "train_decoder_loss", "train_discriminator_loss"):
        assert np.isfinite(result.metrics[key])


@pytest.mark.parametrize("model", ["vae", "vaegan"])
def test_resume_matches_an_uninterrupted_run(tmp_path, model):
    cfg = TrainConfig(model=model, epochs=2, **TINY)
    whole = run_training(cfg, LocalReporter(tmp_path / "whole"))
    with pytest.raises(Interrupt):
        run_training(cfg, StopAfter(tmp_path / "cut", 1))
    resumed_reporter = LocalReporter(tmp_path / "cut", resume=True)
    resumed = run_training(cfg, resumed_reporter)
    epochs = [json.loads(l)["epoch"] for l in
              (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 2]  # epoch 1 once, never retrained from 0
    for key in ("train_loss", "test_loss"):
        assert resumed.metrics[key] == whole.metrics[key]
    np.testing.assert_array_equal(resumed.samples, whole.samples)


def test_image_budget_trains_the_same_steps_whatever_the_data_size(tmp_path):
    from trainables.trainable import round_steps

    cfg = TrainConfig(model="vae", train_images=1000, report_images=400, **{**TINY,
                                                                            "batch_size": 64})
    assert round_steps(cfg, 600) == [7, 7, 2]  # ceil(1000 / 64) = 16 steps in rounds of 7
    assert round_steps(cfg, 60_000) == [7, 7, 2]
    assert round_steps(TrainConfig(epochs=3, **TINY), 600) == [6, 6, 6]
    result = run_training(cfg, LocalReporter(tmp_path))
    reports = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    training = [r for r in reports if r["status"] == "training"]
    assert [r["step"] for r in training] == [7, 14, 16]
    # 16 batches of 64 over 600 images: each epoch ends in a short batch of 24
    assert [r["images_seen"] for r in training] == [448, 600 + 4 * 64, 600 + 6 * 64]
    assert result.metrics["images_seen"] == 984 and result.metrics["device"] == "cpu"


def test_resume_mid_budget_matches_an_uninterrupted_run(tmp_path):
    cfg = TrainConfig(model="vae", train_images=1200, report_images=500, **TINY)
    whole = run_training(cfg, LocalReporter(tmp_path / "whole"))

    class StopAfterRound(LocalReporter):
        def report(self, metrics, folder):
            super().report(metrics, folder)
            if metrics.get("round") == 1 and metrics["status"] == "training":
                raise Interrupt

    with pytest.raises(Interrupt):
        run_training(cfg, StopAfterRound(tmp_path / "cut"))
    resumed = run_training(cfg, LocalReporter(tmp_path / "cut", resume=True))
    rounds = [json.loads(l)["round"] for l in
              (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert rounds == [1, 2, 3, 3]  # round 1 once, then on from step 5 (mid-epoch)
    assert resumed.metrics["train_loss"] == whole.metrics["train_loss"]
    np.testing.assert_array_equal(resumed.samples, whole.samples)


def test_out_dir_with_checkpoints_needs_resume(tmp_path):
    cfg = TrainConfig(model="vae", epochs=1, **TINY)
    run_training(cfg, LocalReporter(tmp_path))
    before = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    with pytest.raises(FileExistsError, match="--resume"):
        LocalReporter(tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == before


def test_nan_loss_ends_as_diverged(tmp_path, monkeypatch):
    from trainables import trainable

    real_steps, calls = trainable.train_steps, []

    def poisoned_in_round_2(model, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # a weight turns NaN before the second round's steps
            with torch.no_grad():
                next(model.decoder.parameters()).fill_(float("nan"))
        return real_steps(model, *args, **kwargs)

    monkeypatch.setattr(trainable, "train_steps", poisoned_in_round_2)
    cfg = TrainConfig(model="vaegan", epochs=3, **TINY)
    result = run_training(cfg, LocalReporter(tmp_path))
    assert result.status == "diverged" and result.metrics["diverged"] == 1
    assert result.metrics["epoch"] == 2 and "diverged at epoch 2" in result.metrics["error"]
    reports = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["status"] for r in reports] == ["training", "diverged"]


def test_checkpoint_refuses_a_pickle(tmp_path):
    cfg = TrainConfig(model="vae", epochs=1, **TINY)
    run_training(cfg, LocalReporter(tmp_path))
    folder = sorted((tmp_path / "checkpoints").iterdir())[-1]
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (folder / ckpt.MODEL_FILE).write_bytes(pickle.dumps({"w": Evil()}))
    model = build_model(cfg)
    with pytest.raises(Exception):
        ckpt.load_weights(folder, model)
    assert not marker.exists()


def _cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "trainables/train.py", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_cli_runs_end_to_end_and_diverges_cleanly(tmp_path):
    out = tmp_path / "run"
    r = _cli("--model", "vae", "--epochs", "1", "--arch", "small", "--subset", "500",
             "--test-subset", "200", "--n-samples", "100", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert (out / "samples_grid.png").stat().st_size > 0
    assert np.load(out / "samples.npz")["samples"].shape == (100, 28, 28)
    r = _cli("--model", "vae", "--epochs", "1", "--arch", "small", "--subset", "500",
             "--lr", "1e6", "--out", str(tmp_path / "wild"), "--test-subset", "200")
    assert r.returncode == 3, (r.returncode, r.stderr)
    assert "diverged" in r.stderr


@pytest.mark.parametrize("args,needle", [
    (["--model", "gan"], "'gan'"),
    (["--dataset", "cifar"], "'cifar'"),
    (["--epochs", "0"], "0 must be >= 1"),
    (["--lr", "-1"], "-1 must be > 0"),
    (["--train-images", "0"], "0 must be >= 1"),
    (["--n-samples", "1k"], "'1k' is not a comma-separated list"),
    (["--arch", "huge"], "'huge'"),
])
def test_cli_bad_input_exits_2(args, needle):
    r = _cli(*args)
    assert r.returncode == 2 and needle in r.stderr, r.stderr


# The Tune callback and the scheduler subclass Ray classes, so their modules import Ray;
# only the sweep imports them, when it builds a Tuner. The registered model's code
# subclasses MLflow's PythonModel; only MLflow loads it (sweeps.model_registry logs its path).
IMPORTS_RAY = ("sweeps.mlflow_callback", "sweeps.scheduler", "sweeps.generator_pyfunc")


def test_packages_import_without_heavy_frameworks():
    code = ("import sys, sweeps, trainables, scorers\n"
            "import importlib, pkgutil\n"
            "for pkg in (sweeps, scorers, trainables):\n"
            "    for m in pkgutil.iter_modules(pkg.__path__):\n"
            f"        if pkg.__name__ + '.' + m.name not in {IMPORTS_RAY!r}:\n"
            "            importlib.import_module(pkg.__name__ + '.' + m.name)\n"
            "heavy = ('tensorflow', 'transformers', 'ray', 'mlflow', 'optuna')\n"
            "print(','.join(h for h in heavy if h in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "", f"importing the packages loaded: {r.stdout.strip()}"


def test_latent_mixture_draws_where_the_codes_are_not_from_the_prior():
    from trainables.samples import latent_mixture

    rng = np.random.default_rng(1)
    # two tight clusters far from the origin: where a trained encoder might put two classes
    codes = np.concatenate([rng.normal(3.0, 0.1, (500, 4)), rng.normal(-2.0, 0.2, (500, 4))])
    z = latent_mixture(codes, 2000, seed=0)
    assert z.shape == (2000, 4) and z.dtype == np.float32
    assert np.array_equal(z, latent_mixture(codes, 2000, seed=0))
    near = np.minimum(np.abs(z - 3.0).max(1), np.abs(z + 2.0).max(1))
    assert (near < 1.0).mean() > 0.99  # N(0, I) would put almost none there
    # shuffled: a prefix holds both clusters in about their shares, not one component
    assert 0.35 < (z[:200, 0] > 0).mean() < 0.65


@pytest.mark.parametrize("model", ["vae", "vaegan"])
def test_a_trial_can_score_latent_mixture_samples(tmp_path, model):
    prior = run_training(TrainConfig(model=model, epochs=1, **TINY), LocalReporter(tmp_path / "p"))
    cfg = TrainConfig(model=model, epochs=1, sampler="latent-gmm", **TINY)
    seen = []
    gmm = run_training(cfg, LocalReporter(tmp_path / "g"),
                       scorer=lambda samples, labelled: seen.append(samples) or {})
    assert gmm.status == "finished" and gmm.samples.shape == (128, 28, 28)
    assert seen and seen[0] is gmm.samples  # what is scored is what the sampler drew
    # the same weights (the sampler draws after training), other samples
    assert not np.array_equal(gmm.samples, prior.samples)
    state = json.loads(sorted((tmp_path / "g" / "checkpoints").iterdir())[-1]
                       .joinpath("state.json").read_text())
    assert state["config"]["sampler"] == "latent-gmm"
    with pytest.raises(ConfigError, match="sampler"):
        TrainConfig(sampler="gmm")
    with pytest.raises(ConfigError, match="class-conditional"):
        TrainConfig(sampler="latent-gmm", conditional=True)
