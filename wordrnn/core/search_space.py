"""The space ``--recipe auto`` searches, as data: each dimension a ``Config`` field, a set of choices or a range.

The search itself (Optuna, the trials, ``search.json``) is ``wordrnn.run.search``; this module only says what
may be searched, reads ``--search-space NAME=SPEC`` and refuses a range no run could be trained with. A
dimension is searched only where the base configuration can use it (no embedding settings for the one-hot
model, no weight-drop for a cell without recurrent weights) and where this wordrnn's ``Config`` has the field
(``layers``, ``ar`` and ``tar`` join the space when the configuration knows them), and never where the command
line fixes it: an explicit flag (``--hidden-size 256``) is that dimension's one value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from wordrnn.core.cells import get_cell
from wordrnn.core.config import Config, flag_of
from wordrnn.core.errors import UsageError


@dataclass(frozen=True)
class Dimension:
    """One searched setting: ``choices`` (whole numbers, tried as categories) or a range ``low`` .. ``high``
    (uniform, or uniform in the logarithm with ``log``)."""

    name: str  # the Config field
    choices: tuple[int, ...] = ()
    low: float = 0.0
    high: float = 0.0
    log: bool = False

    @property
    def categorical(self) -> bool:
        return bool(self.choices)

    def describe(self) -> str:
        if self.categorical:
            return f"{flag_of(self.name)[2:]}={','.join(map(str, self.choices))}"
        return f"{flag_of(self.name)[2:]}={self.low:g}:{self.high:g}{' (log)' if self.log else ''}"

    def to_json(self) -> dict[str, Any]:
        if self.categorical:
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high, "log": self.log}

    def holds(self, value: Any) -> bool:
        """Whether ``value`` is one of the choices or lies in the range."""
        return value in self.choices if self.categorical else self.low <= value <= self.high

    def ends(self) -> tuple[Any, ...]:
        """The values a run must be able to take for the dimension to make sense: every choice, both ends."""
        return self.choices if self.categorical else (self.low, self.high)


# The default space. Sizes: poems of the suite hold 17k-60k tokens, where H 128 / E 100 is today's recipe; one
# step either way. Dropout around the recipe's 0.5 (AWD-LSTM's 0.3-0.65); weight decay on a log scale around
# the window recipe's 1e-5 (AWD-LSTM's 1.2e-6); AR/TAR around AWD-LSTM's alpha 2, beta 1.
DIMENSIONS: tuple[Dimension, ...] = (
    Dimension("hidden_size", choices=(64, 128, 256)),
    Dimension("embed_dim", choices=(50, 100, 200)),
    Dimension("layers", choices=(1, 2)),
    Dimension("dropout_in", low=0.1, high=0.6),
    Dimension("dropout_out", low=0.1, high=0.6),
    Dimension("embed_dropout", low=0.0, high=0.3),
    Dimension("weight_drop", low=0.0, high=0.5),
    Dimension("weight_decay", low=1e-7, high=1e-4, log=True),
    Dimension("ar", low=0.0, high=3.0),
    Dimension("tar", low=0.0, high=2.0),
)
DEFAULTS = {d.name: d for d in DIMENSIONS}
# Explicit flags that fix a dimension besides its own: --dropout is the default of both input and output rates.
FIXED_ALSO = {"dropout": ("dropout_in", "dropout_out")}


def usable(name: str, base: Config) -> bool:
    """Whether the base configuration has the field and reads it (the embedding settings need the embedding
    model, weight-drop a cell with recurrent weights)."""
    if name not in {f.name for f in dataclasses.fields(Config)}:
        return False
    if base.model != "embedding" and name in ("embed_dim", "dropout_in", "embed_dropout"):
        return False
    return not (name == "weight_drop" and not get_cell(base.cell).recurrent_weights)


def fixed_by(explicit: Collection[str]) -> set[str]:
    """The dimensions the explicit flags fix."""
    fixed = set(explicit)
    for flag, names in FIXED_ALSO.items():
        if flag in explicit:
            fixed.update(names)
    return fixed


def parse_spec(text: str) -> Dimension:
    """``NAME=a,b,c`` (a dimension of whole-number choices) or ``NAME=LOW:HIGH`` (a range), ``NAME`` a dimension's
    flag name (``hidden-size``) or field name (``hidden_size``)."""
    name, sep, spec = text.partition("=")
    field = name.strip().lstrip("-").replace("-", "_")
    known = ", ".join(flag_of(d.name)[2:] for d in DIMENSIONS)
    if not sep or field not in DEFAULTS:
        raise UsageError(f"--search-space {text}: give NAME=a,b,c or NAME=LOW:HIGH with NAME one of {known}")
    default = DEFAULTS[field]
    spec = spec.strip()
    if default.categorical:
        parts = [p.strip() for p in spec.split(",") if p.strip()]
        if not parts:
            raise UsageError(f"--search-space {text}: the list of choices is empty; give whole numbers such as "
                             f"{default.describe()}")
        try:
            choices = tuple(sorted(set(int(p) for p in parts)))
        except ValueError:
            raise UsageError(f"--search-space {text}: {flag_of(field)} takes whole numbers, such as "
                             f"{default.describe()}") from None
        return dataclasses.replace(default, choices=choices)
    low, colon, high = spec.partition(":")
    try:
        lo, hi = float(low), float(high)
    except ValueError:
        raise UsageError(f"--search-space {text}: {flag_of(field)} takes a range LOW:HIGH, such as "
                         f"{default.describe()}") from None
    if not colon or not lo <= hi:
        raise UsageError(f"--search-space {text}: the range is empty (LOW must not exceed HIGH); give it as "
                         f"LOW:HIGH, such as {default.describe()}")
    if default.log and lo <= 0:
        raise UsageError(f"--search-space {text}: {flag_of(field)} is searched on a log scale, so both ends must "
                         f"be positive, such as {default.describe()}; fix it at 0 with {flag_of(field)} 0 instead")
    return dataclasses.replace(default, low=lo, high=hi)


@dataclass(frozen=True)
class SearchSpace:
    """The dimensions a search tries, and the settings fixed for it (the base configuration's values)."""

    dimensions: tuple[Dimension, ...]
    fixed: tuple[str, ...] = ()  # the dimensions an explicit flag fixes, at the base configuration's value

    def to_json(self) -> dict[str, Any]:
        return {d.name: d.to_json() for d in self.dimensions}

    def describe(self) -> str:
        return ", ".join(d.describe() for d in self.dimensions)

    def describe_fixed(self, base: Config) -> str:
        """``; fixed by the command line: hidden-size 256`` (nothing when no flag fixes a dimension)."""
        if not self.fixed:
            return ""
        return "; fixed by the command line: " + ", ".join(f"{flag_of(n)[2:]} {value_of(base, n)}" for n in self.fixed)

    def fixed_values(self, base: Config) -> dict[str, Any]:
        return {n: value_of(base, n) for n in self.fixed}

    def base_point(self, base: Config) -> dict[str, Any]:
        """The base configuration's own value of each dimension that holds it: the search's first trial, so that
        the recipe it starts from is always among the candidates."""
        return {d.name: value_of(base, d.name) for d in self.dimensions if d.holds(value_of(base, d.name))}


def value_of(base: Config, name: str) -> Any:
    """The value a run of ``base`` trains with for the dimension ``name`` (the dropout rates default to
    ``--dropout``)."""
    rates = {"dropout_in": "input", "dropout_out": "hidden"}
    return base.rate(rates[name]) if name in rates else getattr(base, name)


def build_space(base: Config, explicit: Collection[str], specs: Iterable[str] = ()) -> SearchSpace:
    """The space for ``base``: the defaults, with the ``--search-space`` ``specs`` replacing theirs, less what
    ``base`` cannot use and what the ``explicit`` flags fix. A spec for a dimension that a flag fixes, or that
    ``base`` cannot use, is refused (it would be ignored), as is a spec whose values no run could take."""
    given = {}
    for text in specs:
        dim = parse_spec(text)
        if dim.name in given:
            raise UsageError(f"--search-space names {flag_of(dim.name)[2:]} twice; give it once")
        given[dim.name] = dim
    fixed = fixed_by(explicit)
    for name, dim in given.items():
        if name in fixed:
            raise UsageError(f"--search-space {dim.describe()} searches {flag_of(name)}, which the command line "
                             "fixes; drop one of the two")
        if not usable(name, base):
            raise UsageError(f"--search-space {dim.describe()}: this run cannot use {flag_of(name)} (--model "
                             f"{base.model}, --cell {base.cell}); drop it")
        for value in dim.ends():
            try:
                dataclasses.replace(base, **{name: value}).validate()
            except UsageError as err:
                raise UsageError(f"--search-space {dim.describe()} is impossible: {err}") from None
    dims = tuple(given.get(d.name, d) for d in DIMENSIONS if usable(d.name, base) and d.name not in fixed)
    if not dims:
        raise UsageError("--recipe auto has nothing to search: the command line fixes every dimension of its "
                         "space; drop one of those flags, or use --recipe quality")
    held = tuple(d.name for d in DIMENSIONS if usable(d.name, base) and d.name in fixed)
    return SearchSpace(dims, held)
