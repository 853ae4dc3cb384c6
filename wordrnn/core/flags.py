"""The command-line flags every trainer shares: same names, same defaults (docs/DESIGN.md)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from wordrnn.core.cells import CELLS
from wordrnn.core.config import CONTEXTS, MODELS, OPTIMIZERS, TOKENIZERS, Config
from wordrnn.core.errors import CommandParser
from wordrnn.core.recipes import RECIPES, recipe

_DEFAULTS = Config()
_UNSET = object()
# Shared with the commands that add these flags themselves, so every --help says the same.
TEXT_COLUMN_HELP = "CSV column holding the poems (default: %(default)s)"
TOKENIZER_HELP = ("default (the default): words, punctuation marks and line breaks as tokens; whitespace: the lab "
                  "report's lower().split()")


def seed(text: str) -> int:
    """An argparse type: a seed is 0 or a positive whole number (NumPy refuses negative seeds)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or a positive whole number, got {value}")
    return value


class SharedParser(CommandParser):
    """An ``ArgumentParser`` that also records which flags the command line gave (``given_flags``).

    ``--resume`` and ``--init-from`` compare only those with the saved run: a
    default is not a request, so it never conflicts.
    """

    def parse_known_args(self, args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        if namespace is not None:
            return super().parse_known_args(args, namespace)
        # argparse fills in a default only where the namespace has no value yet: a marker shows what was given.
        probe = argparse.Namespace(**{a.dest: _UNSET for a in self._actions if a.default is not argparse.SUPPRESS})
        parsed, rest = super().parse_known_args(args, probe)
        given = {name for name, value in vars(parsed).items() if value is not _UNSET}
        for name, value in vars(parsed).items():
            if value is _UNSET:
                setattr(parsed, name, self.get_default(name))
        if getattr(parsed, "recipe", None):  # the recipe replaces the defaults; a flag given explicitly wins
            settings = {k: v for k, v in recipe(parsed.recipe).items() if k not in given}
            for name, value in settings.items():
                setattr(parsed, name, value)
            given |= set(settings)
        parsed.given = frozenset(given)
        return parsed, rest


def given_flags(args: argparse.Namespace) -> frozenset[str] | None:
    """The destinations of the flags the command line gave, or ``None`` when the parser did not record them."""
    return getattr(args, "given", None)


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    """Flags that decide which tokens the model sees."""
    g = parser.add_argument_group("data")
    g.add_argument("--data", default=None, metavar="PATH",
                   help="corpus (.csv or .txt); default: $WORDRNN_DATA, then the user cache, then download")
    g.add_argument("--text-column", default=_DEFAULTS.text_column, help=TEXT_COLUMN_HELP)
    g.add_argument("--tokenizer", default=_DEFAULTS.tokenizer, choices=TOKENIZERS, help=TOKENIZER_HELP)
    g.add_argument("--min-freq", type=int, default=_DEFAULTS.min_freq,
                   help="words seen fewer times in training become <unk> (default: %(default)s)")
    g.add_argument("--val-fraction", type=float, default=_DEFAULTS.val_fraction,
                   help="share of poems held out for validation (default: %(default)s)")
    g.add_argument("--seq-len", type=int, default=_DEFAULTS.seq_len,
                   help="tokens in each input window (default: %(default)s)")
    g.add_argument("--seed", type=seed, default=_DEFAULTS.seed,
                   help="seeds the split, the initial weights, the batches and dropout (default: %(default)s)")


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("model")
    g.add_argument("--model", default=_DEFAULTS.model, choices=MODELS,
                   help="onehot: one-hot inputs of size V; embedding: a trainable V x E table (default: %(default)s)")
    g.add_argument("--cell", default=_DEFAULTS.cell, choices=tuple(CELLS),
                   help="recurrent cell: rnn (Elman, tanh; the lab's), lstm or gru (default: %(default)s)")
    g.add_argument("--context", default=_DEFAULTS.context, choices=CONTEXTS,
                   help="window: each window of --seq-len tokens from a zero state (the lab's); poem: whole poems "
                   "with the state carried, trained by truncated BPTT (default: %(default)s)")
    g.add_argument("--bptt", type=int, default=_DEFAULTS.bptt,
                   help="poem context: tokens per truncated-BPTT chunk (default: %(default)s)")
    g.add_argument("--hidden-size", type=int, default=_DEFAULTS.hidden_size,
                   help="RNN state size H (default: %(default)s)")
    g.add_argument("--embed-dim", type=int, default=_DEFAULTS.embed_dim,
                   help="embedding size E, embedding model only (default: %(default)s)")


def add_training_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("training")
    g.add_argument("--epochs", type=int, default=_DEFAULTS.epochs,
                   help="passes over the training windows (default: %(default)s)")
    g.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size,
                   help="windows per step (default: %(default)s)")
    g.add_argument("--lr", type=float, default=_DEFAULTS.lr, help="learning rate (default: %(default)s)")
    g.add_argument("--optimizer", default=_DEFAULTS.optimizer, choices=OPTIMIZERS, help="default: %(default)s")
    g.add_argument("--clip", type=float, default=_DEFAULTS.clip,
                   help="clip the global gradient norm to this (0: off; default: %(default)s)")
    g.add_argument("--weight-decay", type=float, default=_DEFAULTS.weight_decay,
                   help="L2 term wd * param added to the clipped gradient (default: %(default)s)")
    g.add_argument("--dropout", type=float, default=_DEFAULTS.dropout,
                   help="dropout on the embedding inputs and the last hidden state, in training (default: %(default)s)")
    g.add_argument("--patience", type=int, default=_DEFAULTS.patience,
                   help="stop after this many epochs without a better validation loss (0: never; default: %(default)s)")


