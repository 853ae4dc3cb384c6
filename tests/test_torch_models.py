"""torchmodels.model: the PyTorch models agree with the NumPy reference and docs/DESIGN.md's equations, every cell."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import window_reference as reference
from cell_equations import design_logits

from torchmodels.model import CANONICAL, RECURRENT, EmbeddingRNN, OneHotRNN, StepLayer, build_module, to_canonical
from wordrnn.core import tolerances
from wordrnn.core.cells import CELLS
from wordrnn.core.config import Config
from wordrnn.core.errors import UsageError
from wordrnn.core.params import init_params

V, H, E, B, T = 23, 7, 5, 4, 5


def make(model: str, seed: int = 0, dtype=np.float32, cell: str = "rnn") -> tuple[Config, dict[str, np.ndarray]]:
    config = Config(model=model, cell=cell, vocab_size=V, hidden_size=H, embed_dim=E, seed=seed)
    return config, init_params(config, dtype=dtype)


def tokens(seed: int, batch: int = B, steps: int = T) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, V, size=(batch, steps)).astype(np.int64)


def dropout_masks(seed: int, p: float, batch: int, steps: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    keep = 1.0 - p
    return {
        "input": ((rng.random((batch, steps, E)) < keep) / keep).astype(np.float32),
        "hidden": ((rng.random((batch, 1, H)) < keep) / keep).astype(np.float32),
    }


def torch_masks(masks: dict[str, np.ndarray], model: str, dtype=torch.float32) -> dict:
    return {"input": torch.as_tensor(masks["input"], dtype=dtype) if model == "embedding" else None,
            "hidden": torch.as_tensor(masks["hidden"], dtype=dtype)}


FORMS = [("onehot", False), ("onehot", True), ("embedding", False)]


def window(module: torch.nn.Module, x: torch.Tensor, masks: dict | None = None) -> torch.Tensor:
    """The module's logits [B, V] of windows ``x``: the chunk from a zero state, its last position."""
    return module(x, masks=masks, last_only=True)[0]


@pytest.mark.parametrize("model,gather", FORMS)
@pytest.mark.parametrize("steps", [1, 2, T])
def test_logits_match_numpy_reference_float32(model: str, gather: bool, steps: int) -> None:
    config, params = make(model, seed=steps)
    x = tokens(10 + steps, steps=steps)
    module = build_module(config, params, onehot_gather=gather)
    with torch.no_grad():
        got = window(module, torch.from_numpy(x)).numpy()
    assert got.dtype == np.float32 and got.shape == (B, V)
    assert np.abs(got - reference.logits(params, x)).max() <= tolerances.LOGITS[np.float32]
    assert np.abs(got - design_logits(params, x)).max() <= tolerances.LOGITS[np.float32]


@pytest.mark.parametrize("model,gather", FORMS)
def test_logits_and_gradients_match_numpy_reference_float64(model: str, gather: bool) -> None:
    config, params = make(model, seed=3, dtype=np.float64)
    x, y = tokens(4), np.random.default_rng(5).integers(0, V, size=B)
    masks = dropout_masks(6, 0.3, B, T)
    np_masks = {"input": masks["input"] if model == "embedding" else None, "hidden": masks["hidden"]}
    module = build_module(config, params, dtype=torch.float64, onehot_gather=gather)
    logits = window(module, torch.from_numpy(x), torch_masks(masks, model, torch.float64))
    F.cross_entropy(logits, torch.from_numpy(y)).backward()

    assert np.abs(logits.detach().numpy() - design_logits(params, x, np_masks)).max() <= tolerances.LOGITS[np.float64]
    loss, grads = reference.loss_and_grads(params, x, y, np_masks)
    assert abs(F.cross_entropy(logits, torch.from_numpy(y)).item() - loss) <= 1e-10
    own = dict(module.named_parameters())
    for name, grad in grads.items():
        got = own[CANONICAL[name]].grad.numpy()
        assert np.abs(got - grad).max() <= 1e-10 * max(np.abs(grad).max(), 1.0), name


