"""What an exported file says about itself: JSON strings in the ONNX model's ``metadata_props``.

docs/GENERATION.md is the contract these keys follow; ``wordrnn.generation``
names its version, so that a client in any language can tell whether it knows
how to tokenize, sample and detokenize for this file.

The vocabulary, tokenizer settings, model configuration and source framework
travel inside the ``.onnx`` file, so that generation needs that one file and
nothing else. Pure Python: ``export.generate`` reads these keys through
onnxruntime without importing ``onnx``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from data.vocab import Vocab
from wordrnn.core.cells import CELLS
from wordrnn.core.config import MODELS, TOKENIZERS, Config
from wordrnn.core.errors import UsageError

# The graph's interface: int64 tokens [batch, seq] in, float32 logits [batch, V] out.
INPUT_NAME = "tokens"
OUTPUT_NAME = "logits"

FORMAT = "1"
KEY_FORMAT = "wordrnn.format"
KEY_CONFIG = "wordrnn.config"
KEY_VOCAB = "wordrnn.vocab"
KEY_TOKENIZER = "wordrnn.tokenizer"
KEY_SOURCE = "wordrnn.source"
KEY_GENERATION = "wordrnn.generation"
GENERATION = "wordrnn-generation 1"  # the version of docs/GENERATION.md this file follows
KEYS = (KEY_FORMAT, KEY_CONFIG, KEY_VOCAB, KEY_TOKENIZER, KEY_SOURCE, KEY_GENERATION)


@dataclass
class ModelCard:
    """Everything generation needs besides the graph."""

    config: Config
    vocab: Vocab
    source: dict[str, Any] = field(default_factory=dict)  # framework, run folder, exporter

    @property
    def framework(self) -> str:
        return str(self.source.get("framework", "unknown"))

    @property
    def val_ppl(self) -> float | None:
        """Validation perplexity of the exported (best) epoch, where the run folder recorded one."""
        value = self.source.get("val_ppl")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def cell(self) -> str:
        """The recurrent cell of the graph (``rnn``, ``lstm`` or ``gru``), from the recorded configuration."""
        return self.config.cell


def validation_summary(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """The best validation epoch of a run's ``metrics.jsonl`` rows (the one the weights hold), for the card."""
    rows = [r for r in metrics if isinstance(r.get("val_loss"), (int, float))]
    if not rows:
        return {}
    best = min(rows, key=lambda r: r["val_loss"])
    return {"epoch": best.get("epoch"), "val_ppl": best.get("val_ppl")}


def to_props(card: ModelCard) -> dict[str, str]:
    """The ``metadata_props`` entries for ``card``: one JSON string per key."""
    return {
        KEY_FORMAT: FORMAT,
        KEY_GENERATION: GENERATION,
        KEY_CONFIG: json.dumps(card.config.to_json_dict(), ensure_ascii=False),
        KEY_VOCAB: json.dumps(card.vocab.tokens, ensure_ascii=False),
        KEY_TOKENIZER: json.dumps({"mode": card.vocab.tokenizer, "min_freq": card.vocab.min_freq}),
        KEY_SOURCE: json.dumps(card.source, ensure_ascii=False),
    }


def from_props(props: dict[str, str], where: str) -> ModelCard:
    """Read a card back; ``UsageError`` naming ``where`` if the entries are missing or inconsistent."""
    missing = [key for key in KEYS if key not in props]
    if len(missing) == len(KEYS):
        raise UsageError(f"{where} has no wordrnn metadata; export a run folder with python -m export.onnx")
    if missing:
        raise UsageError(f"{where} lacks the metadata {', '.join(missing)}; export it again with python -m export.onnx")
    if props[KEY_FORMAT] != FORMAT:
        raise UsageError(f"{where} has wordrnn metadata format {props[KEY_FORMAT]!r}; this version reads {FORMAT!r}")
    if props[KEY_GENERATION] != GENERATION:
        raise UsageError(f"{where} follows the generation contract {props[KEY_GENERATION]!r}; "
                         f"this version follows {GENERATION!r}")
    try:
        config = Config.from_dict(json.loads(props[KEY_CONFIG]))
        tokens = json.loads(props[KEY_VOCAB])
        tokenizer = json.loads(props[KEY_TOKENIZER])
        vocab = Vocab(tokens, tokenizer=tokenizer["mode"], min_freq=tokenizer["min_freq"])
        source = json.loads(props[KEY_SOURCE])
    except (ValueError, TypeError, KeyError) as err:
        raise UsageError(f"{where} has unreadable wordrnn metadata ({err}); export it again") from None
    if (config.model not in MODELS or config.cell not in CELLS or vocab.tokenizer not in TOKENIZERS
            or config.seq_len <= 0):
        raise UsageError(f"{where} has wordrnn metadata this version does not understand (model {config.model!r}, "
                         f"cell {config.cell!r}, tokenizer {vocab.tokenizer!r}, seq_len {config.seq_len})")
    if len(vocab) != config.vocab_size:
        raise UsageError(f"{where}: the vocabulary in the metadata has {len(vocab)} tokens but the config "
                         f"says {config.vocab_size}; export it again")
    return ModelCard(config, vocab, source if isinstance(source, dict) else {})
