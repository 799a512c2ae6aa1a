"""What the GPU machine can tell us, in one lease: run by ``bench/gpu_check.sh``.

That machine has torch and transformers but no Ray, TensorFlow, MLflow or Optuna, so this
measures what runs there, each section in its own time budget, writing ``gpu_check.json``
under ``--out`` after every section (a section cut short still leaves the others):

* ``epoch_time``: one epoch of full MNIST with the paper's networks, our loop (plain float32,
  and with the GPU speed-ups of ``trainables.speed``) against pythae's ``TrainingPipeline``;
* ``sharing``: 1, 2 and 4 training processes at once on the one GPU (what fractional
  ``--gpus-per-trial`` gives), as trials per hour, with the GPU's utilisation (nvidia-smi);
* ``vit``: the ViT scorer's 5K inference (float32 and bf16) and the score maths on those
  features (numpy on that machine's CPU, and the dominant inner products in torch on the GPU);
* ``generators``: the paper's four generators (section 4.2: VAE and VAE-GAN on MNIST and
  Fashion-MNIST, its networks, lr, latent size, batch 256, 67 / 85 epochs) trained at once,
  each until its epochs or the deadline, then 5,000 prior samples each as ``samples_*.npz``
  and one PNG montage of their grids, to be scored here with the CPU scorers.

``--dry-run`` runs every section on tiny data with the small networks on the CPU, in a
minute, so the script is tested without the GPU (``tests/test_gpu_check.py``).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SECTIONS = ("epoch_time", "sharing", "vit", "generators")
GENERATORS = (("vae", "mnist"), ("vaegan", "mnist"), ("vae", "fashion-mnist"),
              ("vaegan", "fashion-mnist"))


def parse(argv):
    p = argparse.ArgumentParser(prog="bench/gpu_check.py", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True)
    p.add_argument("--dry-run", action="store_true", help="tiny data, small nets, CPU")
    p.add_argument("--only", choices=SECTIONS, action="append")
    p.add_argument("--deadline-s", type=float, default=440.0,
                   help="wall seconds for everything (the lease allows 8 minutes)")
    return p.parse_args(argv)


class Report:
    def __init__(self, out: Path, started: float):
        self.out, self.started, self.doc = out, started, {"sections": {}}

    def add(self, section: str, values: dict) -> None:
        self.doc["sections"][section] = values
        self.doc["elapsed_s"] = round(time.time() - self.started, 1)
        (self.out / "gpu_check.json").write_text(json.dumps(self.doc, indent=1, default=str))
        print(f"[gpu_check] {section}: {json.dumps(values, default=str)[:600]}", flush=True)


def environment() -> dict:
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__,
           "cuda": torch.cuda.is_available()}
    if env["cuda"]:
        env.update(device=torch.cuda.get_device_name(0),
                   bf16=torch.cuda.is_bf16_supported(),
                   memory_gib=round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1))
    return env


def _config(model, dataset, dry, **over):
    from trainables.config import TrainConfig

    base = dict(model=model, dataset=dataset, arch="small" if dry else "paper", batch_size=256,
                subset=512 if dry else None, test_subset=256 if dry else 1000, n_samples=(5000,))
    return TrainConfig(**{**base, **over})


def _tensor(images, device):
    import torch

    return torch.from_numpy(images).to(device).float().div_(255.0).unsqueeze(1)


def _epoch_ours(cfg, speed, device, data) -> float:
    import torch

    from trainables.loop import batches_per_epoch, make_optimizers, train_steps
    from trainables.models import build_model
    from trainables.speed import apply

    torch.manual_seed(0)
    model = apply(build_model(cfg), speed, device)
    opt = make_optimizers(model, cfg.model, cfg.lr)
    steps = batches_per_epoch(len(data), cfg.batch_size)
    train_steps(model, cfg.model, opt, data, cfg.batch_size, 0, 0, min(steps, 5), speed)  # warm
    _sync(device)
    t0 = time.perf_counter()
    train_steps(model, cfg.model, opt, data, cfg.batch_size, 0, 0, steps, speed)
    _sync(device)
    return time.perf_counter() - t0


def _sync(device):
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def epoch_time(dry: bool) -> dict:
    """One epoch per side and model; ratios from the same run."""
    import torch
    from pythae_baseline import run_pythae

    from trainables.datasets import load_dataset
    from trainables.device import pick_device
    from trainables.models import build_model
    from trainables.speed import Speed

    device = pick_device("auto")
    fast = Speed.for_device(device)
    out = {"device": device.type, "speed": fast.describe()}
    for model in ("vae", "vaegan"):
        cfg = _config(model, "mnist", dry, epochs=1)
        ds = load_dataset("mnist", subset=cfg.subset)
        data = _tensor(ds.train.images, device)
        plain = _epoch_ours(cfg, Speed(), device, data)
        sped = _epoch_ours(cfg, fast, device, data)
        torch.manual_seed(0)
        pythae = run_pythae(build_model(cfg).to(device), cfg, data.cpu(), seed=0)
        out[model] = {"images": len(data), "ours_fp32_s": round(plain, 2),
                      "ours_fast_s": round(sped, 2), "pythae_loop_s": round(pythae["loop_s"], 2),
                      "pythae_e2e_s": round(pythae["e2e_s"], 2),
                      "pythae_over_ours_fp32": round(pythae["loop_s"] / plain, 2),
                      "pythae_over_ours_fast": round(pythae["loop_s"] / sped, 2)}
    return out


SHARE_WORKER = """
import json, sys, time, torch
sys.path[:0] = sys.argv[3:]
from gpu_check import _config, _tensor, _epoch_ours
from trainables.datasets import load_dataset
from trainables.device import pick_device
from trainables.speed import Speed
dry = sys.argv[1] == "1"
device = pick_device("auto")
cfg = _config("vae", "mnist", dry, epochs=1)
data = _tensor(load_dataset("mnist", subset=cfg.subset).train.images, device)
t0 = time.time()
seconds = _epoch_ours(cfg, Speed.for_device(device), device, data)
print(json.dumps({"start": t0, "end": time.time(), "epoch_s": seconds}), file=open(sys.argv[2], "w"))
"""


def _gpu_utilisation(stop_after: float) -> list:
    samples = []
    while time.time() < stop_after:
        try:
            r = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu",
                                "--format=csv,noheader,nounits"], capture_output=True,
                               text=True, timeout=5)
            samples.append(float(r.stdout.split()[0]))
        except (OSError, ValueError, IndexError, subprocess.SubprocessError):
            return samples
        time.sleep(0.5)
    return samples


def sharing(dry: bool, out: Path) -> dict:
    """k processes each training one epoch of the paper VAE at once; trials/h against k=1."""
    here = str(Path(__file__).resolve().parent)
    result = {}
    for k in (1, 2, 4):
        files = [out / f".share-{k}-{i}.json" for i in range(k)]
        t0 = time.time()
        procs = [subprocess.Popen([sys.executable, "-c", SHARE_WORKER, "1" if dry else "0",
                                   str(f), here, str(Path(here).parent)]) for f in files]
        util = []
        while any(p.poll() is None for p in procs):
            util += _gpu_utilisation(time.time() + 2)
            if not util:
                time.sleep(1)
        wall = time.time() - t0
        runs = [json.loads(f.read_text()) for f in files if f.is_file()]
        for f in files:
            f.unlink(missing_ok=True)
        result[str(k)] = {"wall_s": round(wall, 1), "finished": len(runs),
                          "trials_per_hour": round(3600 * len(runs) / wall, 1),
                          "epoch_s": [round(r["epoch_s"], 2) for r in runs],
                          "gpu_util_mean": round(float(np.mean(util)), 1) if util else None}
    base = result["1"]["trials_per_hour"]
    for k in ("2", "4"):
        result[k]["vs_1"] = round(result[k]["trials_per_hour"] / base, 2) if base else None
    return result


def vit(dry: bool) -> dict:
    """5K ViT inference (untrained weights: timing only) and the score maths on its features."""
    import torch

    from scorers import vit as vit_scorer
    from scorers.reference import reference_stats, two_sample_to_reference
    from trainables.datasets import load_dataset
    from trainables.speed import Speed

    n = 500 if dry else 5000
    model = vit_scorer.build("scratch").to(vit_scorer.device()).eval()
    images = load_dataset("mnist").test.images[:2 * n].astype(np.float32) / 255.0
    vit_scorer.predict(model, images[:256])  # warm-up
    t0 = time.perf_counter()
    _, feats = vit_scorer.predict(model, images[:n])
    infer = time.perf_counter() - t0
    _, real = vit_scorer.predict(model, images[n:2 * n])
    t0 = time.perf_counter()
    ref = reference_stats(real)
    two_sample_to_reference(ref, feats)
    maths = time.perf_counter() - t0
    dev = next(model.parameters()).device
    out = {"n": n, "inference_s": round(infer, 3), "images_per_s": round(n / infer),
           "bf16": Speed.for_device(dev).bf16, "numpy_metrics_s": round(maths, 3)}
    if dev.type == "cuda":
        a, b = (torch.from_numpy(x).to(dev, torch.float64) for x in (real, feats))
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        (a @ b.T).sum().item(), (b @ b.T).sum().item()
        out["torch_gpu_grams_s"] = round(time.perf_counter() - t0, 4)
    return out


def generators(dry: bool, out: Path, deadline: float) -> dict:
    """The paper's four generators at once, each until its epochs or the deadline."""
    here = str(Path(__file__).resolve().parent)
    procs = {}
    for model, dataset in GENERATORS:
        name = f"{model}_{dataset.replace('-', '_')}"
        procs[name] = subprocess.Popen([sys.executable, __file__, "--out", str(out),
                                        "--generator", model, dataset, str(deadline)]
                                       + (["--dry-run"] if dry else []),
                                       cwd=str(Path(here).parent))
    for p in procs.values():
        p.wait()
    results = {}
    for name in procs:
        path = out / f".gen-{name}.json"
        results[name] = json.loads(path.read_text()) if path.is_file() else {"error": "no result"}
        path.unlink(missing_ok=True)
    montage(out, list(procs))
    return results