def add_run_flags(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("run folder")
    g.add_argument("--out", default=None, metavar="DIR",
                   help="run folder to write (default: runs/<framework>-<model>)")
    g.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last complete epoch, to --epochs in total")
    g.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    g.add_argument("--init-from", default=None, metavar="DIR",
                   help="start from the best weights of another run folder (any framework; same vocabulary)")
    vocab = g.add_mutually_exclusive_group()
    vocab.add_argument("--vocab-from-source", dest="vocab_choice", action="store_const", const="source",
                       help="with --init-from: keep the source run's vocabulary (the default, then noted where "
                       "this corpus has other words)")
    vocab.add_argument("--new-vocab", dest="vocab_choice", action="store_const", const="new",
                       help="with --init-from: build the vocabulary from this corpus; shared words keep their weights")
    g.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    g.add_argument("--threads", type=int, default=0,
                   help="compute threads for NumPy, PyTorch and XLA (0: each library's default)")


def shared_parser(description: str, prog: str | None = None) -> argparse.ArgumentParser:
    """A parser with all shared flags; a trainer adds its own before parsing."""
    parser = SharedParser(prog=prog, description=description)
    parser.add_argument("--recipe", default=None, choices=tuple(RECIPES),
                        help="start from a recommended configuration instead of the benchmark defaults "
                        "(quality: docs/QUALITY.md); flags given explicitly override the recipe's settings")
    add_data_flags(parser)
    add_model_flags(parser)
    add_training_flags(parser)
    add_run_flags(parser)
    return parser


def data_config(args: argparse.Namespace, **settings) -> Config:
    """The validated ``Config`` of the data flags (``add_data_flags``) plus any other ``settings``."""
    return Config(
        data=args.data, text_column=args.text_column, tokenizer=args.tokenizer, min_freq=args.min_freq,
        val_fraction=args.val_fraction, seq_len=args.seq_len, seed=args.seed, **settings,
    ).validate()


def config_from_args(args: argparse.Namespace, extra: dict | None = None) -> Config:
    """The validated ``Config`` all the shared flags describe."""
    return data_config(
        args, model=args.model, cell=args.cell, context=args.context, bptt=args.bptt,
        hidden_size=args.hidden_size, embed_dim=args.embed_dim,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer, clip=args.clip,
        weight_decay=args.weight_decay, dropout=args.dropout, patience=args.patience, extra=dict(extra or {}),
    )
