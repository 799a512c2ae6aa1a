"""A quiet console: TensorFlow's start-up chatter is filtered, real messages are not
(trainables.quiet)."""
import os
import subprocess
import sys
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