@pytest.mark.parametrize("model,gather", FORMS)
def test_gradients_match_numpy_reference_float32(model: str, gather: bool) -> None:
    config, params = make(model, seed=8)
    x, y = tokens(9, batch=16), np.random.default_rng(10).integers(0, V, size=16)
    module = build_module(config, params, onehot_gather=gather)
    F.cross_entropy(window(module, torch.from_numpy(x)), torch.from_numpy(y)).backward()
    _, grads = reference.loss_and_grads(params, x, y)
    own = dict(module.named_parameters())
    for name, grad in grads.items():
        got = own[CANONICAL[name]].grad.numpy()
        assert np.abs(got - grad).max() <= 1e-5 * np.abs(grad).max(), name


@pytest.mark.parametrize("model", ["onehot", "embedding"])
def test_hidden_and_input_masks_match_numpy(model: str) -> None:
    config, params = make(model, seed=11)
    x = tokens(12)
    masks = dropout_masks(13, 0.5, B, T)
    np_masks = {"input": masks["input"] if model == "embedding" else None, "hidden": masks["hidden"]}
    module = build_module(config, params)
    with torch.no_grad():
        got = window(module, torch.from_numpy(x), torch_masks(masks, model)).numpy()
        plain = window(module, torch.from_numpy(x)).numpy()
    expected, _ = reference.forward(params, x, np_masks)
    assert np.abs(got - expected).max() <= 1e-5
    assert np.abs(got - plain).max() > 1e-3  # the masks did something


def test_onehot_model_refuses_an_input_mask() -> None:
    config, params = make("onehot")
    module = build_module(config, params)
    with pytest.raises(ValueError, match="input dropout"):
        window(module, torch.from_numpy(tokens(0)), {"input": torch.ones(B, T, V), "hidden": None})


def test_onehot_gather_and_materialized_forms_agree_in_values_and_gradients() -> None:
    config, params = make("onehot", seed=14)
    x, y = torch.from_numpy(tokens(15, batch=32)), torch.from_numpy(np.random.default_rng(16).integers(0, V, 32))
    mask = {"hidden": torch.from_numpy(dropout_masks(17, 0.2, 32, T)["hidden"])}
    results = []
    for gather in (False, True):
        module = build_module(config, params, onehot_gather=gather)
        assert isinstance(module, OneHotRNN) and module.gather == gather
        logits = window(module, x, mask)
        F.cross_entropy(logits, y).backward()
        results.append((logits.detach(), {n: p.grad for n, p in module.named_parameters()}))
    (z0, g0), (z1, g1) = results
    assert torch.allclose(z0, z1, rtol=0, atol=1e-6)
    assert g0.keys() == g1.keys() == {CANONICAL[n] for n in params}
    for name in g0:
        assert torch.allclose(g0[name], g1[name], rtol=0, atol=1e-6 * g0[name].abs().max().item()), name


@pytest.mark.parametrize("model,gather", FORMS)
def test_canonical_round_trip_is_exact(model: str, gather: bool) -> None:
    config, params = make(model, seed=20)
    module = build_module(config, params, onehot_gather=gather)
    back = to_canonical(module)
    assert list(back) == list(params)
    for name in params:
        assert back[name].dtype == np.float32 and np.array_equal(back[name], params[name]), name
    again = to_canonical(build_module(config, back, onehot_gather=gather))
    assert all(np.array_equal(again[n], params[n]) for n in params)


def test_canonical_names_map_onto_torch_modules() -> None:
    config, params = make("embedding", seed=21)
    module = build_module(config, params)
    assert isinstance(module, EmbeddingRNN)
    assert isinstance(module.rnn, torch.nn.RNN) and module.rnn.nonlinearity == "tanh" and module.rnn.batch_first
    assert np.array_equal(module.rnn.weight_ih_l0.detach().numpy(), params["rnn.w_ih"])
    assert np.array_equal(module.embedding.weight.detach().numpy(), params["embedding"])
    assert np.array_equal(module.out.bias.detach().numpy(), params["out.bias"])
    assert set(module.state_dict()) == {CANONICAL[n] for n in params}


def test_to_canonical_returns_copies_and_float32_from_float64() -> None:
    config, params = make("onehot", seed=22)
    module = build_module(config, params)
    snapshot = to_canonical(module)
    with torch.no_grad():
        module.out.bias.add_(1.0)
    assert np.array_equal(snapshot["out.bias"], params["out.bias"])
    wide = to_canonical(build_module(config, params, dtype=torch.float64))
    assert all(v.dtype == np.float32 and np.array_equal(v, params[k]) for k, v in wide.items())


