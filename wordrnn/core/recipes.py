"""Recommended configurations, as data: ``--recipe NAME`` in every trainer.

A recipe replaces the benchmark defaults of the settings it names; a flag given
on the command line still wins over it. ``quality`` is the one configuration
recommended for quality on any corpus of verse (docs/QUALITY.md has the search
behind it and the cross-validated results on the suite of corpora): it is not
tuned per corpus.
"""

from __future__ import annotations

from typing import Any

RECIPES: dict[str, dict[str, Any]] = {
    "quality": {
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
    },
}


# The quality recipe read as whole poems with the state carried (the poem context): its first measured setting.
# A chunk of 8 streams x 20 tokens makes about 170 updates an epoch on poems-100 (64 streams x 35 made only 13),
# and with so many more targets per update a larger step pays (docs/QUALITY.md has the cross-validation).
RECIPES["quality-poem"] = {**RECIPES["quality"], "context": "poem", "batch_size": 8, "bptt": 20, "lr": 2e-3}


def recipe(name: str) -> dict[str, Any]:
    """A copy of the recipe's settings (``Config`` field names)."""
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    return dict(RECIPES[name])
