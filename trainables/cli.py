"""What every gensweep command shares: one-line argument errors (exit 2), argument types,
logging set-up. It sits in the lowest package so that ``trainables``, ``scorers`` and
``sweeps`` commands all use the same helpers without pointing up the layering.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading

# Framework chatter that buries the lines a user runs a command for (kept at WARNING).
NOISY_LOGGERS = ("tensorflow", "absl", "h5py", "urllib3", "filelock", "httpx",
                 "huggingface_hub", "transformers", "alembic", "matplotlib")


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in ONE line (no usage dump) and exits 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def fail(prog: str, message: str, code: int = 2):
    """Print ``message`` as one line on stderr and exit with ``code``."""
    sys.stderr.write(f"{prog}: error: {' '.join(str(message).split())}\n")
    raise SystemExit(code)


def setup_logging(verbose: bool = False, fmt: str = "%(asctime)s %(levelname)s %(name)s: "
                                                    "%(message)s") -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=fmt)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def number(kind=float, minimum=None, strict: bool = False, maximum=None,
           strict_max: bool = False):
    """An argparse type: ``kind(text)`` within [minimum, maximum] (strict: open bounds)."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a valid {'integer' if kind is int else 'number'}") from None
        if minimum is not None and (value <= minimum if strict else value < minimum):
            raise argparse.ArgumentTypeError(f"{text} must be {'>' if strict else '>='} "
                                             f"{minimum}")
        if maximum is not None and (value >= maximum if strict_max else value > maximum):
            raise argparse.ArgumentTypeError(f"{text} must be {'<' if strict_max else '<='} "
                                             f"{maximum}")
        return value
    return parse


positive_int = number(int, 1)
positive_float = number(float, 0, strict=True)
unit_float = number(float, 0, strict=True, maximum=1, strict_max=True)


def value_range(kind=float):
    """An argparse type for ``LOW,HIGH`` with 0 < LOW <= HIGH."""
    def parse(text: str):
        try:
            lo, hi = (kind(x) for x in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not LOW,HIGH") from None
        if lo <= 0 or hi <= 0:
            raise argparse.ArgumentTypeError(f"{text}: bounds must be positive")
        if lo > hi:
            raise argparse.ArgumentTypeError(f"{text}: low bound is above the high bound")
        return (lo, hi)
    return parse


def int_list(text: str) -> tuple[int, ...]:
    """An argparse type for comma-separated integers, e.g. ``1000,5000``."""
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of "
                                         f"integers") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


@contextlib.contextmanager
def interrupts(repeat_s: float = 3.0):
    """Ctrl-C and SIGTERM raise KeyboardInterrupt inside the block, so a command stops at
    once with its own message and exit code 130.

    Libraries do not always let that KeyboardInterrupt through. TensorFlow's pybind modules
    turn one raised during their import into ``ImportError: initialization failed``; where
    that import is optional (``except ImportError``) it is swallowed, and a fine-tune went on
    for minutes after SIGTERM. So once a stop was asked for, any error is that stop, and
    the stop is asked again every ``repeat_s`` seconds until the block is left."""
    left = threading.Event()
    main = threading.get_ident()
    again: list[threading.Thread] = []  # started by the first signal: a stop was asked for

    def ask_again(signum):
        while not left.wait(repeat_s):
            signal.pthread_kill(main, signum)

    def interrupt(signum, frame):
        if not again:
            again.append(threading.Thread(target=ask_again, args=(signum,), daemon=True,
                                          name="interrupt-again"))
            again[0].start()
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    except Exception as exc:
        if again:
            raise KeyboardInterrupt from exc
        raise
    finally:
        left.set()
        try:
            for thread in again:  # its last signal, if any, lands while our handler is in place
                thread.join()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def exit_interrupted(code: int = 130):
    """End an interrupted command now: run the exit handlers (Ray's shutdown, logging's
    flush), then leave without the interpreter's finalisation.

    A TensorFlow stopped mid-import or mid-fit can leave native threads that call into
    Python; finalisation then aborts (``Fatal Python error: PyThreadState_Get``, exit -6,
    once in 100 stops of ``scorers/finetune_cli.py`` on 2026-12-05) after the interrupt message
    was printed. Nothing is left to do by then: every file was already written or removed."""
    import atexit

    atexit._run_exitfuncs()  # what sys.exit would run, in the same order
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