def test_compiled_wrapper_keeps_canonical_names() -> None:
    config, params = make("embedding", seed=23)
    module = build_module(config, params)
    back = to_canonical(torch.compile(module))  # wrapping alone compiles nothing
    assert list(back) == list(params)


def test_build_module_touches_no_global_rng() -> None:
    config, params = make("embedding", seed=24)
    before = torch.random.get_rng_state()
    build_module(config, params)
    assert torch.equal(before, torch.random.get_rng_state())


def test_build_module_rejects_weights_of_another_shape() -> None:
    config, params = make("embedding")
    params["rnn.w_hh"] = np.zeros((H + 1, H + 1), np.float32)
    with pytest.raises(UsageError, match="rnn.w_hh"):
        build_module(config, params)
    onehot_config, _ = make("onehot")
    with pytest.raises(UsageError):
        build_module(onehot_config, make("embedding")[1])  # embedding weights, one-hot config


# -- every cell ------------------------------------------------------------------------------------------------

NEW_CELLS = [c for c in CELLS if c != "rnn"]


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("model,gather", FORMS)
@pytest.mark.parametrize("steps", [1, T])
def test_every_cell_matches_the_reference_loop(cell: str, model: str, gather: bool, steps: int) -> None:
    """float64 logits of each cell and form against the equations written out in this file."""
    config, params = make(model, seed=30 + steps, dtype=np.float64, cell=cell)
    x = tokens(31 + steps, steps=steps)
    masks = dropout_masks(32, 0.3, B, steps)
    np_masks = {"input": masks["input"] if model == "embedding" else None, "hidden": masks["hidden"]}
    module = build_module(config, params, dtype=torch.float64, onehot_gather=gather)
    with torch.no_grad():
        got = window(module, torch.from_numpy(x), torch_masks(masks, model, torch.float64)).numpy()
    assert np.abs(got - design_logits(params, x, np_masks, cell)).max() <= 1e-10
    assert isinstance(module.rnn, {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU,
                                   "rnn_relu": torch.nn.RNN, "mingru": StepLayer}[cell])


@pytest.mark.parametrize("cell", [c for c in NEW_CELLS if CELLS[c].num_gates > 1])
def test_cell_equations_tell_the_cells_apart(cell: str) -> None:
    """The reference loop is sensitive to the cell: reading GRU gates in LSTM order (or the reverse) fails."""
    config, params = make("embedding", seed=33, dtype=np.float64, cell=cell)
    x = tokens(34)
    module = build_module(config, params, dtype=torch.float64)
    with torch.no_grad():
        got = window(module, torch.from_numpy(x)).numpy()
    rolled = dict(params)
    G = len(params["rnn.b_ih"]) // H
    for name in ("rnn.w_ih", "rnn.w_hh", "rnn.b_ih", "rnn.b_hh") & params.keys():  # gate blocks in another order
        rolled[name] = np.concatenate(np.split(params[name], G)[::-1])
    assert np.abs(got - design_logits(rolled, x, cell=cell)).max() > 1e-3


@pytest.mark.parametrize("cell", NEW_CELLS)
def test_gather_and_materialized_forms_agree_for_every_cell(cell: str) -> None:
    config, params = make("onehot", seed=35, cell=cell)
    x, y = torch.from_numpy(tokens(36, batch=16)), torch.from_numpy(np.random.default_rng(37).integers(0, V, 16))
    results = []
    for gather in (False, True):
        module = build_module(config, params, onehot_gather=gather)
        logits = window(module, x)
        F.cross_entropy(logits, y).backward()
        results.append((logits.detach(), {n: p.grad for n, p in module.named_parameters()}))
    (z0, g0), (z1, g1) = results
    assert torch.allclose(z0, z1, rtol=0, atol=1e-5)
    assert g0.keys() == g1.keys() == {CANONICAL[n] for n in params}
    for name in g0:
        assert torch.allclose(g0[name], g1[name], rtol=0, atol=1e-5 * g0[name].abs().max().item()), name


