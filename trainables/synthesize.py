"""``python trainables/synthesize.py``: the synthetic-data export, ``gensweep synthesize``.

The command scores what it writes, so it lives in the top layer (``sweeps.synthesize``);
this file is only the script path beside ``train.py``, and imports it when run.
"""
import sys

if __name__ == "__main__":
    try:
        from sweeps.synthesize import main
    except ModuleNotFoundError as exc:  # a checkout that was not installed
        sys.exit(f"trainables/synthesize.py: error: {exc}; install gensweep first: "
                 f"pip install -e .")
    sys.exit(main())
