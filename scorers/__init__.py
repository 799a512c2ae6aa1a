"""Scorers: fine-tuned Inception v3 (Inception Score) and ViT (Transformer Score).

Modules (each imports TensorFlow / torch / transformers / ray only inside the functions
that need them, so importing any of them is cheap):

* ``spec``       the typed fine-tuning spec, its defaults and content hash
* ``inception``  the Keras Inception v3 scorer: build, fine-tune, predict, save, load
* ``vit``        the HuggingFace ViT scorer: the same for torch
* ``training``   fine-tune one scorer into a folder (weights, real-test arrays, metadata)
* ``store``      the cache: ``ensure_scorer``, ``load_scorer``, atomic folders
* ``scorer``     a loaded ``Scorer`` (``predict``, real test-set predictions)
* ``realsplit``  the fixed reference / ceiling halves of the real test set
* ``images``     input validation shared by every entry point
* ``metrics``    the score maths over numpy arrays
* ``scoring``    ``score_images`` and ``ceiling``: flat score dictionaries
* ``actor``      ``ScorerActor`` and the named, restartable Ray actor around it
* ``finetune`` / ``score``  the command-line tools (see docs/scorers.md)
"""