# The gather form's steps are written here; the materialized form is torch's own nn.RNN / nn.LSTM / nn.GRU
# (slow set).
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("gather", [pytest.param(False, marks=pytest.mark.slow), True])
def test_every_cell_passes_torch_gradcheck(cell: str, gather: bool) -> None:
    """The hand-written recurrence of the gather form against finite differences (float64)."""
    config, params = make("onehot", seed=38, dtype=np.float64, cell=cell)
    module = build_module(config, params, dtype=torch.float64, onehot_gather=gather)
    x = torch.from_numpy(tokens(39, batch=2, steps=3))
    names = [n for n, _ in module.named_parameters()]

    def fn(*weights: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(module, dict(zip(names, weights)), (x,), {"last_only": True})[0]

    weights = tuple(p.detach().clone().requires_grad_(True) for p in module.parameters())
    assert torch.autograd.gradcheck(fn, weights, eps=1e-6, atol=1e-8)


@pytest.mark.parametrize("cell", NEW_CELLS)
def test_cell_weights_round_trip_and_are_refused_by_another_cell(cell: str) -> None:
    """Weights whose shapes another cell cannot hold are refused by it; shapes alike (rnn and rnn_relu) are the
    configuration's to tell apart, which is why a run folder names its cell."""
    config, params = make("embedding", seed=40, cell=cell)
    back = to_canonical(build_module(config, params))
    assert all(np.array_equal(back[n], params[n]) for n in params)
    assert {n: v.shape for n, v in back.items() if n.startswith("rnn.")} == CELLS[cell].param_shapes(E, H)
    rnn_config, _ = make("embedding", cell="rnn")
    if CELLS[cell].param_shapes(E, H) == CELLS["rnn"].param_shapes(E, H):
        build_module(rnn_config, params)  # loads: nothing in the weights says which of the two they are
        return
    with pytest.raises(UsageError, match=f"do not fit --cell rnn .*they fit --cell {cell}"):
        build_module(rnn_config, params)


@pytest.mark.parametrize("cell", [c for c in CELLS if c in RECURRENT])
def test_the_step_layer_computes_what_torchs_layer_computes(cell: str) -> None:
    """A cell torch has no module for runs in ``StepLayer``; on the cells torch has, the two agree."""
    torch.manual_seed(0)
    reference = RECURRENT[cell](E, H).double()
    layer = StepLayer(cell, E, H).double()
    layer.load_state_dict(reference.state_dict())
    x = torch.randn(B, T, E, dtype=torch.float64)
    (want, want_final), (got, got_final) = reference(x), layer(x)
    assert (want - got).abs().max() <= 1e-12
    for a, b in zip(want_final if isinstance(want_final, tuple) else (want_final,),
                    got_final if isinstance(got_final, tuple) else (got_final,), strict=True):
        assert (a - b).abs().max() <= 1e-12


@pytest.mark.parametrize("positions", [1, 2, 9], ids=["one-start", "two-starts", "many-starts"])
def test_a_chunk_with_poems_starting_inside_runs_in_segments_or_steps_alike(positions: int) -> None:
    """Resets inside a chunk: the fused layer once per stretch (few starts) and the cell step by step (many, past
    ``SEGMENTED_STARTS``) give the same states and gradients."""
    from torchmodels.model import SEGMENTED_STARTS

    config = Config(model="embedding", cell="lstm", context="poem", vocab_size=30, hidden_size=6, embed_dim=5,
                    bptt=10, batch_size=4).validate()
    module = build_module(config, init_params(config), dtype=torch.float64)
    rng = np.random.default_rng(positions)
    x = torch.as_tensor(rng.integers(0, 30, (4, 10)))
    reset = torch.zeros(4, 10, dtype=torch.bool)
    for k, t in enumerate(range(1, 10, max(1, 9 // positions))[:positions]):
        reset[k % 4, t] = True
    assert (positions > SEGMENTED_STARTS * 10) == (positions == 9)
    keep = (~reset).to(torch.float64)
    state = tuple(torch.as_tensor(rng.standard_normal((4, 6))) for _ in range(2))
    inputs = module.layer_inputs(x, None)
    outs = []
    for run in (lambda: module.recur_segments(inputs, state, reset, keep, None),
                lambda: module.recur_steps(module.projected(x, None), state, keep, None)):
        module.zero_grad()
        hs, final = run()
        (hs.square().sum() + final[1].sum()).backward()
        outs.append((hs.detach(), [f.detach() for f in final], module.rnn.weight_hh_l0.grad.clone()))
    (hs_a, final_a, g_a), (hs_b, final_b, g_b) = outs
    torch.testing.assert_close(hs_a, hs_b, rtol=0, atol=1e-12)
    for a, b in zip(final_a, final_b):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    torch.testing.assert_close(g_a, g_b, rtol=0, atol=1e-12)
