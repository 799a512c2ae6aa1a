"""A quiet console: TensorFlow's start-up chatter is filtered, real messages are not
(trainables.quiet)."""
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CODE = """
import sys
from scorers.inception import configure_tf
tf = configure_tf()
tf.config.list_physical_devices("GPU")
print(float(tf.reduce_sum(tf.ones((2, 2)))))
print("a real warning", file=sys.stderr)
sys.exit("error: the last line")
"""
CHATTER = ("Could not find cuda drivers", "failed call to cuInit", "oneDNN custom operations",
           "absl::InitializeLog")


def run(**env):
    return subprocess.run([sys.executable, "-c", CODE], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **env})


def test_tensorflow_chatter_is_filtered_and_real_lines_pass():
    quiet = run(GENSWEEP_VERBOSE="0")
    assert quiet.returncode == 1 and quiet.stdout.strip() == "4.0"
    assert not [c for c in CHATTER if c in quiet.stderr], quiet.stderr
    assert quiet.stderr.splitlines()[-2:] == ["a real warning", "error: the last line"]


def test_verbose_shows_everything():
    loud = run(GENSWEEP_VERBOSE="1")
    assert "a real warning" in loud.stderr and "error: the last line" in loud.stderr
    assert len(loud.stderr.splitlines()) > 2  # TensorFlow's own lines are back


PROGRESS = """
import sys, time
from trainables.quiet import filter_stderr
filter_stderr()
for i in range(3):
    sys.stderr.write(f"\\rstep {i + 1}/3"); sys.stderr.flush()
    time.sleep(0.1)
print("bar drawn", flush=True)
time.sleep(30)
"""


def test_progress_bars_pass_the_filter_while_they_run():
    """tqdm redraws its bar with a carriage return and no newline; the filter must pass each
    redraw as it comes (a scorer's fine-tune once showed nothing for minutes)."""
    import select

    proc = subprocess.Popen([sys.executable, "-c", PROGRESS], cwd=REPO, env={
        **os.environ, "GENSWEEP_VERBOSE": "0"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"bar drawn\n"
        seen, deadline = b"", time.time() + 10
        while b"step 3/3" not in seen and time.time() < deadline:
            if select.select([proc.stderr], [], [], 0.5)[0]:
                seen += os.read(proc.stderr.fileno(), 4096)
        assert proc.poll() is None  # still running: the bar came through while it ran
        assert b"\rstep 1/3\rstep 2/3\rstep 3/3" in seen, seen
    finally:
        proc.kill()
        proc.wait()
