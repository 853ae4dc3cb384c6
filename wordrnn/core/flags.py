"""The command-line flags every trainer shares: same names, same defaults (docs/DESIGN.md).

Each shared setting is a ``Config`` field declared with ``wordrnn.core.config.option``; its flag
is made here from the field (name, type, default, help, choices), so a new option is declared once.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence

from wordrnn.core.config import Config, field_types, flag_of, options, seed_number
from wordrnn.core.errors import CommandParser
from wordrnn.core.recipes import RECIPES, recipe
from wordrnn.core.threads import DEFAULT_THREADS

_UNSET = object()
seed = seed_number  # the argparse type of a seed, for commands with a --seed of their own


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


def add_option(group: argparse._ActionsContainer, option: dataclasses.Field, owner: type = Config) -> None:
    """The flag of one option of the dataclass ``owner``: its name, default, help and choices come from the field,
    its parsing from the field's type (``int | None`` parses as an int) unless the option names one."""
    meta, flag = option.metadata, flag_of(option.name)
    kind = field_types(owner)[option.name].kind
    if kind is bool:
        group.add_argument(flag, action=argparse.BooleanOptionalAction, default=option.default, help=meta["help"])
        return
    kind = meta["parse"] or (kind if kind in (int, float) else None)
    extra = {k: v for k, v in (("type", kind), ("choices", meta["choices"]), ("metavar", meta["metavar"])) if v}
    group.add_argument(flag, default=option.default, help=meta["help"], **extra)


def add_options(group: argparse._ActionsContainer, *names: str) -> None:
    """The flags of the ``Config`` options ``names``, for a command that takes only some of a group's."""
    fields = {f.name: f for f in options()}
    for name in names:
        add_option(group, fields[name])


def add_option_group(parser: argparse.ArgumentParser, group: str) -> None:
    """Every ``Config`` option of ``group``, in field order, under that heading."""
    g = parser.add_argument_group(group)
    for option in options(group):
        add_option(g, option)


def add_data_flags(parser: argparse.ArgumentParser) -> None:
    """Flags that decide which tokens the model sees."""
    add_option_group(parser, "data")


def add_model_flags(parser: argparse.ArgumentParser) -> None:
    add_option_group(parser, "model")


def add_training_flags(parser: argparse.ArgumentParser) -> None:
    add_option_group(parser, "training")


def add_threads_flag(parser: argparse._ActionsContainer) -> None:
    """``--threads``, the same in every command (see ``wordrnn.core.threads`` for the default)."""
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS,
                        help="compute threads for NumPy, PyTorch and XLA, the same budget for each, at most the "
                        "machine's cores (more only wait for each other; 0: each library's default; default: "
                        "%(default)s, the fastest on a busy 2-core machine: docs/PERFORMANCE.md)")


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
    add_threads_flag(g)


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
    return Config(**{f.name: getattr(args, f.name) for f in options("data")}, **settings).validate()


def config_from_args(args: argparse.Namespace, extra: dict | None = None) -> Config:
    """The validated ``Config`` of every option the parser declared (the others keep their defaults)."""
    given = {f.name: getattr(args, f.name) for f in options() if hasattr(args, f.name)}
    return Config(**given, extra=dict(extra or {})).validate()
