"""The context as a data layout: what each context means for the one model function that serves both.

Every implementation has one model function over a chunk of tokens (``data.streams.Chunk``); the two contexts
differ only in how the corpus is laid out for it:

- ``window``: shuffled batches of independent windows of ``seq_len`` tokens; each row starts from a zero state,
  only its last position is scored, no state passes between batches, and dropout masks are drawn per position;
- ``poem``: whole poems laid end to end in ``batch_size`` streams and cut into chunks of ``bptt`` tokens; every
  position is scored, the state passes from one chunk to the next (truncated BPTT), and dropout masks are locked
  per stream over a chunk (variational dropout, Gal and Ghahramani 2016).

The loop, the metrics, the memory estimate and the dropout shapes ask the layout, not the context's name;
``data.dataset.Dataset.epoch_chunks`` cuts the corpus as the layout says.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    name: str  # the context it lays out: "window" or "poem"
    carries_state: bool  # the state after a chunk is the next chunk's state in; every position is scored
    unit: str  # what one training step reads, in words (the progress bar's unit)

    @property
    def locked_masks(self) -> bool:
        """One dropout mask per stream for a whole chunk (a carried state is read by one thinned network), or
        one per position (independent windows)."""
        return self.carries_state

    def chunk_shape(self, seq_len: int, bptt: int) -> tuple[int, int]:
        """(tokens in a row of a training chunk, positions of the row whose logits training computes)."""
        return (bptt, bptt) if self.carries_state else (seq_len, 1)


LAYOUTS = {
    "window": Layout("window", carries_state=False, unit="batch"),
    "poem": Layout("poem", carries_state=True, unit="chunk"),
}


def layout_of(context: str) -> Layout:
    """The layout of ``context``; ``Config.validate`` refuses any other name."""
    return LAYOUTS[context]
