"""What an exported file says about itself: JSON strings in the ONNX model's ``metadata_props``.

docs/GENERATION.md is the contract these keys follow; ``wordrnn.generation``
names its version, so that a client in any language can tell whether it knows
how to tokenize, sample and detokenize for this file.

The vocabulary, tokenizer settings, model configuration and source framework
travel inside the ``.onnx`` file, so that generation needs that one file and
nothing else. Pure Python: ``export.generate`` reads these keys through
onnxruntime without importing ``onnx``.

A window model's file follows version 1 of the contract, as it always has, so
that every client written before poem models existed still reads it. A poem
model's file follows version 2: a version-1 client, which would feed it
windows without its state, refuses it by the version string alone. A poem model with a neural cache
(``wordrnn.cache``) follows version 3: a version-2 client would write without the cache, so the version
string stops it too; without a cache a poem file stays version 2. Version 4 adds the cache generation applies
(``wordrnn.cache.write``) apart from the one the perplexity is scored with (``wordrnn.cache``): every file with a
cache is now written as version 4, and version-3 files are read as before (their one cache for both).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from data.vocab import Vocab
from wordrnn.core.cache import CacheSettings, CacheSetup
from wordrnn.core.cells import CELLS, get_cell
from wordrnn.core.config import CONTEXTS, MODELS, TOKENIZERS, Config
from wordrnn.core.errors import UsageError

# The graph's interface: int64 tokens [batch, seq] in, float32 logits out ([batch, V] for a window model,
# [batch, seq, V] for a poem model, which also takes its state in and gives it back: h0 -> hn, c0 -> cn).
INPUT_NAME = "tokens"
OUTPUT_NAME = "logits"

FORMAT = "1"
KEY_FORMAT = "wordrnn.format"
KEY_CONFIG = "wordrnn.config"
KEY_VOCAB = "wordrnn.vocab"
KEY_TOKENIZER = "wordrnn.tokenizer"
KEY_SOURCE = "wordrnn.source"
KEY_GENERATION = "wordrnn.generation"
KEY_CONTEXT = "wordrnn.context"
KEY_STATE = "wordrnn.state"
KEY_CACHE = "wordrnn.cache"
KEY_CACHE_WRITE = "wordrnn.cache.write"  # version 4: the cache generation applies (null: none)
KEY_ENSEMBLE = "wordrnn.ensemble"  # an ensemble's number of members N (absent: one model)
# The versions of docs/GENERATION.md: a file names the oldest one that describes it (a window model 1, a poem
# model 2); this code reads both.
GENERATION_V1 = "wordrnn-generation 1"
GENERATION = "wordrnn-generation 2"
VERSION_OF_CONTEXT = {"window": GENERATION_V1, "poem": GENERATION}
GENERATION_CACHE = "wordrnn-generation 3"  # a poem model with a neural cache
GENERATION_WRITE = "wordrnn-generation 4"  # and a cache for writing apart from the one for scoring
CACHE_VERSIONS = {3: GENERATION_CACHE, 4: GENERATION_WRITE}
VERSIONS = (GENERATION_V1, GENERATION, GENERATION_CACHE, GENERATION_WRITE)
KEYS = (KEY_FORMAT, KEY_CONFIG, KEY_VOCAB, KEY_TOKENIZER, KEY_SOURCE, KEY_GENERATION)


@dataclass(frozen=True)
class StateSpec:
    """One recurrent state a poem model takes in and gives back: ``input`` [batch, size] -> ``output``."""

    input: str
    output: str
    size: int


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of the graph: its name, element type and shape (None: a dynamic axis)."""

    name: str
    type: str  # onnxruntime's spelling: tensor(int64), tensor(float)
    shape: tuple[int | None, ...]


def state_specs(config: Config) -> tuple[StateSpec, ...]:
    """The states a ``config`` model carries from token to token: none in the window context."""
    if config.context != "poem":
        return ()
    # each state the registry names (h; and c for the LSTM) goes in as h0 (c0) and comes out as hn (cn); a
    # stacked model's is its layers' states side by side, an ensemble's its members' again: N * L * H wide
    size = config.state_size * config.ensemble
    return tuple(StateSpec(f"{name}0", f"{name}n", size) for name in get_cell(config.cell).states)


