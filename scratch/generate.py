"""``python -m scratch.generate``: verse from any run folder, computed by the NumPy reference.

Reads a run folder written by any framework (``wordrnn.run.folder.load_run`` checks it is complete and that the
weights match vocab.json) the way every client reads the file ``python -m export.onnx`` writes from it, as the
run says (docs/GENERATION.md, "How each runtime reads a model"):

- a window run: the logits after the last ``seq_len`` tokens, each window read from a zero state
  (``scratch.sequence.forward`` at its last position);
- a poem run: ``scratch.sequence.forward`` with the state carried, a ``wordrnn.core.sampling.Stateful`` that
  reads the prompt once and then one token a step;
- an ensemble: its members' probabilities averaged (``wordrnn.core.metrics``' ``ensemble_window`` and
  ``ensemble_sequence``), a poem ensemble's hidden state its members' side by side, as the exported ``hn``;
- a neural cache: a run folder holds none, so a poem run takes export.onnx's flags (``--cache-auto`` makes the
  same choice on the run's validation poems, or ``--cache-size/--cache-theta/--cache-lambda`` and
  ``--cache-write-lambda``), and its writing setting reads the hidden state after every token, as the exported
  file's clients do;
- ``--adapt-lr``: a poem model that learns from a long prompt before it writes (``scratch.dynamic_eval``): this
  runtime only, since no ONNX client takes gradient steps (docs/GENERATION.md).

Prompt handling and sampling are ``wordrnn.run.generation``'s, shared with every other runtime: the same prompt,
sampler settings, cache and seed give the same text as ``python -m export.generate``, Node.js and the page on the
exported file (within the contract's margin for a sampled token, docs/GENERATION.md section 8).
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from typing import Any

from wordrnn.core.errors import start_command

if __name__ == "__main__":
    start_command()  # a missing library or a Ctrl-C during the imports: one line

import numpy as np  # noqa: E402

from scratch.cache_choice import chosen_cache  # noqa: E402
from scratch.dynamic_eval import DynamicSettings, adapting_step  # noqa: E402
from scratch.sequence import forward, window_logits  # noqa: E402
from wordrnn.core.cache import CacheSettings  # noqa: E402
from wordrnn.core.config import Config  # noqa: E402
from wordrnn.core.errors import CommandParser, UsageError, cli  # noqa: E402
from wordrnn.core.metrics import SequenceLogits, ensemble_sequence, ensemble_window  # noqa: E402
from wordrnn.core.params import Params  # noqa: E402
from wordrnn.core.sampling import Source, Stateful  # noqa: E402
from wordrnn.run.cache_flags import add_cache_flags, cache_from_args  # noqa: E402
from wordrnn.run.folder import Run, load_run  # noqa: E402
from wordrnn.run.generation import add_sampler_flags, print_samples, prompt_to_ids, settings_from_args  # noqa: E402


def poem_step(params: Params, cell: str) -> SequenceLogits:
    """A poem model's ``(x [B, T], state) -> (logits [B, T, V], state)``, the state carried (None: zero)."""
    return lambda x, state: forward(params, x, cell, state=state)[:2]


def ensemble_hidden(members: int) -> Callable[[Any], np.ndarray]:
    """The hidden state h the neural cache reads from ``ensemble_sequence``'s carry: a single model's is its
    state's first array (the LSTM's h, not its c); an ensemble's carry holds one state per member, whose h are
    put side by side, as the exported ensemble's ``hn`` is."""
    if members == 1:
        return lambda state: state[0]
    return lambda carry: np.concatenate([own[0] for own in carry], axis=-1)


def run_source(run: Run, cache: CacheSettings | None = None, adapt: DynamicSettings | None = None) -> Source:
    """What the sampler reads ``run`` through, as the run says: windows of a window model, a ``Stateful`` poem
    model (with ``cache``, if given; learning from the prompt with ``adapt``), an ensemble's members averaged."""
    return members_source(run.member_params, run.config, cache, adapt)