def train_generator(model: str, dataset: str, deadline: float, dry: bool, out: Path) -> None:
    """One paper generator, in its own process (so the four share the GPU)."""
    import torch

    from trainables.config import PAPER
    from trainables.datasets import load_dataset
    from trainables.device import pick_device
    from trainables.loop import batches_per_epoch, make_optimizers, train_steps
    from trainables.models import build_model
    from trainables.samples import sample_prior
    from trainables.speed import Speed, apply

    paper = PAPER[(model, dataset)]
    cfg = _config(model, dataset, dry, epochs=1 if dry else paper["epochs"], lr=paper["lr"],
                  latent_dim=paper["latent_dim"])
    device = pick_device("auto")
    speed = Speed.for_device(device)
    torch.manual_seed(0)
    net = apply(build_model(cfg), speed, device)
    opt = make_optimizers(net, cfg.model, cfg.lr)
    data = _tensor(load_dataset(dataset, subset=cfg.subset).train.images, device)
    steps = batches_per_epoch(len(data), cfg.batch_size)
    t0, done, losses, status = time.time(), 0, {}, "finished"
    for epoch in range(cfg.epochs):
        if time.time() > deadline:
            status = "deadline"
            break
        try:
            losses, _ = train_steps(net, cfg.model, opt, data, cfg.batch_size, 0, epoch * steps,
                                    steps, speed)
        except RuntimeError as exc:  # Diverged included: report it, keep the samples
            status = f"stopped: {str(exc).splitlines()[0][:200]}"
            break
        done += 1
    name = f"{model}_{dataset.replace('-', '_')}"
    samples = sample_prior(net, 5000, seed=2)
    np.savez_compressed(out / f"samples_{name}.npz", samples=samples)
    (out / f".gen-{name}.json").write_text(json.dumps({
        "model": model, "dataset": dataset, "epochs_asked": cfg.epochs, "epochs_done": done,
        "status": status, "lr": cfg.lr, "latent_dim": cfg.latent_dim, "batch_size": 256,
        "arch": cfg.arch, "speed": speed.describe(), "train_s": round(time.time() - t0, 1),
        "final_losses": {k: round(float(v), 4) for k, v in losses.items()}}))


