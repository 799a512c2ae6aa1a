"""Bad input, everywhere: every installed command, at least eight bad inputs each, ends in
one line on stderr, no traceback, and its documented exit code (docs/reliability.md lists
them). Commands run as installed (``gensweep COMMAND``), in a throwaway cache, offline."""
import functools
import http.server
import os
import shutil
import sys
import threading
from pathlib import Path

import faultkit as fk
import numpy as np
import pytest

pytestmark = pytest.mark.slow
GENSWEEP = str(Path(sys.executable).parent / "gensweep")


@pytest.fixture(scope="module")
def files(tmp_path_factory, data_dir):
    """The bad files the cases point at."""
    root = tmp_path_factory.mktemp("bad")
    corrupt = root / "corrupt-data" / "mnist"
    shutil.copytree(data_dir / "mnist", corrupt)
    blob = (corrupt / "train-images-idx3-ubyte.gz").read_bytes()
    (corrupt / "train-images-idx3-ubyte.gz").write_bytes(blob[: len(blob) // 3])
    (root / "empty-data").mkdir()
    np.save(root / "wrong-shape.npy", np.zeros((50, 32, 32), np.uint8))
    np.save(root / "wrong-dtype.npy", np.zeros((50, 28, 28), np.int64))
    np.save(root / "small.npy", np.zeros((50, 28, 28), np.uint8))
    (root / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip")
    imgs = np.zeros((50, 28, 28), np.uint8)
    np.savez(root / "labels-11.npz", images=imgs, labels=np.full(50, 11, np.uint8))
    np.savez(root / "labels-short.npz", images=imgs, labels=np.zeros(40, np.uint8))
    np.savez(root / "labelled.npz", images=imgs, labels=np.arange(50, dtype=np.uint8) % 10)
    (root / "a-file").write_text("not a folder")
    (root / "not-a-scorer").mkdir()
    (root / "not-a-scorer" / "junk.txt").write_text("x")
    bad_ckpt = root / "bad-ckpt"
    bad_ckpt.mkdir()
    (bad_ckpt / "model.safetensors").write_bytes(b"\x00" * 64)
    (bad_ckpt / "state.json").write_text('{"config": {"model": "vae"}}')
    sweep = root / "bad-sweep"
    sweep.mkdir()
    (sweep / "sweep.json").write_text("{ not json")
    # an interrupted download: a local mirror serving the first third of each file
    mirror = root / "mirror"
    mirror.mkdir()
    for f in (data_dir / "mnist").iterdir():
        (mirror / f.name).write_bytes(f.read_bytes()[: f.stat().st_size // 3])
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mirror))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"root": root, "mirror": f"http://127.0.0.1:{server.server_address[1]}/"}
    server.shutdown()


def case(cmd, args, code, needle, env=None, id=None):
    return pytest.param(cmd, args, code, needle, env or {}, id=id or f"{cmd}:{needle[:30]}")


R = "{root}"
NO_DATA = {"GENSWEEP_DATA_DIR": f"{R}/empty-data", "GENSWEEP_NO_DOWNLOAD": "1"}
CORRUPT = {"GENSWEEP_DATA_DIR": f"{R}/corrupt-data"}
DOWNLOAD = {"GENSWEEP_DATA_DIR": f"{R}/empty-data", "GENSWEEP_NO_DOWNLOAD": "0",
            "GENSWEEP_MIRRORS": "{mirror}", "GENSWEEP_CACHE_DIR": f"{R}/dl-cache"}
SWEEP = ["--space", "vae", "--preset", "smoke", "--storage", f"{R}/s"]
CASES = [
    # --- gensweep sweep (sweeps/run.py): 2 bad arguments, 1 the sweep cannot run
    case("sweep", ["--space", "gan"], 2, "invalid choice: 'gan'"),
    case("sweep", ["--space", "vae", "--num-samples", "0"], 2, "0 must be >= 1"),
    case("sweep", SWEEP, 1, "mnist not found", NO_DATA),
    case("sweep", SWEEP, 1, "truncated or corrupt", CORRUPT),
    case("sweep", [*SWEEP[:-1], f"{R}/a-file/s"], 1, "is not writable"),
    case("sweep", [*SWEEP, "--mlflow-uri", "http://127.0.0.1:9"], 1, "is unreachable"),
    case("sweep", [*SWEEP, "--mlflow-uri", "ftp://x"], 1, "not a tracking URI"),
    case("sweep", [*SWEEP, "--optuna-storage", "not a url"], 1, "not a database URL"),
    case("sweep", [*SWEEP, "--scorers", f"{R}/not-a-scorer"], 1, "inception does not exist"),
    case("sweep", [*SWEEP, "--address", "127.0.0.1:9"], 1, "is unreachable"),
    case("sweep", ["--resume", "--storage", f"{R}/bad-sweep"], 2, "cannot be read"),
    case("sweep", SWEEP, 1, "could not download", DOWNLOAD),
    # --- gensweep train
    case("train", ["--model", "gan"], 2, "invalid choice: 'gan'"),
    case("train", ["--epochs", "0"], 2, "0 must be >= 1"),
    case("train", ["--lr", "abc"], 2, "'abc' is not a valid number"),
    case("train", ["--device", "cuda"], 2, "CUDA is not available"),
    case("train", ["--arch", "small", "--out", f"{R}/t1"], 1, "mnist not found", NO_DATA),
    case("train", ["--arch", "small", "--out", f"{R}/t2"], 1, "truncated or corrupt", CORRUPT),
    case("train", ["--arch", "small", "--subset", "100", "--out", f"{R}/a-file/t"], 1,
         "a-file"),
    case("train", ["--arch", "small", "--out", f"{R}/t3"], 1, "could not download", DOWNLOAD),
    # --- gensweep finetune
    case("finetune", ["--dataset", "cifar", "--scorer", "vit"], 2, "invalid choice"),
    case("finetune", ["--dataset", "mnist", "--scorer", "vit", "--epochs", "0"], 2,
         "0 must be >= 1"),
    case("finetune", ["--dataset", "mnist", "--scorer", "vit", "--lr", "5"], 2, "5 must be < 1"),
    case("finetune", ["--dataset", "mnist", "--scorer", "vit", "--eval-subset", "20000"], 2,
         "at most 10000"),
    case("finetune", ["--dataset", "mnist", "--scorer", "inception", "--init",
                      f"{R}/missing.h5"], 2, "no such file"),
    case("finetune", ["--dataset", "mnist", "--scorer", "vit", "--out", f"{R}/not-a-scorer"],
         2, "not a scorer folder"),
    case("finetune", ["--dataset", "mnist", "--scorer", "vit", "--subset", "100"], 1,
         "mnist not found", NO_DATA),
    case("finetune", ["--dataset", "mnist", "--scorer", "vit", "--subset", "100", "--out",
                      f"{R}/a-file/v"], 1, "a-file"),
    # --- gensweep score
    case("score", ["--dataset", "mnist", "--samples", f"{R}/missing.npy"], 2, "no such file"),
    case("score", ["--dataset", "mnist", "--samples", f"{R}/corrupt.npz"], 2,
         "cannot be read as .npy/.npz"),
    case("score", ["--dataset", "mnist", "--samples", f"{R}/wrong-shape.npy", "--n", "10"], 2,
         "has shape (50, 32, 32)"),
    case("score", ["--dataset", "mnist", "--samples", f"{R}/wrong-dtype.npy", "--n", "10"], 2,
         "has dtype int64"),
    case("score", ["--dataset", "mnist", "--samples", f"{R}/small.npy", "--n", "1000"], 2,
         "holds 50 images but --n asks for 1000"),
    case("score", ["--dataset", "mnist", "--samples", f"{R}/labels-11.npz", "--n", "10"], 2,
         "labels must be integers in 0..9"),
    case("score", ["--dataset", "mnist", "--samples", f"{R}/labels-short.npz", "--n", "10"], 2,
         "50 images but labels of shape (40,)"),
    case("score", ["--dataset", "mnist", "--samples", f"{R}/small.npy", "--n", "10", "--cas"],
         2, "has no labels, so no CAS"),
    case("score", ["--dataset", "mnist", "--samples", "real-test", "--n", "10", "--cas"], 2,
         "real-test is the ceiling"),
    case("score", ["--dataset", "mnist", "--samples", f"{R}/labelled.npz", "--n", "10",
                   "--augment"], 2, "--augment needs a labelled --samples file"),
    case("score", ["--dataset", "mnist", "--samples", f"{R}/small.npy", "--n", "10",
                   "--augment", "--train-per-class", "100"], 2, "--augment needs a labelled"),
    case("score", ["--dataset", "mnist", "--samples", f"{R}/labelled.npz", "--n", "10",
                   "--train-per-class", "100"], 2, "is read by --augment only"),
    case("score", ["--dataset", "mnist", "--samples", "real-test", "--n", "6000"], 2,
         "sample counts in 10..5000"),
    case("score", ["--dataset", "mnist", "--samples", "real-test", "--scorer-dir",
                   f"vit={R}/not-a-scorer"], 2, "not a complete scorer folder"),
    case("score", ["--dataset", "mnist", "--samples", "real-test", "--scorer-dir", "gan=x"], 2,
         "expected KIND=DIR"),
    # --- gensweep synthesize
    case("synthesize", ["--checkpoint", f"{R}/missing", "--out", f"{R}/x.npz"], 2,
         "not a gensweep checkpoint folder"),
    case("synthesize", ["--checkpoint", f"{R}/bad-ckpt", "--out", f"{R}/x.npz"], 2,
         "cannot be loaded into the vae"),
    case("synthesize", ["--checkpoint", f"{R}/bad-ckpt", "--out", f"{R}/x.png"], 2,
         "expected a FILE.npz"),
    case("synthesize", ["--checkpoint", f"{R}/bad-ckpt", "--format", "tfrecord", "--out",
                        f"{R}/x.npz"], 2, "invalid choice: 'tfrecord'"),
    case("synthesize", ["--checkpoint", f"{R}/bad-ckpt", "--format", "imagefolder", "--out",
                        f"{R}/x.npz"], 2, "expected a folder path without a suffix"),
    case("synthesize", ["--checkpoint", f"{R}/bad-ckpt", "--out", f"{R}/nowhere/x.npz"], 2,
         "does not exist or is not writable"),
    case("synthesize", ["--checkpoint", f"{R}/bad-ckpt", "--mode", "conditional-ish", "--out",
                        f"{R}/x.npz"], 2, "invalid choice: 'conditional-ish'"),
    case("synthesize", ["--checkpoint", f"{R}/bad-ckpt", "--mode", "prior", "--classes",
                        "balanced", "--out", f"{R}/x.npz"], 2, "prior samples carry none"),
    case("synthesize", ["--run", f"{R}/empty-data", "--out", f"{R}/x.npz"], 2,
         "holds no sweep"),
    case("synthesize", ["--checkpoint", f"{R}/bad-ckpt", "--n", "0", "--out", f"{R}/x.npz"], 2,
         "0 must be >= 1"),
    case("synthesize", ["--checkpoint", f"{R}/bad-ckpt", "--score-n", "9999", "--out",
                        f"{R}/x.npz"], 2, "must be <= 5000"),
    # --- gensweep ui
    case("ui", [f"{R}/empty-data"], 2, "holds no sweep"),
    case("ui", [f"{R}/missing"], 2, "holds no sweep"),
    case("ui", [f"{R}/a-file"], 2, "holds no sweep"),
    case("ui", [f"{R}/bad-sweep"], 2, "cannot be read"),
    case("ui", [f"{R}/bad-sweep", "--mlflow-port", "0"], 2, "must be >= 1"),
    case("ui", [f"{R}/bad-sweep", "--optuna-port", "http"], 2, "not a valid integer"),
    case("ui", [], 2, "the following arguments are required"),
    case("ui", [f"{R}/bad-sweep", "--open-browser"], 2, "unrecognized arguments"),
]


@pytest.mark.parametrize("cmd, args, code, needle, env", CASES)
def test_bad_input_ends_in_one_line_and_its_exit_code(cmd, args, code, needle, env, files,
                                                      data_dir):
    sub = {"root": str(files["root"]), "mirror": files["mirror"]}
    args = [a.format(**sub) for a in args]
    env = {**os.environ, "GENSWEEP_DATA_DIR": str(data_dir),
           **{k: v.format(**sub) for k, v in env.items()}}
    r = fk.run([GENSWEEP, cmd, *args], timeout=300, env=env)
    lines = [l for l in r.stderr.splitlines() if "error" in l.lower()]
    assert r.returncode == code, r
    assert "Traceback" not in r.stderr, r
    assert len(lines) == 1 and needle in lines[0], r
