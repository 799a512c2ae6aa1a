"""A quiet console: TensorFlow's start-up chatter filtered out of a process's stderr.

On a machine without a GPU, every process that imports TensorFlow 2.21 prints, below any
log-level setting it honours: ``Could not find cuda drivers``, ``failed call to cuInit``,
the oneDNN notice and absl's pre-init warning. A newcomer reads those as errors. This
filter passes everything else through unchanged (real warnings and errors still show);
``GENSWEEP_VERBOSE=1`` (``--verbose``) turns it off.

The filter sits on file descriptor 2 itself, since the chatter comes from C++ code, not
from Python's ``sys.stderr``: a pipe replaces fd 2, and a thread copies each line to the
original stderr unless it matches ``NOISE``.
"""
from __future__ import annotations

import atexit
import os
import re
import sys
import threading

NOISE = re.compile(
    r"cudart_stub\.cc.*Could not find cuda drivers"
    r"|cuda_platform\.cc.*failed call to cuInit"
    r"|cuda_executor\.cc.*could not find cuda drivers"
    r"|port\.cc.*oneDNN custom operations are on"
    r"|cpu_feature_guard\.cc.*This TensorFlow binary is optimized"
    r"|To enable the following instructions: .* in other operations, rebuild TensorFlow"
    r"|WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|computation_placer\.cc.*computation placer already registered"
    r"|cuda_(dnn|fft|blas)\.cc.*Unable to register cu(DNN|FFT|BLAS) factory")
SEGMENT = re.compile(rb"\r?[^\r\n]*\n?")  # a line, or a progress redraw ("\r" + text)
_installed = []


def verbose() -> bool:
    return os.environ.get("GENSWEEP_VERBOSE", "") in ("1", "true", "yes")


def filter_stderr() -> bool:
    """Install the filter in this process (once); False if verbose or it cannot be."""
    if _installed or verbose():
        return bool(_installed)
    try:
        sys.stderr.flush()
        original, restore = os.dup(2), os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
    except OSError:
        return False

    def pump():
        with os.fdopen(read_end, "rb", buffering=0) as pipe, \
                os.fdopen(original, "wb", buffering=0) as out:
            pending = b""
            while chunk := pipe.read(65536):
                pending += chunk
                # A progress bar redraws its line as "\r" + text, with no "\n": a redraw
                # is passed on as it comes, not held until the bar's line ends. Only a
                # plain partial line (perhaps the start of chatter) waits for its end.
                cut = len(pending) if b"\r" in pending else pending.rfind(b"\n") + 1
                complete, pending = pending[:cut], pending[cut:]
                for piece in SEGMENT.findall(complete):
                    if not NOISE.search(piece.decode("utf-8", "replace")):
                        out.write(piece)
            if pending and not NOISE.search(pending.decode("utf-8", "replace")):
                out.write(pending)

    thread = threading.Thread(target=pump, name="stderr-filter", daemon=True)
    thread.start()

    def drain():
        # At exit, put the real stderr back (closing the pipe's last write end), so the
        # filter copies what is still in the pipe, a final error line above all.
        try:
            sys.stderr.flush()
            os.dup2(restore, 2)
        except OSError:
            return
        thread.join(timeout=5)

    atexit.register(drain)
    _installed.append(True)
    return True
