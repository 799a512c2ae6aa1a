"""The device check script runs, end to end, on tiny data on the CPU (``--dry-run``), so the
one lease of a GPU machine is not spent finding its bugs (bench/gpu_check.sh)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_dry_run_fills_every_section_and_brings_samples_back(tmp_path, data_dir):
    env = {**os.environ, "OUT": str(tmp_path), "PY": sys.executable,
           "GENSWEEP_DATA_DIR": str(data_dir)}
    r = subprocess.run(["bash", "bench/gpu_check.sh", "--dry-run"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    doc = json.loads((tmp_path / "gpu_check.json").read_text())
    sections = doc["sections"]
    assert set(sections) == {"environment", "epoch_time", "sharing", "vit", "generators"}
    assert not any("error" in v for v in sections.values() if isinstance(v, dict)), sections
    assert sections["epoch_time"]["vae"]["pythae_loop_s"] > 0
    assert {k: sections["sharing"][k]["finished"] for k in ("1", "2", "4")} == {
        "1": 1, "2": 2, "4": 4}
    gens = sections["generators"]
    assert {g["status"] for k, g in gens.items() if k != "section_s"} == {"finished"}
    for name in ("vae_mnist", "vaegan_mnist", "vae_fashion_mnist", "vaegan_fashion_mnist"):
        samples = np.load(tmp_path / f"samples_{name}.npz")["samples"]
        assert samples.shape == (5000, 28, 28) and samples.dtype == np.uint8
    # what comes back from the device: at most 8 files, none in subfolders
    assert len([p for p in tmp_path.iterdir() if p.is_file()]) <= 8
    assert (tmp_path / "generators.png").stat().st_size > 0
