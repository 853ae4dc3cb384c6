"""The configuration every trainer shares, validated in one place.

One flat dataclass holds the model, data and training settings; its defaults
are the benchmark configuration of docs/DESIGN.md. It is written to
``config.json`` in every run folder and read back by any framework.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from wordrnn.core.cells import CELLS
from wordrnn.core.errors import UsageError
from wordrnn.core.optimizers import OPTIMIZERS as _OPTIMIZERS

MODELS = ("onehot", "embedding")
CONTEXTS = ("window", "poem")
OPTIMIZERS = tuple(_OPTIMIZERS)
TOKENIZERS = ("default", "whitespace")

# The version of the config.json format this code writes. A field added in version N is marked
# ``since(N)``: a config.json of an earlier version lacks it and reads the field's default, which
# must therefore be the value that reproduces the earlier behaviour.
FORMAT_VERSION = 2


def since(version: int, default: Any) -> Any:
    """A field added in format ``version``, whose ``default`` reproduces what earlier versions did."""
    return field(default=default, metadata={"since": version})


@dataclass
class Config:
    # model
    model: str = "embedding"
    cell: str = "rnn"
    seq_len: int = 5
    context: str = since(2, "window")  # window: h0 = 0 per window, last step only; poem: state carried
    bptt: int = since(2, 35)  # poem context: tokens per truncated-BPTT chunk
    hidden_size: int = 128
    embed_dim: int = 100
    # data
    data: str | None = None
    text_column: str = "text"
    tokenizer: str = "default"
    min_freq: int = 2
    val_fraction: float = 0.1
    # training
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    clip: float = 5.0
    weight_decay: float = 0.0
    dropout: float = 0.0
    patience: int = 0
    seed: int = 0
    # filled in when the data is read; not a flag
    vocab_size: int = 0
    # framework-specific settings (device, compile, accelerator...), recorded as given
    extra: dict[str, Any] = field(default_factory=dict)

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
        if self.tokenizer not in TOKENIZERS:
            raise UsageError(
                f"unknown --tokenizer {self.tokenizer!r}; choose one of {', '.join(TOKENIZERS)}"
            )
        for name in ("seq_len", "bptt", "hidden_size", "embed_dim", "batch_size", "epochs", "min_freq"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                flag = "--" + name.replace("_", "-")
                raise UsageError(f"{flag} must be a positive whole number, got {value!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise UsageError(f"--seed must be 0 or a positive whole number, got {self.seed!r}")
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
        if not (0.0 <= self.dropout < 1.0):
            raise UsageError(f"--dropout must lie in [0, 1), got {self.dropout}")
        return self

    @property
    def input_size(self) -> int:
        """Width of the vectors fed to the RNN: V for one-hot, E for embedding."""
        return self.vocab_size if self.model == "onehot" else self.embed_dim

    def dataset_args(self) -> dict[str, Any]:
        """The settings ``data.dataset.load_dataset`` takes, as keyword arguments (``data`` knows no Config)."""
        return {"data": self.data, "text_column": self.text_column, "tokenizer": self.tokenizer,
                "min_freq": self.min_freq, "val_fraction": self.val_fraction, "seed": self.seed,
                "seq_len": self.seq_len}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json_dict(self) -> dict[str, Any]:
        """What config.json holds: every setting and the format version."""
        return {"format_version": FORMAT_VERSION, **self.to_dict()}

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
        for name in fields:
            if name in values and not _has_type(values[name], _FIELD_TYPES[name]):
                raise UsageError(f"{source}: {name} is {values[name]!r}, which is not {_FIELD_TYPES[name]}; "
                                 "the file was edited or damaged: restore it or train the run again")
        return cls(**{k: v for k, v in values.items() if k in fields})


# What each config.json field must hold (a float field accepts a whole number too).
_FIELD_TYPES = {f.name: {"int": "a whole number", "float": "a number", "str": "text", "bool": "true or false",
                         "str | None": "text or null", "dict[str, Any]": "an object"}[f.type]
                for f in dataclasses.fields(Config)}


def _has_type(value: Any, kind: str) -> bool:
    if kind == "true or false":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    return {"a whole number": isinstance(value, int),
            "a number": isinstance(value, (int, float)),
            "text": isinstance(value, str),
            "text or null": value is None or isinstance(value, str),
            "an object": isinstance(value, dict)}[kind]
