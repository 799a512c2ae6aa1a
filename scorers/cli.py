"""Shared plumbing of the scorer CLIs: one-line argument errors (exit 2), logging, types."""
from __future__ import annotations

import argparse
import logging
import os
import sys


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in ONE line (no usage dump) and exits 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def fail(prog: str, message: str, code: int = 2):
    """Print ``message`` as one line on stderr and exit with ``code``."""
    sys.stderr.write(f"{prog}: error: {' '.join(str(message).split())}\n")
    raise SystemExit(code)


def setup_logging(verbose: bool = False) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Framework chatter would bury the per-epoch lines the user runs the CLI for.
    for noisy in ("tensorflow", "absl", "h5py", "urllib3", "filelock", "httpx",
                  "huggingface_hub", "transformers"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value
