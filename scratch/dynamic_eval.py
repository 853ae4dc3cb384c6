"""Dynamic evaluation (Krause et al. 2018): a poem model that keeps learning from the text it has just scored.

The held-out poems are read in order, ``bptt`` tokens at a time, the state carried. Each chunk is first scored
by the current weights; only then does each member take one step on that chunk (the chunk's mean cross-entropy,
the state it started from held fixed), the SGD update with a global prior of the paper::

    theta <- theta - lr * grad + decay * (theta_trained - theta)

so the text already scored, and nothing after it, shapes the next prediction, and the weights are drawn back
towards the trained ones. The adaptation is carried from one poem to the next in the order given (``per_poem``
resets it to the trained weights at each poem instead); the recurrent state starts from zero at every poem, as
in every other evaluation. An ensemble's members adapt each on its own loss, and the target's probability is
their average, as ``wordrnn.core.metrics.average_probabilities`` averages them.

``lr``, ``decay`` and the mode are chosen on a grid by held-out poems the model was not trained on (a fold's inner
validation poems in ``bench.quality``), as the neural cache's settings are (``scratch.cache_choice``); lr 0 (no
adaptation) is on the grid, so the choice cannot make the inner validation loss worse. The forward pass and the
gradient are the NumPy reference's (``scratch.sequence``), which reads any backend's canonical weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from scratch.cache_choice import PoemStates
from scratch.sequence import forward, loss_and_grads
from wordrnn.core.metrics import SequenceLogits, log_softmax
from wordrnn.core.params import Params

# The gradient is of a chunk's mean loss, so a step of lr 0.1 moves a weight by a tenth of a mean gradient; the
# paper's SGD steps on PTB lie in this range. The decay pulls back a share of the distance each chunk.
# The grid is searched one coordinate at a time (lr with no decay, then the decay at that lr), for the adaptation
# carried from poem to poem and for one reset at each poem: 13 passes over the inner validation poems.
LRS = (0.0, 0.03, 0.1, 0.3, 1.0)
DECAYS = (0.0, 0.01, 0.1)
MODES = (False, True)  # per_poem


@dataclass(frozen=True)
class DynamicSettings:
    lr: float
    decay: float
    per_poem: bool = False  # reset the adaptation at every poem (else carried through the poems in order)

    def to_json(self) -> dict[str, float | bool]:
        return {"lr": self.lr, "decay": self.decay, "per_poem": self.per_poem}


@dataclass(frozen=True)
class DynamicChoice:
    settings: DynamicSettings
    inner_loss: float  # the mean negative log-likelihood on the targets it was chosen by
    # what those settings read on the poems they were chosen by (``dynamic_poems``), for a cache chosen after them
    log_prob: np.ndarray | None = field(default=None, repr=False, compare=False)
    states: list[PoemStates] | None = field(default=None, repr=False, compare=False)

    def to_json(self) -> dict[str, float | bool]:
        return {**self.settings.to_json(), "inner_loss": self.inner_loss}


class Adapting:
    """One model's weights as dynamic evaluation moves them: ``read`` a text chunk by chunk, each chunk's logits
    computed before the step on it."""

    def __init__(self, trained: Params, cell: str, bptt: int, settings: DynamicSettings):
        self.trained = {k: np.array(v) for k, v in trained.items()}
        self.cell, self.bptt, self.settings = cell, bptt, settings
        self.reset()

    def reset(self) -> None:
        """Back to the trained weights."""
        self.theta = {k: v.copy() for k, v in self.trained.items()}

    def read(self, ids: np.ndarray, state: Any = None) -> tuple[np.ndarray, Any, np.ndarray]:
        """The logits [T, V] after each token of ``ids``, the state after the last (carried from ``state``) and the
        top layer's output after each token [T, H] (what the neural cache recalls), each chunk read by the weights
        its predecessors left; after each chunk is read, one step on the chunk's targets (the tokens after it that
        ``ids`` holds: the last token's target is not known yet, so it weighs nothing)."""
        ids = np.asarray(ids, np.int64)
        out, hidden = [], []
        for start in range(0, len(ids), self.bptt):
            x = ids[None, start:start + self.bptt]
            logits, after, saved = forward(self.theta, x, self.cell, state)
            out.append(logits[0])
            hidden.append(saved["top"][0])
            y = ids[None, start + 1:start + 1 + x.shape[1]]
            if self.settings.lr > 0 and y.shape[1]:  # the chunk has been read: now, and only now, learn from it
                self._step(x[:, :y.shape[1]], y, state)
            state = after
        return np.concatenate(out), state, np.concatenate(hidden)

    def _step(self, x: np.ndarray, y: np.ndarray, state: Any) -> None:
        _, grads, _ = loss_and_grads(self.theta, x, y, cell=self.cell, state=state)
        lr, decay = self.settings.lr, self.settings.decay
        for k, theta in self.theta.items():
            theta += -lr * grads[k] + decay * (self.trained[k] - theta)