def montage(out: Path, names: list) -> None:
    """One PNG: each generator's first 64 samples as an 8x8 grid, side by side."""
    from PIL import Image

    from trainables.samples import image_grid

    grids = [image_grid(np.load(out / f"samples_{n}.npz")["samples"])
             for n in names if (out / f"samples_{n}.npz").is_file()]
    if grids:
        Image.fromarray(np.concatenate(grids, axis=1), mode="L").save(out / "generators.png")


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if "--generator" in argv:  # a child process of the generators section
        i = argv.index("--generator")
        model, dataset, deadline = argv[i + 1], argv[i + 2], float(argv[i + 3])
        out = Path(argv[argv.index("--out") + 1])
        train_generator(model, dataset, deadline, "--dry-run" in argv, out)
        return 0
    args = parse(argv)
    import logging

    logging.getLogger("pythae").setLevel(logging.WARNING)  # its per-run banner, per section
    started = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out, started)
    report.add("environment", environment())
    wanted = args.only or list(SECTIONS)
    budget = {"epoch_time": 90, "sharing": 120, "vit": 30}
    for section in ("epoch_time", "sharing", "vit"):
        if section in wanted:
            t0 = time.time()
            try:
                values = (epoch_time(args.dry_run) if section == "epoch_time"
                          else sharing(args.dry_run, out) if section == "sharing"
                          else vit(args.dry_run))
            except Exception as exc:  # one section's failure must not cost the others
                values = {"error": f"{type(exc).__name__}: {exc}"}
            values["section_s"] = round(time.time() - t0, 1)
            values["budget_s"] = budget[section]
            report.add(section, values)
    if "generators" in wanted:
        deadline = started + args.deadline_s - 40  # leave time to sample and write
        t0 = time.time()
        values = generators(args.dry_run, out, deadline)
        values["section_s"] = round(time.time() - t0, 1)
        report.add("generators", values)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    sys.exit(main())
