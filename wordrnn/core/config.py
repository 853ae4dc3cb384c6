"""The configuration every trainer shares, validated in one place.

One flat dataclass holds the model, data and training settings; its defaults
are the benchmark configuration of docs/DESIGN.md. It is written to
``config.json`` in every run folder and read back by any framework.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wordrnn.core.cells import CELLS, get_cell
from wordrnn.core.errors import UsageError
from wordrnn.core.layout import LAYOUTS, Layout, layout_of
from wordrnn.core.optimizers import OPTIMIZERS as _OPTIMIZERS

MODELS = ("onehot", "embedding")
CONTEXTS = tuple(LAYOUTS)
OPTIMIZERS = tuple(_OPTIMIZERS)
TOKENIZERS = ("default", "whitespace")
# The compute precisions a trainer offers (docs/PERFORMANCE.md, "bfloat16"): float32 everywhere, or mixed precision
# with bfloat16 products and activations. float16 is not offered: see ``precision_name``.
PRECISIONS = ("float32", "bfloat16")

# The newest version of the config.json format this code reads and writes. A field added in version N is marked
# ``since(N)``: a config.json of an earlier version lacks it and reads the field's default, which
# must therefore be the value that reproduces the earlier behaviour (``to_json_dict`` writes the lowest version
# that knows every setting a run uses).
FORMAT_VERSION = 4


# The largest training seed: NumPy takes any whole number >= 0, but torch.manual_seed and JAX's PRNG keys take
# a signed 64-bit integer, so one rule for every framework stops there (an ensemble's members use seed + k).
SEED_MAX = 2**63 - 1
SEED_RULE = "a whole number from 0 to 2**63 - 1, the range NumPy, PyTorch and JAX all accept"


def seed_number(text: str) -> int:
    """The argparse type of a training seed: ``SEED_RULE``."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {SEED_RULE}, got {text!r}") from None
    if not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"must be {SEED_RULE}, got {value}")
    return value


def precision_name(text: str) -> str:
    """The argparse type of ``--precision``: one of ``PRECISIONS``, float16 refused with the reason."""
    if text in ("float16", "fp16", "half"):
        raise argparse.ArgumentTypeError(
            f"{text} is not offered: its 5-bit exponent underflows small gradients to zero unless the loss is "
            "scaled, which no trainer here does; use bfloat16 (float32's range, fewer mantissa bits) or float32")
    return text


def option(default: Any, help: str, *, group: str, choices: tuple[str, ...] | None = None,
           parse: Callable[[str], Any] | None = None, metavar: str | None = None, resumable: bool = False,
           adopted: bool = False, since: int = 1) -> Any:
    """A setting that is also a shared command-line flag, ``--name-with-dashes``.

    Everything the flag, the resume check and ``--init-from`` need is here, so a new option is this
    field plus the code that uses it: ``help`` (argparse's, ``%(default)s`` allowed) and ``choices``
    for the flag, ``group`` (``data``, ``model`` or ``training``: which ``add_*_flags`` declares it),
    ``parse`` (an argparse type; default: the field's type; a ``bool`` is ``--name``/``--no-name``);
    ``resumable``: ``--resume`` may change it (every other setting is the run's own);
    ``adopted``: an ``--init-from`` run decides it (its weights and vocabulary only fit that value);
    ``since``: the config.json format version that added it (see ``FORMAT_VERSION``).
    """
    meta = {"since": since, "help": help, "group": group, "choices": choices, "parse": parse, "metavar": metavar,
            "resumable": resumable, "adopted": adopted}
    return field(default=default, metadata=meta)


def since(version: int, default: Any, **flag: Any) -> Any:
    """A field added in format ``version``, whose ``default`` reproduces what earlier versions did; with
    ``flag`` (``option``'s keywords, ``help`` and ``group`` among them) it is also a flag."""
    if not flag:
        return field(default=default, metadata={"since": version})
    return option(default, since=version, **flag)


