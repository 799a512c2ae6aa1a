"""Shared test set-up: the real datasets from ../shared/data, a private cache, no downloads."""
import os
from pathlib import Path

# torch's OpenMP threads spin while idle; on a shared 2-core machine that slowed steps 20x.
# Must be set before anything imports torch.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _gensweep_env(tmp_path_factory):
    """Point every test at the real data and a throwaway cache; never reach the network."""
    if not SHARED_DATA.is_dir():
        pytest.exit(f"tests need the real datasets at {SHARED_DATA} (see README, Datasets)", 2)
    old = {k: os.environ.get(k) for k in ("GENSWEEP_DATA_DIR", "GENSWEEP_CACHE_DIR",
                                          "GENSWEEP_NO_DOWNLOAD")}
    os.environ["GENSWEEP_DATA_DIR"] = str(SHARED_DATA)
    os.environ["GENSWEEP_CACHE_DIR"] = str(tmp_path_factory.mktemp("gensweep-cache"))
    os.environ["GENSWEEP_NO_DOWNLOAD"] = "1"
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return SHARED_DATA


@pytest.fixture(scope="session")
def smoke_scorers():
    """The smoke preset's scorers, fine-tuned once into the session cache that every sweep
    subprocess of this session reuses (the same specs a smoke sweep's plan asks for)."""
    from scorers.scorer_cache import ensure_spec
    from sweeps.presets import PRESETS

    preset = PRESETS["smoke"]
    return {kind: ensure_spec(preset.scorer_spec("mnist", kind), progress=False)
            for kind in ("inception", "vit")}
