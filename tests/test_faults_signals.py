"""Stopping and starting Ray safely: SIGTERM stops a sweep within seconds at any phase, with
the resume command; a sweep without ``--address`` always starts its own local Ray, whatever
``RAY_ADDRESS`` or a stale cluster names."""
import os
import signal
import subprocess
import time

import faultkit as fk
import pytest

pytestmark = pytest.mark.slow


def wait_phase(storage, phase: str, proc, timeout: float = 600) -> None:
    from sweeps.sweep_record import read_phases

    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, f"the sweep ended before {phase}"
        if storage.is_dir() and any(p["phase"] == phase for p in read_phases(storage)):
            return
        time.sleep(0.2)
    raise AssertionError(f"no {phase} within {timeout}s")


@pytest.mark.parametrize("phase", ["scorer-start", "tuning"])
def test_sigterm_stops_the_sweep_within_seconds_with_the_resume_command(tmp_path, phase,
                                                                        smoke_scorers):
    storage = tmp_path / "sweep"
    env = dict(os.environ)
    if phase == "scorer-start":  # an empty cache: SIGTERM lands in a scorer's fine-tune
        env["GENSWEEP_CACHE_DIR"] = str(tmp_path / "cache")
    err = open(tmp_path / "sweep.err", "w")
    proc = subprocess.Popen([fk.PY, "sweeps/run.py", *fk.SMOKE, "--num-samples", "2",
                             "--storage", str(storage)], cwd=fk.REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        wait_phase(storage, phase, proc)
        time.sleep(2.0)  # inside the phase's work, not at its first line
        sent = time.time()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
        stopped_s = time.time() - sent
    finally:
        fk.kill_group(proc)
        err.close()
    text = (tmp_path / "sweep.err").read_text()
    fk.note("sigterm", phase=phase, stopped_after_s=round(stopped_s, 1))
    assert rc == 130, text[-3000:]
    assert stopped_s < 30, stopped_s
    assert f"--resume --storage {storage}" in text and "Traceback" not in text, text[-3000:]
    # what was written is kept: the sweep can be resumed from there
    assert (storage / "sweep.json").is_file()


SEE_RAY = """
import sys, time
t0 = time.time()
from sweeps.sweep import init_ray
ray = init_ray(None)
print("nodes", len(ray.nodes()), "after", round(time.time() - t0, 1))
"""


def test_without_address_a_sweep_starts_its_own_ray_whatever_ray_address_says(tmp_path):
    """RAY_ADDRESS (or a dead cluster's address left in Ray's temp folder) names a cluster
    that is gone: ``ray.init()`` alone would try it for ever; the sweep starts its own."""
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{fk.free_port()}"}
    r = fk.run([fk.PY, "-c", SEE_RAY], timeout=120, env=env)
    assert r.returncode == 0 and "nodes 1" in r.stdout, r
