"""``--init-from`` on another corpus: whose vocabulary the new run uses, and saying what that costs.

The source run's weights come with its vocabulary. On a corpus it was not built from, many words
may be missing from it: they become ``<unk>``, and a model that predicts ``<unk>`` well scores a
flattering perplexity on text it cannot write. So where the two vocabularies differ, the run says so
on stderr whatever ``--quiet`` says, with the share of validation targets that are ``<unk>`` each way,
and the user chooses:

- ``--vocab-from-source``: keep the source's vocabulary (the default, which adds how to choose);
- ``--new-vocab``: build the vocabulary from this corpus; a word both know keeps its trained rows
  (embedding, one-hot input column, output row and bias), a new word starts from the seeded initializer.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from data.dataset import Dataset, load_dataset
from data.vocab import Vocab
from wordrnn.core.config import Config
from wordrnn.core.params import Params, init_params

VOCAB_CHOICES = ("source", "new")


def choose_vocabulary(config: Config, source_dir: Path, source_vocab: Vocab, source_params: Params,
                      dataset: Dataset, choice: str | None) -> tuple[Dataset, Params]:
    """The dataset and initial weights of an ``--init-from`` run, after saying what the choice means.

    ``dataset`` was built with the source's vocabulary; ``choice`` is ``source``, ``new`` or None.
    """
    fresh = load_dataset(**config.dataset_args())
    if set(fresh.vocab.tokens) == set(source_vocab.tokens):
        return dataset, source_params
    shared = sum(1 for t in fresh.vocab.tokens if t in source_vocab.index)
    coverage = (f"its vocabulary of {len(source_vocab)} leaves {dataset.val_oov_rate:.1%} of this corpus's "
                f"validation targets <unk>, against {fresh.val_oov_rate:.1%} with the {len(fresh.vocab)} words "
                f"this corpus gives ({shared} in both)")
    if choice == "new":
        print(f"note: --init-from {source_dir} --new-vocab: {coverage}; using this corpus's vocabulary, the "
              f"{shared} shared words keeping their trained weights", file=sys.stderr)
        config.vocab_size = len(fresh.vocab)
        return fresh, remap_params(source_params, source_vocab, fresh.vocab, config)
    advice = "" if choice == "source" else (
        "; pass --new-vocab to use this corpus's vocabulary (shared words keep their weights), or "
        "--vocab-from-source to keep the source's")
    print(f"note: --init-from {source_dir} covers this corpus differently: {coverage}{advice}", file=sys.stderr)
    return dataset, source_params


def remap_params(params: Params, old: Vocab, new: Vocab, config: Config) -> Params:
    """Weights for vocabulary ``new``: the seeded initializer's, with every row (or one-hot column) of a
    token ``old`` also has copied from ``params``; the weights not indexed by token are copied whole."""
    out = init_params(config)
    pairs = [(i, old.index[t]) for i, t in enumerate(new.tokens) if t in old.index]
    to_new, from_old = (np.array(side, dtype=np.int64) for side in zip(*pairs, strict=True))
    for name, value in params.items():
        if name in ("embedding", "out.weight", "out.bias"):
            out[name][to_new] = value[from_old]
        elif name == "rnn.w_ih" and config.model == "onehot":
            out[name][:, to_new] = value[:, from_old]
        else:
            out[name] = value
    return out