@dataclass
class ModelCard:
    """Everything generation needs besides the graph."""

    config: Config
    vocab: Vocab
    source: dict[str, Any] = field(default_factory=dict)  # framework, run folder, exporter
    cache: CacheSetup | None = None  # a poem model's neural cache: scoring, and writing (every client applies it)

    @property
    def version(self) -> str:
        """The oldest version of the generation contract that describes this file."""
        return CACHE_VERSIONS[self.cache.version] if self.cache else VERSION_OF_CONTEXT[self.context]

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

    @property
    def context(self) -> str:
        """``window`` (the last ``seq_len`` tokens from a zero state) or ``poem`` (the state carried)."""
        return self.config.context

    @property
    def states(self) -> tuple[StateSpec, ...]:
        return state_specs(self.config)

    def interface(self) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
        """The inputs and outputs the graph of this card must have."""
        V = self.config.vocab_size
        tokens = TensorSpec(INPUT_NAME, "tensor(int64)", (None, None))
        logits = TensorSpec(OUTPUT_NAME, "tensor(float)", (None, V) if self.context == "window" else (None, None, V))
        return ((tokens, *(TensorSpec(s.input, "tensor(float)", (None, s.size)) for s in self.states)),
                (logits, *(TensorSpec(s.output, "tensor(float)", (None, s.size)) for s in self.states)))


def validation_summary(metrics: list[dict[str, Any]]) -> dict[str, Any]:
    """The best validation epoch of a run's ``metrics.jsonl`` rows (the one the weights hold), for the card."""
    rows = [r for r in metrics if isinstance(r.get("val_loss"), (int, float))]
    if not rows:
        return {}
    best = min(rows, key=lambda r: r["val_loss"])
    return {"epoch": best.get("epoch"), "val_ppl": best.get("val_ppl")}


def to_props(card: ModelCard) -> dict[str, str]:
    """The ``metadata_props`` entries for ``card``: one JSON string per key."""
    props = {
        KEY_FORMAT: FORMAT,
        KEY_GENERATION: card.version,
        KEY_CONTEXT: card.context,
        KEY_CONFIG: json.dumps(card.config.to_json_dict(), ensure_ascii=False),
        KEY_VOCAB: json.dumps(card.vocab.tokens, ensure_ascii=False),
        KEY_TOKENIZER: json.dumps({"mode": card.vocab.tokenizer, "min_freq": card.vocab.min_freq}),
        KEY_SOURCE: json.dumps(card.source, ensure_ascii=False),
    }
    if card.states:
        props[KEY_STATE] = json.dumps([{"input": s.input, "output": s.output, "size": s.size} for s in card.states])
    if card.cache:
        props[KEY_CACHE] = json.dumps(card.cache.scoring.to_json())
        if card.cache.version == 4:
            props[KEY_CACHE_WRITE] = json.dumps(card.cache.writing.to_json() if card.cache.writing else None)
    if card.config.ensemble > 1:
        props[KEY_ENSEMBLE] = str(card.config.ensemble)
    return props


def from_props(props: dict[str, str], where: str) -> ModelCard:
    """Read a card back; ``UsageError`` naming ``where`` if the entries are missing or inconsistent."""
    missing = [key for key in KEYS if key not in props]
    if len(missing) == len(KEYS):
        raise UsageError(f"{where} has no wordrnn metadata; export a run folder with python -m export.onnx")
    if missing:
        raise UsageError(f"{where} lacks the metadata {', '.join(missing)}; export it again with python -m export.onnx")
    if props[KEY_FORMAT] != FORMAT:
        raise UsageError(f"{where} has wordrnn metadata format {props[KEY_FORMAT]!r}; this version reads {FORMAT!r}")
    if props[KEY_GENERATION] not in VERSIONS:
        raise UsageError(f"{where} follows the generation contract {props[KEY_GENERATION]!r}; "
                         f"this version follows {', '.join(map(repr, VERSIONS[:-1]))} and {VERSIONS[-1]!r}")
    try:
        config = Config.from_dict(json.loads(props[KEY_CONFIG]), source=f"{where}'s {KEY_CONFIG}")
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
    check_ensemble(props, config, where)
    check_context(props, config, where)
    return ModelCard(config, vocab, source if isinstance(source, dict) else {}, read_cache(props, config, where))


