"""The ``gensweep`` command: one installed entry point over every tool.

    gensweep sweep --space vaegan        # = python sweeps/run.py --space vaegan
    gensweep train --model vae ...       # = python trainables/train.py ...
    gensweep finetune --dataset mnist --scorer vit
    gensweep score --dataset mnist --samples samples.npz

Each subcommand is the ``main(argv)`` of the module named in ``COMMANDS``, so the two ways of
running a tool cannot drift apart.
"""
from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "sweep": ("sweeps.run", "run a sweep (or --resume one)"),
    "train": ("trainables.train", "train one VAE / VAE-GAN"),
    "finetune": ("scorers.finetune_cli", "fine-tune (or reuse) a scorer"),
    "score": ("scorers.score_cli", "score a sample file, or the real-data ceiling"),
    "synthesize": ("sweeps.synthesize", "export a synthetic dataset with its datasheet"),
    "ui": ("sweeps.ui", "open a sweep in the MLflow UI and optuna-dashboard"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name.ljust(width)}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return ("usage: gensweep COMMAND [ARGS]  (gensweep COMMAND --help for its options)\n\n"
            "commands:\n" + "\n".join(lines))


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"gensweep: error: unknown command {name!r}; choose one of "
              f"{', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
