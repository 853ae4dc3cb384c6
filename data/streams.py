"""Chunks: what one training step reads in either context, and the poem context's streams of whole poems.

A ``Chunk`` is a batch of B rows of T tokens with its targets, their weights and where the state resets. A batch
of windows is the degenerate chunk: every row starts from a zero state (``reset`` None), and only its last
position is scored (``last_only``: ``y`` and ``weights`` are [B], one target a row). The poem context's chunks
score every position ([B, T] targets) and carry the state from one chunk to the next (``wordrnn.core.layout``).

The poem context's streams:

Per epoch the training poems are shuffled by a generator seeded with ``[seed, epoch]`` (as the window
batches are) and dealt, in that order, each to the stream that holds the fewest tokens so far: the
streams stay within one poem's length of each other, and no poem is split across streams. Position t
of a stream holds a token, the next token of the same poem as its target (weight 1), or no target
(weight 0: the poem's last token, or padding after the stream's end), and whether a poem starts there
(the state is zeroed before it is read). Streams are padded to a whole number of chunks of ``bptt`` (with
variable-length BPTT, to the sum of the chunks' drawn lengths).
Every training target appears exactly once an epoch.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Chunk:
    x: np.ndarray  # int64 [B, T] tokens read
    y: np.ndarray  # int64 [B, T] next tokens (0 where weight is 0); [B] with last_only
    weights: np.ndarray  # float32, shaped like y: 1 for a real target, 0 for none
    reset: np.ndarray | None  # bool [B, T]: a poem starts here, the state is zero before this token; None: no reset
    last_only: bool = False  # the head reads the last position only (a batch of windows)

    @property
    def targets(self) -> int:
        return int(self.weights.sum())


def lay_streams(poems: list[np.ndarray], streams: int) -> list[list[np.ndarray]]:
    """Deal ``poems`` in order to ``streams`` streams, each to the one holding the fewest tokens (ties: lowest)."""
    heap = [(0, i) for i in range(streams)]
    laid: list[list[np.ndarray]] = [[] for _ in range(streams)]
    for ids in poems:
        length, i = heapq.heappop(heap)
        laid[i].append(ids)
        heapq.heappush(heap, (length + len(ids), i))
    return laid


def stream_arrays(poems: list[np.ndarray], streams: int, multiple: int) -> Chunk:
    """The whole epoch as one [B, L] ``Chunk``, L a multiple of ``multiple``."""
    laid = lay_streams(poems, streams)
    return fill_streams(laid, _padded(_longest(laid), multiple))


def _longest(laid: list[list[np.ndarray]]) -> int:
    return max(sum(len(p) for p in row) for row in laid)


def _padded(longest: int, multiple: int) -> int:
    return max(multiple, -(-longest // multiple) * multiple)


def fill_streams(laid: list[list[np.ndarray]], length: int) -> Chunk:
    """The streams ``laid`` (``lay_streams``) as one [B, ``length``] ``Chunk``, padded after each stream's end."""
    streams = len(laid)
    x = np.zeros((streams, length), np.int64)
    y = np.zeros((streams, length), np.int64)
    weights = np.zeros((streams, length), np.float32)
    reset = np.zeros((streams, length), bool)
    for b, row in enumerate(laid):
        at = 0
        for ids in row:
            n = len(ids)
            x[b, at:at + n] = ids
            y[b, at:at + n - 1] = ids[1:]
            weights[b, at:at + n - 1] = 1
            reset[b, at] = True
            at += n
    return Chunk(x, y, weights, reset)


# Variable-length BPTT as AWD-LSTM draws it (Merity et al. 2018, section 4.1): the base length is --bptt with this
# probability, else half of it; the length is then normal around the base, at least SHORTEST_CHUNK tokens.
FULL_BASE_SHARE = 0.95
LENGTH_SD = 5.0
SHORTEST_CHUNK = 5


def jittered_lengths(rng: np.random.Generator, bptt: int, total: int) -> list[int]:
    """Chunk lengths drawn one after another from ``rng`` until they cover ``total`` tokens: for each, a uniform
    draw picks the base (``bptt``, or ``bptt / 2``), then a normal one the length, truncated to a whole number as
    AWD-LSTM's ``int()`` does."""
    lengths: list[int] = []
    while sum(lengths) < total:
        base = bptt if rng.random() < FULL_BASE_SHARE else bptt / 2
        lengths.append(max(SHORTEST_CHUNK, int(rng.normal(base, LENGTH_SD))))
    return lengths


def epoch_chunks(poems: list[np.ndarray], streams: int, bptt: int, seed: int, epoch: int,
                 jitter: bool = False) -> list[Chunk]:
    """The chunks of one epoch, in order: ``streams`` rows of ``bptt`` tokens each, or, with ``jitter``, of the
    lengths ``jittered_lengths`` draws from the epoch's generator after its shuffle (the streams then padded to
    their sum)."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(poems))
    laid = lay_streams([poems[i] for i in order], streams)
    longest = _longest(laid)
    lengths = jittered_lengths(rng, bptt, longest) if jitter else [bptt] * (_padded(longest, bptt) // bptt)
    whole = fill_streams(laid, sum(lengths))
    starts = np.cumsum([0, *lengths[:-1]])
    chunks = [Chunk(*(a[:, start:start + n] for a in (whole.x, whole.y, whole.weights, whole.reset)))
              for start, n in zip(starts.tolist(), lengths, strict=True)]
    return [c for c in chunks if c.targets]  # a last chunk holding only a poem's final token predicts nothing


def window_chunk(x: np.ndarray, y: np.ndarray) -> Chunk:
    """A batch of windows ``x`` [B, T] with their next tokens ``y`` [B] as a chunk: a zero state for every row,
    the last position scored."""
    return Chunk(x, y, np.ones(len(y), np.float32), None, last_only=True)