def check_ensemble(props: dict[str, str], config: Config, where: str) -> None:
    """The ensemble key agrees with the configuration (a file without it holds one model)."""
    members = props.get(KEY_ENSEMBLE, "1")
    if members != str(config.ensemble) or config.ensemble < 1:
        raise UsageError(f"{where}: the metadata's {KEY_ENSEMBLE} is {members!r} but the config says ensemble "
                         f"{config.ensemble}; export it again")


def check_context(props: dict[str, str], config: Config, where: str) -> None:
    """The context key, the contract version and the state key agree with the configuration.

    A version-1 file predates the key and is a window model; a version-2 file names its context.
    """
    version = props[KEY_GENERATION]
    context = props.get(KEY_CONTEXT, "window" if version == GENERATION_V1 else None)
    if version in CACHE_VERSIONS.values():
        version = GENERATION  # the cache adds to the poem model of version 2: read_cache checks it
    if context not in CONTEXTS:
        raise UsageError(f"{where} has wordrnn metadata this version does not understand "
                         f"({KEY_CONTEXT} {props.get(KEY_CONTEXT)!r}); export it again")
    if context != config.context:
        raise UsageError(f"{where}: the metadata says {KEY_CONTEXT} {context} but the config says context "
                         f"{config.context}; export it again")
    if context == "poem" and version == GENERATION_V1:
        raise UsageError(f"{where} holds a poem model but follows {version!r}, which has no state; "
                         f"a poem model follows {GENERATION!r}: export it again")
    want = [{"input": s.input, "output": s.output, "size": s.size} for s in state_specs(config)]
    try:
        got = json.loads(props[KEY_STATE]) if KEY_STATE in props else []
    except ValueError as err:
        raise UsageError(f"{where} has unreadable wordrnn metadata ({KEY_STATE}: {err}); export it again") from None
    if got != want:
        what = f"an ensemble of {config.ensemble} " if config.ensemble > 1 else "a "
        raise UsageError(f"{where}: the metadata's {KEY_STATE} is {json.dumps(got)} but {what}{config.context} "
                         f"{config.cell} model of {config.layers} layer(s) of hidden size {config.hidden_size} "
                         f"carries {json.dumps(want)}; "
                         "export it again")


def read_cache(props: dict[str, str], config: Config, where: str) -> CacheSetup | None:
    """The neural cache a version-3 or -4 file names (None for versions 1 and 2, which have none): version 3's one
    setting serves scoring and writing; version 4 names the writing one apart (``wordrnn.cache.write``).

    Only a poem model can hold one: it recalls the hidden states of the text read so far.
    """
    version = props[KEY_GENERATION]
    cached = version in CACHE_VERSIONS.values()
    if (KEY_CACHE in props) != cached:
        raise UsageError(f"{where}: the metadata follows {version!r} but "
                         f"{'holds' if KEY_CACHE in props else 'lacks'} {KEY_CACHE}; a poem model with a neural "
                         f"cache follows {GENERATION_WRITE!r}: export it again")
    if (KEY_CACHE_WRITE in props) != (version == GENERATION_WRITE):
        raise UsageError(f"{where}: the metadata follows {version!r} but "
                         f"{'holds' if KEY_CACHE_WRITE in props else 'lacks'} {KEY_CACHE_WRITE}; a cache for "
                         f"writing follows {GENERATION_WRITE!r}: export it again")
    if not cached:
        return None
    if config.context != "poem":
        raise UsageError(f"{where} holds a {config.context} model with a neural cache, which only a poem model can "
                         "have; export it again")
    scoring = CacheSettings.from_json(_cache_json(props, KEY_CACHE, where), where)
    if version == GENERATION_CACHE:
        return CacheSetup.single(scoring)
    writing = _cache_json(props, KEY_CACHE_WRITE, where)
    return CacheSetup(scoring, None if writing is None else CacheSettings.from_json(writing, where, KEY_CACHE_WRITE))


def _cache_json(props: dict[str, str], key: str, where: str) -> Any:
    try:
        return json.loads(props[key])
    except ValueError as err:
        raise UsageError(f"{where} has unreadable wordrnn metadata ({key}: {err}); export it again") from None
