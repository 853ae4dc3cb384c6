"""mingru's recurrence in PyTorch as a doubling scan for long chunks (``torchmodels.scan``): the same logits, final
state and gradients as the step loop, poems starting at any position and a state carried in."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from torchmodels import scan
from torchmodels.model import build_module
from wordrnn.core import tolerances
from wordrnn.core.config import Config
from wordrnn.core.params import init_params

B, T, H = 3, 70, 6  # T past PARALLEL_FROM, not a power of two


def run(dtype: torch.dtype, model: str, monkeypatch, parallel: bool):
    """Logits, final state and the gradients of the parameters and the incoming state of one chunk."""
    monkeypatch.setattr(scan, "PARALLEL_FROM", scan.PARALLEL_FROM if parallel else T + 1)
    assert scan.runs_parallel("mingru", T) == parallel
    config = Config(model=model, cell="mingru", context="poem", vocab_size=20, hidden_size=H, embed_dim=5,
                    bptt=T, batch_size=B).validate()
    module = build_module(config, init_params(config), dtype=dtype)
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.integers(0, 20, (B, T)))
    reset = torch.zeros(B, T, dtype=torch.bool)
    reset[0, 0] = reset[1, T - 1] = reset[1, 30] = reset[1, 31] = reset[0, 64] = True  # stream 2 carries through
    state = (torch.as_tensor(rng.standard_normal((B, H)), dtype=dtype).requires_grad_(),)
    logits, final = module(x, state, reset)
    (logits.square().mean() + final[0].sum()).backward()
    grads = {name: p.grad.clone() for name, p in module.named_parameters()}
    return logits.detach(), final[0].detach(), grads, state[0].grad.clone()


@pytest.mark.parametrize(("dtype", "model"), [(torch.float32, "embedding"), (torch.float64, "embedding"),
                                              (torch.float32, "onehot")])
def test_the_doubling_scan_gives_the_step_loops_logits_state_and_gradients(dtype, model, monkeypatch):
    tol = {torch.float32: np.float32, torch.float64: np.float64}[dtype]
    got, want = run(dtype, model, monkeypatch, True), run(dtype, model, monkeypatch, False)
    assert (got[0] - want[0]).abs().max() <= tolerances.LOGITS[tol]
    assert (got[1] - want[1]).abs().max() <= tolerances.LOGITS[tol]
    for name, g in want[2].items():
        assert (got[2][name] - g).abs().max() <= tolerances.GRADIENTS[tol] * g.abs().max(), name
    assert (got[3] - want[3]).abs().max() <= tolerances.GRADIENTS[tol] * want[3].abs().max()
    assert torch.all(got[3][0] == 0) and got[3][2].abs().max() > 0  # a reset at 0 forgets the state; none keeps it


def test_only_long_chunks_of_a_linear_cell_run_the_scan():
    assert scan.runs_parallel("mingru", scan.PARALLEL_FROM)
    assert not scan.runs_parallel("mingru", scan.PARALLEL_FROM - 1)
    assert not scan.runs_parallel("gru", 1000)
