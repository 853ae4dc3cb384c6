"""The output layer and its cross-entropy in one pass over blocks of rows, without a [N, V] array (where it runs and
its block size: ``wordrnn.core.fused_output``).

``F.linear`` then ``F.cross_entropy`` on N = B*T rows materialize the logits [N, V], their log-softmax and, in the
backward, two gradients of that size, each allocated afresh each step: at V 16,000 and 1,024 streams that is
2.3 GB a buffer, and the kernel's page faults on them cost more than the products (docs/PERFORMANCE.md, "The
output layer without a [B*T, V] array"). Here the rows are walked in blocks: per block the logits, their
logsumexp, the loss and, when a gradient is wanted, the gradient of the logits right away (softmax minus one-hot,
times the row's share of the weights), from which the block's dh is written and dW, db accumulated. One block
buffer is reused by every block, updated in place. The backward only scales the stored gradients by its
incoming gradient.

The loss is ``wordrnn``'s weighted mean, ``sum_i w_i CE_i / sum_i w_i`` (``torchmodels.model.chunk_loss``).
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from wordrnn.core.fused_output import block_rows


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, y: torch.Tensor,
                         w: torch.Tensor, rows: int | None = None) -> torch.Tensor:
    """``sum_i w_i CE(h_i W^T + b, y_i) / sum_i w_i`` of rows h [N, H], weight [V, H], bias [V], targets y [N]
    and row weights w [N], computed ``rows`` rows at a time (None: ``block_rows``). Differentiable in h, weight
    and bias (once); without a gradient wanted (``torch.no_grad`` or no input requiring one), the loss only."""
    rows = rows or block_rows(weight.shape[0], weight.element_size())
    if torch.is_grad_enabled() and (h.requires_grad or weight.requires_grad or bias.requires_grad):
        return LinearCrossEntropy.apply(h, weight, bias, y, w, rows)
    with torch.no_grad():
        return _blocks(h, weight, bias, y, w, rows, (False, False, False))[0]


class LinearCrossEntropy(torch.autograd.Function):
    """``linear_cross_entropy`` with the gradients computed in the forward pass, block by block."""

    @staticmethod
    def forward(ctx, h, weight, bias, y, w, rows):
        loss, dh, dweight, dbias = _blocks(h, weight, bias, y, w, rows, tuple(ctx.needs_input_grad[:3]))
        ctx.save_for_backward(dh, dweight, dbias)
        return loss

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss):
        return *(None if g is None else g * grad_loss for g in ctx.saved_tensors), None, None, None


def _blocks(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
            rows: int, wanted: tuple[bool, bool, bool]
            ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """The loss and the gradients ``wanted`` (of h, weight, bias; None where not), one block of rows at a time."""
    n = h.shape[0]
    share = w.to(h.dtype) / w.sum().to(h.dtype)  # d loss / d CE_i
    y = y.reshape(-1, 1)
    any_grad = any(wanted)
    dh = h.new_empty(h.shape) if wanted[0] else None
    dweight = torch.zeros_like(weight) if wanted[1] else None
    dbias = torch.zeros_like(bias) if wanted[2] else None
    buffer = h.new_empty(min(rows, n), weight.shape[0])
    loss = h.new_zeros(())
    for begin in range(0, n, rows):
        end = min(begin + rows, n)
        hb, yb, sb = h[begin:end], y[begin:end], share[begin:end, None]
        z = torch.addmm(bias, hb, weight.t(), out=buffer[:end - begin])
        z.sub_(z.amax(dim=1, keepdim=True))  # shifted: exp cannot overflow
        target = z.gather(1, yb)
        z.exp_()
        total = z.sum(dim=1, keepdim=True)
        loss += ((total.log() - target) * sb).sum()
        if not any_grad:
            continue
        # d loss / d z = share * (softmax - one-hot), in place
        z.mul_(sb / total)
        z.scatter_add_(1, yb, -sb)
        if dh is not None:
            torch.mm(z, weight, out=dh[begin:end])
        if dweight is not None:
            dweight.addmm_(z.t(), hb)
        if dbias is not None:
            dbias += z.sum(dim=0)
    return loss, dh, dweight, dbias
