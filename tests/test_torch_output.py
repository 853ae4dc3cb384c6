"""The output layer and its cross-entropy a block of rows at a time (``torchmodels.output``): the loss and every
gradient equal ``F.linear`` + ``F.cross_entropy``'s within docs/DESIGN.md's tolerances, for any block size, for
rows of weight zero and through a tied embedding (the training step: test_fused_output_step.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_fused_output_step import H, V, model_config

from torchmodels.model import build_module, chunk_loss, fused_chunk_loss
from torchmodels.output import linear_cross_entropy
from wordrnn.core.fused_output import block_rows
from wordrnn.core.params import init_params
from wordrnn.core.tolerances import GRADIENTS, LOGITS, TINY

N = 37
DTYPES = {torch.float64: np.float64, torch.float32: np.float32}


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| relative to b's largest entry (docs/DESIGN.md's gradient tolerance)."""
    return float((a - b).abs().max() / (b.abs().max() + TINY))


def rows_data(dtype: torch.dtype, n: int = N, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, H, generator=g, dtype=dtype, requires_grad=True)
    weight = torch.randn(V, H, generator=g, dtype=dtype, requires_grad=True)
    bias = torch.randn(V, generator=g, dtype=dtype, requires_grad=True)
    y = torch.randint(V, (n,), generator=g)
    w = torch.rand(n, generator=g, dtype=dtype) + 0.5
    w[::4] = 0  # rows that are no target: no loss and no gradient
    return h, weight, bias, y, w


def reference(h, weight, bias, y, w) -> torch.Tensor:
    return (F.cross_entropy(F.linear(h, weight, bias), y, reduction="none") * w).sum() / w.sum()


@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
@pytest.mark.parametrize("rows", [1, 5, 16, N, 4 * N], ids=["1", "5", "16-not-dividing", "N", "more-than-N"])
def test_the_loss_and_each_gradient_equal_cross_entropys(dtype: torch.dtype, rows: int) -> None:
    h, weight, bias, y, w = rows_data(dtype)
    inputs = (h, weight, bias)
    want = reference(h, weight, bias, y, w)
    got = linear_cross_entropy(h, weight, bias, y, w, rows)
    assert abs(float((got - want).detach())) <= LOGITS[DTYPES[dtype]]
    scale = 1.7  # the backward scales by the incoming gradient
    for name, ours, theirs in zip(("h", "weight", "bias"), torch.autograd.grad(scale * got, inputs),
                                  torch.autograd.grad(scale * want, inputs)):
        assert relative(ours, theirs) <= GRADIENTS[DTYPES[dtype]], name
    assert float(torch.autograd.grad(linear_cross_entropy(h, weight, bias, y, w, rows), h)[0][::4].abs().max()) == 0


def test_only_the_gradients_asked_for_are_computed_and_no_grad_gives_the_loss_alone() -> None:
    h, weight, bias, y, w = rows_data(torch.float64)
    want = reference(h, weight, bias, y, w)
    (d_weight,) = torch.autograd.grad(linear_cross_entropy(h.detach(), weight, bias.detach(), y, w, 8), weight)
    assert relative(d_weight, torch.autograd.grad(want, weight, retain_graph=True)[0]) <= GRADIENTS[np.float64]
    with torch.no_grad():
        loss = linear_cross_entropy(h, weight, bias, y, w, 8)
    assert loss.grad_fn is None and abs(float(loss - want.detach())) <= LOGITS[np.float64]


def test_a_block_is_the_rows_whose_buffer_fits_and_at_least_one() -> None:
    assert block_rows(16_000, 4, 8 * 2**20) == 131
    assert block_rows(10**9, 8, 2**20) == 1


@pytest.mark.parametrize("last_only", [False, True], ids=["every-position", "last-only"])
@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
def test_fused_chunk_loss_equals_chunk_loss_for_every_parameter(tie: bool, last_only: bool) -> None:
    """Through the model: the output dropout, AR and TAR, and the tied embedding's gradient (the output weight
    is an input of the fused op, so autograd takes its gradient on to the table)."""
    config = model_config(tie)
    module = build_module(config, init_params(config, dtype=np.float64), dtype=torch.float64)
    B, T = 4, 7
    g = torch.Generator().manual_seed(3)
    x = torch.randint(V, (B, T), generator=g)
    y = torch.randint(V, (B,) if last_only else (B, T), generator=g)
    weights = (torch.rand(y.shape, generator=g) > 0.3).to(torch.float64)
    weights[0] = 1.0  # some target in the chunk
    reset = torch.rand(B, T, generator=g) < 0.2
    masks = {"hidden": (torch.rand(B, 1, H, generator=g) > 0.5).to(torch.float64) * 2.0}
    settings = dict(reset=reset, masks=masks, last_only=last_only, ar=0.3, tar=0.2)
    logits, _, hidden = module(x, None, reset, masks, last_only, True)
    want = chunk_loss(logits, hidden, y, weights, **settings)
    none, _, hidden = module(x, None, reset, masks, last_only, True, readout=False)
    got = fused_chunk_loss(module, hidden, y, weights, **settings)
    assert none is None and abs(float((got - want).detach())) <= LOGITS[np.float64]
    params = dict(module.named_parameters())
    assert ("embedding.weight" in params) and (("out.weight" in params) != tie)
    for name, ours, theirs in zip(params, torch.autograd.grad(got, list(params.values())),
                                           torch.autograd.grad(want, list(params.values()))):
        assert relative(ours, theirs) <= GRADIENTS[np.float64], name
