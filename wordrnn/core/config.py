"""The configuration every trainer shares, validated in one place.

One flat dataclass holds the model, data and training settings; its defaults
are the benchmark configuration of DESIGN.md. It is written to
``config.json`` in every run folder and read back by any framework.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from wordrnn.core.cells import CELLS
from wordrnn.core.errors import UsageError

MODELS = ("onehot", "embedding")
OPTIMIZERS = ("adam", "sgd")
TOKENIZERS = ("default", "whitespace")


@dataclass
class Config:
    # model
    model: str = "embedding"
    cell: str = "rnn"
    seq_len: int = 5
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
        if self.tokenizer not in TOKENIZERS:
            raise UsageError(
                f"unknown --tokenizer {self.tokenizer!r}; choose one of {', '.join(TOKENIZERS)}"
            )
        for name in ("seq_len", "hidden_size", "embed_dim", "batch_size", "epochs", "min_freq"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                flag = "--" + name.replace("_", "-")
                raise UsageError(f"{flag} must be a positive whole number, got {value!r}")
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """Read a config back, ignoring keys this version does not know."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
