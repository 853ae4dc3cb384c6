"""The fused output layer in each framework's training step (``torchmodels.output``, ``jaxmodels.output``): one
SGD step with it equals one with the logits, and the backend chooses it by ``wordrnn.core.fused_output``'s rule.
The ops themselves are held to the logits path in tests/test_torch_output.py and tests/test_jax_output.py."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from data.streams import Chunk
from wordrnn.core.config import Config
from wordrnn.core.fused_output import FUSED_MIN_LOGITS
from wordrnn.core.params import init_params
from wordrnn.core.tolerances import GRADIENTS, LOGITS
from wordrnn.frameworks import make_backend

H, V = 6, 29
FRAMEWORKS = ("torch", "jax")


def model_config(tie: bool, **settings) -> Config:
    return Config(model="embedding", vocab_size=V, hidden_size=H, embed_dim=H if tie else 5, seq_len=5, tie=tie,
                  cell="lstm", **settings).validate()


@pytest.mark.parametrize("tie", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("impl", FRAMEWORKS)
def test_the_backends_step_is_the_same_with_the_fused_output_layer(monkeypatch, impl: str, tie: bool) -> None:
    """One SGD step (its change is lr times the gradient) of the backend's ``train_step`` with the fused output
    layer and with the logits, from the same weights, chunk and dropout masks (output dropout and AR on)."""
    pytest.importorskip(impl)
    config = replace(model_config(tie, optimizer="sgd", lr=1.0, clip=0.0, dropout=0.3, ar=0.5), context="poem")
    params = init_params(config)
    rng = np.random.default_rng(4)
    B, T = 3, 8
    x = rng.integers(0, V, (B, T))
    weights = (rng.random((B, T)) > 0.2).astype(np.float32)
    chunk = Chunk(x, np.where(weights > 0, rng.integers(0, V, (B, T)), 0), weights, rng.random((B, T)) < 0.2)
    results = {}
    for fused in (True, False):
        backend = make_backend(impl, "cpu")
        monkeypatch.setattr(type(backend), "fused_output", lambda self, config, positions, fused=fused: fused)
        state, loss, _ = backend.train_step(backend.init(params, config), chunk, None, 0)
        results[fused] = float(loss), backend.canonical(state)
    assert abs(results[True][0] - results[False][0]) <= LOGITS[np.float32]
    for name, start in params.items():
        change = {fused: results[fused][1][name] - start for fused in results}
        assert np.abs(change[False]).max() > 0, name
        worst = np.abs(change[True] - change[False]).max() / np.abs(change[False]).max()
        assert worst <= GRADIENTS[np.float32], name


@pytest.mark.parametrize("impl", FRAMEWORKS)
def test_the_backend_fuses_the_output_layer_in_float32_on_the_cpu_from_its_smallest_chunk_up(impl: str) -> None:
    pytest.importorskip(impl)
    backend, config = make_backend(impl, "cpu"), model_config(False)
    positions = -(-FUSED_MIN_LOGITS // V)  # the fewest positions with at least FUSED_MIN_LOGITS logits
    assert backend.fused_output(config, positions) and not backend.fused_output(config, positions - 1)
    assert not backend.fused_output(replace(config, precision="bfloat16"), positions)
