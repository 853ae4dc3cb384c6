"""The recurrence of a cell that is linear in its state, as a parallel scan by doubling, for long chunks.

mingru's step with a poem start is ``h_t = a_t h_{t-1} + b_t``, ``a_t = (1 - z_t) keep_t``, ``b_t = z_t h~_t``
(``jaxmodels.scan`` says why, and why the plain form is stable). torch has no associative scan outside
``torch.compile``, so this one doubles: after round k every position holds the composition of the 2^k steps
ending there, so ceil(log2 T) rounds of whole-chunk tensor operations replace T steps of small ones. It does
T log2 T work instead of T, so it pays only for long chunks: on the CPU (one thread, B 64, H 128, forward and
backward of the recurrence) it took 1.35x the step loop's time at T 35, 0.93x at 64, 0.58x at 128 and 0.27x at 256
(docs/PERFORMANCE.md, "mingru as a parallel scan"); chunks of at least ``PARALLEL_FROM`` steps use it.
"""

from __future__ import annotations

import torch

State = tuple[torch.Tensor, ...]

PARALLEL_FROM = 64  # chunk length from which the doubling scan beats the step loop (module docstring)
LINEAR_CELLS = ("mingru",)  # the cells whose step is h' = a h + b, a and b functions of the input alone


def runs_parallel(cell: str, steps: int) -> bool:
    """Whether a chunk of ``steps`` positions runs ``cell``'s recurrence as the doubling scan."""
    return cell in LINEAR_CELLS and steps >= PARALLEL_FROM


def mingru_coefficients(projected: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(1 - z, z h~)`` of mingru's step (``torchmodels.model.mingru_step``) from its input projections [..., 2H]."""
    a_z, h_tilde = projected.chunk(2, dim=-1)
    z = torch.sigmoid(a_z)
    return 1 - z, z * h_tilde


def parallel_recurrence(projected: torch.Tensor, state: State, keep: torch.Tensor | None
                        ) -> tuple[torch.Tensor, State]:
    """What ``RNNLanguageModel.recur_steps`` returns for mingru: every h_t [B, T, H] and the final state, from
    time-major input projections [T, B, 2H] and ``state``, the state multiplied by ``keep`` [B, T] before every
    step but the first (``forward`` has applied the first already)."""
    decay, drive = mingru_coefficients(projected)
    if keep is not None:
        decay = torch.cat([decay[:1], decay[1:] * keep.t()[1:, :, None]])
    (h0,) = state
    drive = torch.cat([decay[:1] * h0 + drive[:1], drive[1:]])  # the incoming state folded into the first step
    steps, span = len(drive), 1
    while span < steps:
        drive = torch.cat([drive[:span], torch.addcmul(drive[span:], decay[span:], drive[:-span])])
        if 2 * span < steps:  # the last round needs no compositions of the decays
            decay = torch.cat([decay[:span], decay[span:] * decay[:-span]])
        span *= 2
    return drive.transpose(0, 1), (drive[-1],)
