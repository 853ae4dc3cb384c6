"""The command-line flags every trainer shares: same names, same defaults (docs/DESIGN.md).

Each shared setting is a ``Config`` field declared with ``wordrnn.core.config.option``; its flag
is made here from the field (name, type, default, help, choices), so a new option is declared once.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence

from wordrnn.core.config import Config, field_types, flag_of, options, seed_number
from wordrnn.core.errors import CommandParser, UsageError
from wordrnn.core.recipes import RECIPES, SEARCHED, recipe
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
        parsed.explicit = frozenset(given)  # what the command line itself gave, before the recipe adds its own
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


def explicit_flags(args: argparse.Namespace) -> frozenset[str]:
    """The destinations of the flags typed on the command line, without the settings a recipe added."""
    return getattr(args, "explicit", frozenset())


SEARCH_FLAGS = ("search_trials", "search_epochs", "search_space")


def add_search_flags(parser: argparse.ArgumentParser) -> None:
    """The budget and space of ``--recipe auto``'s search (``wordrnn.run.search``, docs/QUALITY.md)."""
    g = parser.add_argument_group("search (--recipe auto)")
    g.add_argument("--search-trials", type=int, default=12, metavar="N",
                   help="configurations tried, each a short training run scored by its best validation loss "
                   "(default: %(default)s; --resume may raise it)")
    g.add_argument("--search-epochs", type=int, default=4, metavar="N",
                   help="epochs of each trial at most; a trial worse than the median of earlier trials after "
                   "the same epoch is stopped there (default: %(default)s)")
    g.add_argument("--search-space", nargs="+", default=[], metavar="NAME=SPEC",
                   help="replace dimensions' ranges: NAME=a,b,c (hidden-size, embed-dim, layers) or NAME=LOW:HIGH "
                   "(dropout-in, dropout-out, embed-dropout, weight-drop, weight-decay, ar, tar), several after one "
                   "flag (--search-space hidden-size=128,256 dropout-out=0.3:0.6). "
                   "An explicit flag such as --hidden-size 256 fixes its dimension instead (--dropout fixes both "
                   "dropout-in and dropout-out)")


def check_search_flags(args: argparse.Namespace) -> None:
    """The search flags mean something only with a recipe that searches: given without one, they are refused."""
    if args.recipe in SEARCHED:
        if args.search_trials < 1 or args.search_epochs < 1:
            raise UsageError(f"--search-trials and --search-epochs must be at least 1, got {args.search_trials} "
                             f"and {args.search_epochs}")
        return
    named = [f"--{name.replace('_', '-')}" for name in SEARCH_FLAGS if name in explicit_flags(args)]
    if named:
        raise UsageError(f"{', '.join(named)} set the search of --recipe auto, and this run does not search; "
                         "add --recipe auto, or drop them")


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
                        "(quality: docs/QUALITY.md; auto: quality's settings, then a search of size, depth, dropout, "
                        "weight decay and AR/TAR on the run's validation poems); flags given explicitly override the "
                        "recipe's settings, and fix that dimension of auto's search")
    add_data_flags(parser)
    add_model_flags(parser)
    add_training_flags(parser)
    add_run_flags(parser)
    add_search_flags(parser)
    return parser


def data_config(args: argparse.Namespace, **settings) -> Config:
    """The validated ``Config`` of the data flags (``add_data_flags``) plus any other ``settings``."""
    return Config(**{f.name: getattr(args, f.name) for f in options("data")}, **settings).validate()


def config_from_args(args: argparse.Namespace, extra: dict | None = None) -> Config:
    """The validated ``Config`` of every option the parser declared (the others keep their defaults)."""
    given = {f.name: getattr(args, f.name) for f in options() if hasattr(args, f.name)}
    return Config(**given, extra=dict(extra or {})).validate()
