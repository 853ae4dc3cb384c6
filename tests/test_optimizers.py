"""wordrnn.core.optimizers: the one registry, and what asks it (the checkpoint check, the roofline, the flag)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import assert_usage_error, run_module

from scratch.optim import make_optimizer
from wordrnn.bench.roofline import train_step_work, working_set_bytes
from wordrnn.core.config import Config
from wordrnn.core.errors import UsageError
from wordrnn.core.optimizers import OPTIMIZERS, get_optimizer
from wordrnn.core.params import param_shapes
from wordrnn.run.folder import check_optimizer_arrays

CONFIG = Config(model="onehot", vocab_size=5, hidden_size=3)


def saved_state(optimizer: str) -> dict[str, np.ndarray]:
    """What a checkpoint of ``optimizer`` holds for CONFIG's model, every array named by the registry."""
    spec, shapes = get_optimizer(optimizer), param_shapes(CONFIG)
    arrays = {spec.slot_name(s, k): np.ones(shape) for s in spec.slots for k, shape in shapes.items()}
    if spec.counts_steps:
        arrays[spec.step_name] = np.array([4])
    arrays.update({spec.counter_name(c): np.array(2) for c in spec.counters})  # NT-ASGD's t0: averaging from 2
    return arrays


def test_state_names_are_prefixed_with_the_optimizer_name():
    assert get_optimizer("adam").state_names(["a", "b"]) == ["adam.step", "adam.m.a", "adam.m.b", "adam.v.a",
                                                             "adam.v.b"]
    assert get_optimizer("sgd").state_names(["a"]) == []


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
def test_the_checkpoint_check_takes_exactly_the_registry_state(optimizer):
    config = replace(CONFIG, optimizer=optimizer)
    spec = get_optimizer(optimizer)
    checked = check_optimizer_arrays(saved_state(optimizer), config)
    assert sorted(checked) == sorted(spec.state_names(list(param_shapes(config))))
    if spec.counts_steps:
        assert checked[spec.step_name].shape == () and checked[spec.step_name].dtype == np.int64
    for other in OPTIMIZERS:
        if other != optimizer and saved_state(other):
            with pytest.raises(UsageError, match="was (not )?written by"):
                check_optimizer_arrays(saved_state(other), config)  # another optimizer's state is refused


def test_an_unknown_optimizer_is_a_usage_error_everywhere_it_is_asked_for():
    config = replace(CONFIG, optimizer="rmsprop")
    for call in (lambda: config.validate(), lambda: get_optimizer("rmsprop"),
                 lambda: check_optimizer_arrays({}, config), lambda: train_step_work(config, 4),
                 lambda: working_set_bytes(config), lambda: make_optimizer("rmsprop", {}, 0.1, 0.0)):
        with pytest.raises(UsageError, match="unknown --optimizer 'rmsprop'; choose one of adam, sgd"):
            call()


def test_the_roofline_counts_each_optimizers_slots():
    shapes = param_shapes(CONFIG)
    total = sum(int(np.prod(s)) for s in shapes.values())
    for name, spec in OPTIMIZERS.items():
        assert working_set_bytes(replace(CONFIG, optimizer=name)) == 4 * total * (2 + len(spec.slots))
    adam, sgd = (train_step_work(replace(CONFIG, optimizer=n, clip=0.0), 4) for n in ("adam", "sgd"))
    assert adam.flops - sgd.flops == pytest.approx((10 - 2) * total)


def test_an_unknown_optimizer_flag_is_one_error_line(tiny_corpus):
    result = run_module("scratch.train", "--data", str(tiny_corpus), "--optimizer", "rmsprop", "--epochs", "1")
    assert_usage_error(result, "--optimizer", "rmsprop")
