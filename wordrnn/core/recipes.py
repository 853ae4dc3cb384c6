"""Recommended configurations, as data: ``--recipe NAME`` in every trainer.

A recipe replaces the benchmark defaults of the settings it names; a flag given
on the command line still wins over it. ``quality`` is the one configuration
recommended for quality on any corpus of verse (docs/QUALITY.md has the search
behind it, its ablation and the cross-validated results on the suite of
corpora): it is not tuned per corpus. Its last piece, the neural cache, is not a
training setting: it is chosen on the run's validation poems when the run is
exported (``python -m export.onnx --cache-auto``), as ``bench.quality`` chooses
it on each fold's inner validation poems.

``auto`` starts from ``quality`` and searches a small space (``wordrnn.core.search_space``) on the run's own
validation poems (in ``bench.quality``, each fold's inner validation poems) before it trains the chosen
configuration as ``quality`` trains (``wordrnn.run.search``).
"""

from __future__ import annotations

from typing import Any

# The window recipe of the previous round: an LSTM on windows of 5 tokens from a zero state (a neural 6-gram).
WINDOW = {
    "model": "embedding",
    "cell": "lstm",
    "embed_dim": 100,
    "hidden_size": 128,
    "seq_len": 5,
    "dropout": 0.5,
    "weight_decay": 1e-5,
    "lr": 1e-3,
    "optimizer": "adam",
    "batch_size": 64,
    "clip": 5.0,
    "patience": 3,
    "epochs": 30,
}

RECIPES: dict[str, dict[str, Any]] = {
    # Whole poems with the state carried: 8 streams x chunks of 20 make about 170 updates an epoch on
    # poems-100, and with that many targets per update a larger step pays; dropout 0.5 locked per stream on the
    # inputs and the output; three members from seeds seed .. seed+2, their probabilities averaged.
    "quality": {**WINDOW, "context": "poem", "batch_size": 8, "bptt": 20, "lr": 2e-3, "ensemble": 3},
    "quality-window": WINDOW,
}
# One member of the quality recipe: a third of its training time (what bench.compare's recipe row trains).
RECIPES["quality-single"] = {**RECIPES["quality"], "ensemble": 1}
# The quality recipe's settings are the search's starting point: what it does not search, it trains as quality.
RECIPES["auto"] = dict(RECIPES["quality"])
SEARCHED = ("auto",)  # the recipes that search before they train


def recipe(name: str) -> dict[str, Any]:
    """A copy of the recipe's settings (``Config`` field names)."""
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return dict(RECIPES[name])