def _member_read(trained: Params, cell: str, poems: list[np.ndarray], min_context: int, bptt: int,
                 settings: DynamicSettings) -> tuple[np.ndarray, list[np.ndarray]]:
    """One member's log-probability of every scored target of ``poems``, in order, adapting as it reads, and its
    top layer's output [T, H] over each poem of more than one token."""
    member = Adapting(trained, cell, bptt, settings)
    out, hidden = [], []
    for ids in poems:
        ids = np.asarray(ids, np.int64)
        if len(ids) < 2:
            continue
        if settings.per_poem:
            member.reset()
        logits, _, top = member.read(ids)  # the last token's logits predict past the poem: unused
        logp = log_softmax(logits[:-1])[np.arange(len(ids) - 1), ids[1:]]
        out.append(logp[np.arange(1, len(ids)) >= min_context])
        hidden.append(top)
    return (np.concatenate(out) if out else np.zeros(0)), hidden


def dynamic_poems(members: list[Params], cell: str, poems: list[np.ndarray], min_context: int, bptt: int,
                  settings: DynamicSettings) -> tuple[np.ndarray, list[PoemStates]]:
    """log P of every scored target of ``poems`` (every token with at least ``min_context`` tokens before it in its
    poem, the order of ``wordrnn.core.metrics.poem_target_logits``) under dynamic evaluation, and each poem's
    hidden states as the adapting members produced them (side by side), for a neural cache over them
    (``scratch.cache_choice``): the cache then recalls what the adapted model read."""
    reads = [_member_read(p, cell, poems, min_context, bptt, settings) for p in members]
    logp = np.logaddexp.reduce(np.stack([r[0] for r in reads]), axis=0) - np.log(len(members))
    kept = [np.asarray(ids, np.int64) for ids in poems if len(ids) >= 2]
    states = [PoemStates.of(np.concatenate(tops, axis=-1), ids, min_context)
              for ids, *tops in zip(kept, *(r[1] for r in reads), strict=True)]
    return logp, states


def choose_dynamic(members: list[Params], cell: str, poems: list[np.ndarray], min_context: int, bptt: int,
                   modes: tuple[bool, ...] = MODES) -> DynamicChoice:
    """The (lr, decay, per_poem) with the lowest mean negative log-likelihood on ``poems``: for each of ``modes``,
    the lr of ``LRS`` with no decay, then the ``DECAYS`` at that lr (the first on a tie, so lr 0, no adaptation,
    wins where adapting does not help); with the log-probabilities and states it read ``poems`` with."""
    still = _choose_steps(members, cell, poems, min_context, bptt, False, LRS[:1])
    return min([still, *(_choose_steps(members, cell, poems, min_context, bptt, per_poem, LRS[1:])
                         for per_poem in modes)], key=lambda c: c.inner_loss)


def _choose_steps(members: list[Params], cell: str, poems: list[np.ndarray], min_context: int, bptt: int,
                  per_poem: bool, lrs: tuple[float, ...]) -> DynamicChoice:
    """The best lr of ``lrs`` with no decay, then the best decay at that lr, for one mode."""

    def scored(lr: float, decay: float) -> DynamicChoice:
        settings = DynamicSettings(lr, decay, per_poem)
        with np.errstate(over="ignore", invalid="ignore"):  # a step too large diverges: an infinite loss, not chosen
            log_prob, states = dynamic_poems(members, cell, poems, min_context, bptt, settings)
            loss = -float(np.mean(log_prob))
        return DynamicChoice(settings, loss if np.isfinite(loss) else np.inf, log_prob, states)

    best = min((scored(lr, 0.0) for lr in lrs), key=lambda c: c.inner_loss)
    if best.settings.lr:
        best = min([best, *(scored(best.settings.lr, d) for d in DECAYS[1:])], key=lambda c: c.inner_loss)
    return best


def adapting_step(params: Params, cell: str, bptt: int, settings: DynamicSettings) -> SequenceLogits:
    """A poem model's ``(x [1, T], state) -> (logits [1, T, V], state)`` for generation that learns from the prompt:
    a text's first call (state None) starts from the trained weights and reads the prompt as dynamic evaluation
    reads a poem, a step after each chunk; the tokens after it are read by the weights the prompt left (the
    model's own words teach it nothing)."""
    member = Adapting(params, cell, bptt, settings)

    def step(x: np.ndarray, state: Any) -> tuple[np.ndarray, Any]:
        if state is None:
            member.reset()
            logits, state, _ = member.read(np.asarray(x)[0])
            return logits[None], state
        return forward(member.theta, x, cell, state=state)[:2]

    return step