def members_source(member_params: list[Params], config: Config, cache: CacheSettings | None = None,
                   adapt: DynamicSettings | None = None) -> Source:
    """``run_source`` from the members' canonical weights and the configuration they were trained with."""
    members = [{name: np.asarray(p, dtype=np.float32) for name, p in params.items()} for params in member_params]
    cell = config.cell
    if config.layout.carries_state:
        steps = [poem_step(params, cell) if adapt is None else adapting_step(params, cell, config.bptt, adapt)
                 for params in members]
        return Stateful(ensemble_sequence(steps), hidden=ensemble_hidden(len(members)), cache=cache)
    if cache is not None:  # cache_from_args refuses the flags; this guards a caller that skips it
        raise ValueError(f"a {config.context} model has no poem state for a neural cache to recall")
    return ensemble_window([functools.partial(window_logits, params, cell=cell) for params in members])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = CommandParser(
        prog="python -m scratch.generate",
        description="Generate verse from a run folder (any framework's) with the NumPy reference model: a window "
        "run by windows, a poem run with its state carried, an ensemble averaged, as export.generate reads the "
        "run's exported file.",
    )
    parser.add_argument("--run", required=True, metavar="DIR", help="run folder written by a trainer")
    add_cache_flags(parser)
    g = parser.add_argument_group("dynamic evaluation (a poem model only; this runtime only: ONNX clients do not "
                                  "adapt)")
    g.add_argument("--adapt-lr", type=float, default=0.0, metavar="LR",
                   help="learn from the prompt before writing, as dynamic evaluation does (Krause et al. 2018; "
                   "docs/QUALITY.md): read it --bptt tokens at a time, one SGD step of this size on each chunk once "
                   "it is read; pays for a prompt of several lines (bench.quality --dynamic-eval's choice is a "
                   "guide). Default: 0, off")
    g.add_argument("--adapt-decay", type=float, default=0.0, metavar="D",
                   help="with --adapt-lr: each step also pulls the weights this share of the way back to the "
                   "trained ones (default: %(default)s)")
    add_sampler_flags(parser)
    return parser.parse_args(argv)


def adapt_from_args(args: argparse.Namespace, run: Run) -> DynamicSettings | None:
    """The prompt's dynamic evaluation the flags ask for, refused where it cannot apply."""
    if not (np.isfinite(args.adapt_lr) and args.adapt_lr >= 0):
        raise UsageError(f"--adapt-lr must be 0 (off) or a positive step size, got {args.adapt_lr}")
    if not 0.0 <= args.adapt_decay <= 1.0:
        raise UsageError(f"--adapt-decay must lie in [0, 1], got {args.adapt_decay}")
    if not args.adapt_lr:
        if args.adapt_decay:
            raise UsageError("--adapt-decay shapes the steps of --adapt-lr, which is off; add --adapt-lr LR, or "
                             "drop --adapt-decay")
        return None
    if not run.config.layout.carries_state:
        raise UsageError(f"--adapt-lr learns from the prompt read as a poem, and {args.run} is a "
                         f"{run.config.context}-context run that reads windows; use a poem-context run")
    if args.cache_auto or any(v is not None for v in (args.cache_size, args.cache_theta, args.cache_lambda)):
        raise UsageError("--adapt-lr reads the prompt a chunk at a time and the neural cache one token at a time; "
                         "choose one of the two")
    return DynamicSettings(args.adapt_lr, args.adapt_decay)


@cli
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings_from_args(args)  # bad sampler values are refused before the run folder is read
    run = load_run(args.run)
    prompt_to_ids(args.prompt, run.vocab)  # a prompt it cannot read is refused before the cache is chosen
    # the choice is said on stderr: standard output is the text, as export.generate prints it
    adapt = adapt_from_args(args, run)  # refused before a cache is chosen
    cache = cache_from_args(args, run, functools.partial(chosen_cache, stream=sys.stderr))
    print_samples(run_source(run, cache.writing if cache else None, adapt), run.vocab, run.config.seq_len, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