def _cells_named() -> str:
    """Every cell of the registry with its summary, for the --cell help: a new cell is listed without an edit here."""
    named = [f"{cell.name} ({cell.summary})" for cell in CELLS.values()]
    return f"{', '.join(named[:-1])} or {named[-1]}"


@dataclass
class Config:
    # model (the flags of a group come in field order: seq_len and seed are data flags)
    model: str = option("embedding", "onehot: one-hot inputs of size V; embedding: a trainable V x E table "
                        "(default: %(default)s)", group="model", choices=MODELS, adopted=True)
    cell: str = option("rnn", f"recurrent cell: {_cells_named()} (default: %(default)s)", group="model",
                       choices=tuple(CELLS), adopted=True)
    # window: h0 = 0 per window, last step only; poem: state carried
    context: str = since(2, "window", group="model", choices=CONTEXTS,
                         help="window: each window of --seq-len tokens from a zero state (the lab's); poem: whole "
                         "poems with the state carried, trained by truncated BPTT (default: %(default)s)")
    bptt: int = since(2, 35, group="model", help="poem context: tokens per truncated-BPTT chunk (default: %(default)s)")
    hidden_size: int = option(128, "RNN state size H (default: %(default)s)", group="model", adopted=True)
    tie: bool = since(3, False, group="model", adopted=True,
                      help="tie the output layer to the embedding table (embedding model only): out.weight is "
                      "the embedding, times a projection out.proj [E, H] where E differs from H (Press and Wolf "
                      "2017; default: untied)")
    # Stacked layers (docs/DESIGN.md): layer l >= 1 reads layer l - 1's output through a locked dropout.
    layers: int = since(4, 1, group="model", adopted=True,
                        help="recurrent layers stacked, each reading the one below; the output layer reads the "
                        "last (default: %(default)s)")
    embed_dim: int = option(100, "embedding size E, embedding model only (default: %(default)s)", group="model",
                            adopted=True)
    # data
    data: str | None = option(None, "corpus (.csv or .txt); default: $WORDRNN_DATA, then the user cache, then "
                              "download", group="data", metavar="PATH")
    text_column: str = option("text", "CSV column holding the poems (default: %(default)s)", group="data")
    tokenizer: str = option("default", "default (the default): words, punctuation marks and line breaks as tokens; "
                            "whitespace: the lab report's lower().split()", group="data", choices=TOKENIZERS,
                            adopted=True)
    min_freq: int = option(2, "words seen fewer times in training become <unk> (default: %(default)s)",
                           group="data", adopted=True)
    val_fraction: float = option(0.1, "share of poems held out for validation (default: %(default)s)", group="data")
    seq_len: int = option(5, "tokens in each input window (default: %(default)s)", group="data")
    seed: int = option(0, "seeds the split, the initial weights, the batches and dropout: 0 to 2**63 - 1, the "
                       "range NumPy, PyTorch and JAX all accept (default: %(default)s)", group="data",
                       parse=seed_number)
    # training
    epochs: int = option(10, "passes over the training windows (default: %(default)s)", group="training",
                         resumable=True)
    batch_size: int = option(64, "windows per step (default: %(default)s)", group="training")
    lr: float = option(1e-3, "learning rate (default: %(default)s)", group="training")
    optimizer: str = option("adam", "default: %(default)s", group="training", choices=OPTIMIZERS)
    clip: float = option(5.0, "clip the global gradient norm to this (0: off; default: %(default)s)",
                         group="training")
    weight_decay: float = option(0.0, "L2 term wd * param added to the clipped gradient (default: %(default)s)",
                                 group="training")
    dropout: float = option(0.0, "dropout on the embedding inputs and the last hidden state, in training "
                            "(default: %(default)s)", group="training")
    # The regularizers of AWD-LSTM (Merity et al. 2018); each defaults to off, as before format 3.
    dropout_in: float | None = since(3, None, group="training", parse=float, metavar="P",
                                     help="dropout on the cell's input vectors (embedding model), locked per "
                                     "stream in the poem context (default: --dropout)")
    dropout_out: float | None = since(3, None, group="training", parse=float, metavar="P",
                                      help="dropout on the hidden state the output layer reads, locked per stream "
                                      "in the poem context (default: --dropout)")
    embed_dropout: float = since(3, 0.0, group="training",
                                 help="drop whole words: each row of the embedding table is zeroed with this "
                                 "probability for a whole step, everywhere the word occurs (embedding model; "
                                 "default: %(default)s)")
    weight_drop: float = since(3, 0.0, group="training",
                               help="DropConnect on the recurrent weights rnn.w_hh, one mask per step "
                               "(default: %(default)s)")
    dropout_between: float | None = since(4, None, group="training", parse=float, metavar="P",
                                          help="dropout on each layer's output where the next layer reads it, "
                                          "locked like --dropout-in (needs --layers 2 or more; default: "
                                          "--dropout)")
    # Activation regularization (Merity et al. 2018): penalties on the last layer's output at scored positions.
    ar: float = since(4, 0.0, group="training", metavar="ALPHA",
                      help="activation regularization: ALPHA * mean of the squared dropped output of the last "
                      "layer (AWD-LSTM: 2; default: %(default)s, off)")
    tar: float = since(4, 0.0, group="training", metavar="BETA",
                       help="temporal activation regularization: BETA * mean of the squared change of the last "
                       "layer's output from one position to the next within a poem (AWD-LSTM: 1; default: "
                       "%(default)s, off)")
    patience: int = option(0, "stop after this many epochs without a better validation loss (0: never; default: "
                           "%(default)s)", group="training", resumable=True)
    # N > 1: N members, member k trained from seed + k on the same split and vocabulary, their probabilities
    # averaged (docs/DESIGN.md, "Ensembles")
    ensemble: int = since(3, 1, group="training", parse=int,
                          help="train this many models, member k from --seed + k, and average their probabilities "
                          "(default: %(default)s, a single model)")
    # AWD-LSTM's optimizer and chunking (Merity et al. 2018): when NT-ASGD starts averaging, variable-length BPTT.
    nonmono: int = since(4, 5, group="training", parse=int, metavar="N",
                         help="--optimizer ntasgd: SGD until the validation loss is worse than the best of those "
                         "evaluated more than N epochs before, then the weights averaged from that step on "
                         "(AWD-LSTM's rule; default: %(default)s)")
    bptt_jitter: bool = since(4, False, group="training",
                              help="poem context: draw each chunk's length as AWD-LSTM does (--bptt with "
                              "probability 0.95, else half; then normal with standard deviation 5, at least 5 "
                              "tokens) and scale the step's learning rate by length / --bptt (default: off)")
    # Mixed precision (format 4): weights, optimizer state, the softmax and the loss stay float32; products and
    # activations are bfloat16 (torch autocast, a JAX compute dtype). A run's own: --resume keeps it.
    precision: str = since(4, "float32", group="training", choices=PRECISIONS, parse=precision_name,
                           help="float32, or bfloat16: products and activations in bfloat16, weights, optimizer "
                           "state, softmax and loss in float32 (PyTorch and JAX; the NumPy reference is "
                           "float32/float64; float16 is not offered; default: %(default)s)")
    # filled in when the data is read; not a flag
    vocab_size: int = field(default=0, metadata={"derived": True})
    # framework-specific settings (device, compile, accelerator...), recorded as given
    extra: dict[str, Any] = field(default_factory=dict, metadata={"resumable": True})

    def validate(self) -> Config:
        """Raise ``UsageError`` naming the first setting that makes no sense."""
        if self.model not in MODELS:
            raise UsageError(f"unknown --model {self.model!r}; choose one of {', '.join(MODELS)}")
        if self.cell not in CELLS:
            raise UsageError(f"unknown --cell {self.cell!r}; choose one of {', '.join(CELLS)}")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(
                f"unknown --optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}"
            )
        if self.context not in CONTEXTS:
            raise UsageError(f"unknown --context {self.context!r}; choose one of {', '.join(CONTEXTS)}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown --precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.tokenizer not in TOKENIZERS:
            raise UsageError(
                f"unknown --tokenizer {self.tokenizer!r}; choose one of {', '.join(TOKENIZERS)}"
            )
        for name in ("seq_len", "bptt", "hidden_size", "embed_dim", "batch_size", "epochs", "min_freq", "layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise UsageError(f"{flag_of(name)} must be a positive whole number, got {value!r}")
        if not isinstance(self.ensemble, int) or isinstance(self.ensemble, bool) or self.ensemble <= 0:
            raise UsageError(f"--ensemble must be a positive whole number of members, got {self.ensemble!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or not 0 <= self.seed <= SEED_MAX:
            raise UsageError(f"--seed must be {SEED_RULE}, got {self.seed!r}")
        if self.seed + self.ensemble - 1 > SEED_MAX:
            raise UsageError(f"--seed {self.seed} with --ensemble {self.ensemble} gives its last member seed "
                             f"{self.seed + self.ensemble - 1}, past 2**63 - 1 (member k trains from seed + k); "
                             f"give a seed up to {SEED_MAX - self.ensemble + 1}")
        if self.patience < 0:
            raise UsageError(f"--patience must be 0 (off) or a positive number of epochs, got {self.patience}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UsageError(f"--lr must be a positive number, got {self.lr}")
        if not (0.0 < self.val_fraction < 1.0):
            raise UsageError(f"--val-fraction must lie strictly between 0 and 1, got {self.val_fraction}")
        if not (math.isfinite(self.clip) and self.clip >= 0):
            raise UsageError(f"--clip must be 0 (off) or a positive number, got {self.clip}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise UsageError(f"--weight-decay must be 0 or positive, got {self.weight_decay}")
        for name in ("ar", "tar"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise UsageError(f"{flag_of(name)} must be 0 (off) or a positive weight, got {value}")
        if self.dropout_between is not None and self.layers == 1:
            raise UsageError(f"--dropout-between {self.dropout_between} drops what one layer hands the next, and "
                             "this model has one layer: add --layers 2 or more, or leave it out")
        for name in ("dropout", "dropout_in", "dropout_out", "dropout_between", "embed_dropout", "weight_drop"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and 0.0 <= value < 1.0):
                raise UsageError(f"{flag_of(name)} must lie in [0, 1), got {value}")
        if self.model == "onehot" and self.tie:
            raise UsageError("--tie shares the embedding table with the output layer, and the one-hot model has "
                             "none: use --model embedding, or leave --tie out")
        if self.model == "onehot" and (self.embed_dropout or self.dropout_in):
            flag = "--embed-dropout" if self.embed_dropout else "--dropout-in"
            raise UsageError(f"{flag} drops embedding inputs, and the one-hot model has none: "
                             "use --model embedding, or leave it at 0")
        if self.weight_drop and not get_cell(self.cell).recurrent_weights:
            raise UsageError(f"--weight-drop drops recurrent weights, and the {self.cell} cell has none: "
                             "choose another cell, or leave it at 0")
        if not isinstance(self.nonmono, int) or isinstance(self.nonmono, bool) or self.nonmono <= 0:
            raise UsageError(f"--nonmono must be a positive whole number of evaluations, got {self.nonmono!r}: "
                             "NT-ASGD compares the latest validation loss with the best of those more than N "
                             "evaluations before it, so 1 is the shortest wait")
        if self.bptt_jitter and not self.layout.carries_state:
            raise UsageError("--bptt-jitter varies the length of the poem context's chunks, and this run reads "
                             "windows of --seq-len (--context window), which have no chunks to vary: add "
                             "--context poem, or drop --bptt-jitter")
        return self

    def lr_scale(self, length: int) -> float:
        """What the learning rate of a step on a chunk of ``length`` tokens is multiplied by: ``length / --bptt``
        with ``--bptt-jitter`` (AWD-LSTM: a short chunk takes a short step), else 1."""
        return length / self.bptt if self.bptt_jitter else 1.0

    def step_lr(self, length: int) -> float:
        """The learning rate of a step on a chunk of ``length`` tokens (``lr_scale``)."""
        return self.lr * self.lr_scale(length)

    def rate(self, mask: str) -> float:
        """The drop rate of one dropout mask (``wordrnn.core.dropout``): ``input``, ``hidden`` and ``between``
        default to ``--dropout``; ``embed`` and ``recurrent`` are their own."""
        return {"input": self.dropout if self.dropout_in is None else self.dropout_in,
                "hidden": self.dropout if self.dropout_out is None else self.dropout_out,
                "between": self.dropout if self.dropout_between is None else self.dropout_between,
                "embed": self.embed_dropout, "recurrent": self.weight_drop}[mask]

    @property
    def layout(self) -> Layout:
        """How the context lays the corpus out for the one model function (``wordrnn.core.layout``)."""
        return layout_of(self.context)

    @property
    def state_size(self) -> int:
        """Width of one model's state h (and c): its layers' states side by side, L * H."""
        return self.layers * self.hidden_size

    @property
    def input_size(self) -> int:
        """Width of the vectors fed to the RNN: V for one-hot, E for embedding."""
        return self.vocab_size if self.model == "onehot" else self.embed_dim

    def dataset_args(self) -> dict[str, Any]:
        """The settings ``data.dataset.load_dataset`` takes, as keyword arguments (``data`` knows no Config)."""
        return {"data": self.data, "text_column": self.text_column, "tokenizer": self.tokenizer,
                "min_freq": self.min_freq, "val_fraction": self.val_fraction, "seed": self.seed,
                "seq_len": self.seq_len}

    def member(self, k: int) -> Config:
        """Member ``k`` of an ensemble: a single model of these settings trained from seed ``seed + k``.

        Only the seed of its weights, batches and dropout masks differs: every member reads the split and
        vocabulary of the ensemble's own seed (the loop hands it the ensemble's dataset).
        """
        return dataclasses.replace(self, seed=self.seed + k, ensemble=1, extra=dict(self.extra))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json_dict(self) -> dict[str, Any]:
        """What config.json holds: every setting and the format version it needs.

        The version is the lowest that knows every setting this run changes from its default (never below 2,
        the first that recorded one): a run that uses nothing newer stays readable by the wordrnn that could
        train it (an exported window file by an earlier client), while one that does is refused by it, naming
        both versions, instead of being read without the setting.
        """
        needed = [f.metadata.get("since", 1) for f in dataclasses.fields(self)
                  if f.name != "extra" and getattr(self, f.name) != f.default]
        return {"format_version": max([2, *needed]), **self.to_dict()}

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "config.json") -> Config:
        """Read a config back, from this format version or an earlier one.

        A setting added after the file's version takes its old-behaviour default (``since``); a setting
        the file's version had must be there with its type; a file of a newer version is refused. Keys
        this version does not know (the framework, library versions) are ignored. ``source`` names the
        file in error messages.
        """
        if not isinstance(values, dict):
            raise UsageError(f"{source} holds {type(values).__name__}, not an object of settings; "
                             "the run folder is damaged, train it again")
        version = values.get("format_version", 1)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise UsageError(f"{source}: format_version is {version!r}, not a version number; "
                             "the file was edited or damaged: restore it or train the run again")
        if version > FORMAT_VERSION:
            raise UsageError(f"{source} is format version {version}, written by a newer wordrnn; this one reads "
                             f"versions up to {FORMAT_VERSION}: upgrade wordrnn to use the run")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        missing = [name for name, f in fields.items()
                   if name not in values and name != "extra" and f.metadata.get("since", 1) <= version]
        if missing:
            raise UsageError(f"{source} lacks {', '.join(missing)}, which format version {version} always "
                             "records; the file was edited or damaged: restore it or train the run again")
        for name, value in values.items():
            if name in fields:
                _check_saved(fields[name], value, source)
        return _checked(cls(**{k: v for k, v in values.items() if k in fields}), source)


def check_saved_settings(values: dict[str, Any], source: str) -> None:
    """Settings a file other than config.json records (vocab.json's tokenizer and min_freq), checked as the flags
    that set them are: their type and choices, then ``Config.validate``'s ranges."""
    fields = {f.name: f for f in dataclasses.fields(Config)}
    for name, value in values.items():
        _check_saved(fields[name], value, source)
    _checked(dataclasses.replace(Config(), **values), source)


def _checked(config: Config, source: str) -> Config:
    """``config`` read from ``source``, refused where the flags would refuse it: no run was trained with it."""
    try:
        return config.validate()
    except UsageError as err:
        raise UsageError(f"{source} holds a setting no run can have been trained with ({err}); the file was edited "
                         "or damaged: restore it or train the run again") from None


@dataclass(frozen=True)
class FieldType:
    """A setting's type as its flag parses it and its config.json value must hold it: one of the types JSON
    has, and whether ``None`` (null) is allowed."""

    kind: type  # bool, int, float, str or dict
    nullable: bool = False

    def describe(self) -> str:
        """The type in words, for an error message: ``a whole number``, ``a number or null``."""
        words = {bool: "true or false", int: "a whole number", float: "a number", str: "text",
                 dict: "an object"}[self.kind]
        return f"{words} or null" if self.nullable else words

    def accepts(self, value: Any) -> bool:
        """Whether ``value`` (read from JSON) has this type; a float field takes a whole number too."""
        if value is None:
            return self.nullable
        if isinstance(value, bool) or self.kind is bool:  # bool is an int to isinstance
            return isinstance(value, bool) and self.kind is bool
        return isinstance(value, (int, float) if self.kind is float else self.kind)


@functools.cache
def field_types(cls: type) -> dict[str, FieldType]:
    """The ``FieldType`` of every field of the dataclass ``cls``, read from its resolved type hints (under
    ``from __future__ import annotations`` a field's ``type`` is only the annotation's text)."""
    hints = typing.get_type_hints(cls)
    return {f.name: _field_type(hints[f.name]) for f in dataclasses.fields(cls)}


def _field_type(hint: Any) -> FieldType:
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return FieldType(_field_type(inner).kind, nullable=True)
    kind = typing.get_origin(hint) or hint  # dict[str, Any] is saved as an object
    if kind not in (bool, int, float, str, dict):
        raise TypeError(f"a config field of type {hint} has no JSON form")
    return FieldType(kind)


_FIELD_TYPES = field_types(Config)


def _check_saved(f: dataclasses.Field, value: Any, source: str) -> None:
    """A config.json value must have its field's type and, for a field with choices, be one of them."""
    kind = _FIELD_TYPES[f.name]
    if not kind.accepts(value):
        raise UsageError(f"{source}: {f.name} is {value!r}, which is not {kind.describe()}; "
                         "the file was edited or damaged: restore it or train the run again")
    choices = f.metadata.get("choices")
    if choices and value not in choices:
        raise UsageError(f"{source}: {f.name} is {value!r}, which this wordrnn does not know (it knows "
                         f"{', '.join(choices)}): the run was written by a newer wordrnn or edited; "
                         "upgrade wordrnn or restore the file")


def flag_of(name: str) -> str:
    """The command-line flag of the ``Config`` field ``name``: ``seq_len`` -> ``--seq-len``."""
    return "--" + name.replace("_", "-")


def marked(mark: str) -> tuple[str, ...]:
    """The names of the ``Config`` fields whose metadata sets ``mark`` (``resumable``, ``adopted``,
    ``derived``: filled in by the code, never compared with a request), in field order."""
    return tuple(f.name for f in dataclasses.fields(Config) if f.metadata.get(mark))


def options(group: str | None = None) -> list[dataclasses.Field]:
    """The fields that are shared flags (``option``), in field order; of one ``group`` if given."""
    return [f for f in dataclasses.fields(Config)
            if "help" in f.metadata and (group is None or f.metadata["group"] == group)]
