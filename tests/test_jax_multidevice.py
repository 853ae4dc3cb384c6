"""Data parallelism: 4 (forced) CPU devices, uneven batches, two processes on 127.0.0.1; both contexts on 4 devices
and across two processes (in the poem context the streams are sharded, the carried state with them).

JAX fixes its device count when it starts, so each check runs in a subprocess
with ``XLA_FLAGS=--xla_force_host_platform_device_count=N``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, assert_usage_error, run_module

FOUR_DEVICES = {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}

# Trains 10 windows with batch size 4 (batches of 4, 4 and 2) on the first N devices, or (context "poem")
# 9 poems in 4 streams, chunks of 5 tokens with the state carried, and prints the losses and final weights;
# with a process id it first joins a two-process run.
SCRIPT = """
import json, sys
import numpy as np
from jaxmodels import devices as devs
if len(sys.argv) > 3:
    devs.init_distributed(sys.argv[3], 2, int(sys.argv[2]))
from wordrnn.core.config import Config
from wordrnn.core.params import init_params
from jaxmodels.backend import JaxBackend
from data.streams import epoch_chunks, window_chunk

def run(model, n_devices, dropout, context="window"):
    config = Config(model=model, vocab_size=40, hidden_size=16, embed_dim=8, seq_len=3, batch_size=4,
                    dropout=dropout, lr=0.01, context=context, bptt=5, cell="lstm" if context == "poem" else "rnn")
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 40, (10, 3)), rng.integers(0, 40, 10)
    backend = JaxBackend(devs.select_devices("cpu", n_devices))
    state = backend.init(init_params(config), config)
    losses = []
    if context == "poem":
        poems = [rng.integers(1, 40, n) for n in rng.integers(3, 12, 9)]
        for epoch in range(2):
            carry = None
            for step, c in enumerate(epoch_chunks(poems, 4, 5, 0, epoch), start=10 * epoch):
                state, loss, carry = backend.train_step(state, c, carry, step)
                losses.append(float(loss))
        logits = backend.logits(state, np.stack([p[:3] for p in poems[:3]]))[0]
        weights = {k: v.tolist() for k, v in backend.canonical(state).items()}
        return {"devices": len(backend.devices), "padded": backend.padded_batch(2, config), "losses": losses,
                "weights": weights, "logits": logits.tolist()}
    for epoch in range(2):
        for step, start in enumerate(range(0, 10, 4), start=3 * epoch):
            state, loss, _ = backend.train_step(state, window_chunk(x[start:start + 4], y[start:start + 4]), None, step)
            losses.append(float(loss))
    weights = {k: v.tolist() for k, v in backend.canonical(state).items()}
    return {"devices": len(backend.devices), "padded": backend.padded_batch(2, config), "losses": losses,
            "weights": weights, "logits": backend.logits(state, x[:3], last_only=True)[0].tolist()}

runs = [run(*case) for case in json.loads(sys.argv[1])]
print("RESULT " + json.dumps(runs))
"""


def run_script(tmp_path, cases, *extra, env=None, background=False):
    script = tmp_path / "dp.py"
    script.write_text(SCRIPT)
    args = [sys.executable, str(script), json.dumps(cases), *extra]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    if background:
        # files, not pipes: a process blocked writing a full pipe would never reach the other's shutdown barrier
        out = tmp_path / f"process-{extra[0]}.out"
        with out.open("w") as sink:  # the child holds its own copy of the file
            return subprocess.Popen(args, cwd=ROOT, env=full_env, stdout=sink, stderr=subprocess.STDOUT,
                                    text=True), out
    result = subprocess.run(args, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=300)
    return parse(result.returncode, result.stdout, result.stderr)


def parse(code, stdout, stderr):
    assert code == 0, stderr[-3000:]
    line = next(line for line in stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def assert_same_training(a, b):
    np.testing.assert_allclose(a["losses"], b["losses"], rtol=0, atol=1e-5)
    for name in a["weights"]:
        np.testing.assert_allclose(a["weights"][name], b["weights"][name], rtol=0, atol=1e-5, err_msg=name)
    np.testing.assert_allclose(a["logits"], b["logits"], rtol=0, atol=1e-5)


def test_four_devices_train_like_one(tmp_path):
    cases = [["embedding", 1, 0.0], ["embedding", 4, 0.0], ["embedding", 3, 0.0], ["onehot", 1, 0.0],
             ["onehot", 3, 0.0], ["embedding", 1, 0.3], ["embedding", 4, 0.3]]
    one, four, three, onehot_one, onehot_three, one_dropout, four_dropout = run_script(tmp_path, cases,
                                                                                        env=FOUR_DEVICES)
    assert [r["devices"] for r in (one, four, three)] == [1, 4, 3]
    # the last batch (2 windows) is padded to the full batch (4), evenly split: 4, 4 and 6 rows
    assert [r["padded"] for r in (one, four, three)] == [4, 4, 6]
    assert_same_training(one, four)
    assert_same_training(one, three)
    assert_same_training(onehot_one, onehot_three)
    # same padded shape, so the same dropout masks however the batch is split
    assert_same_training(one_dropout, four_dropout)
    assert np.abs(np.subtract(one["losses"], one_dropout["losses"])).max() > 1e-3


@pytest.mark.slow
def test_four_devices_train_poems_like_one(tmp_path):
    """The poem context: the streams (4, or padded to 6 on 3 devices) and their carried state are sharded."""
    cases = [[model, n, dropout, "poem"] for model, n, dropout in (("embedding", 1, 0.0), ("embedding", 4, 0.0),
                                                                   ("embedding", 3, 0.0), ("onehot", 1, 0.0),
                                                                   ("onehot", 4, 0.0), ("embedding", 1, 0.3),
                                                                   ("embedding", 4, 0.3))]
    one, four, three, onehot_one, onehot_four, one_dropout, four_dropout = run_script(tmp_path, cases,
                                                                                        env=FOUR_DEVICES)
    assert [r["devices"] for r in (one, four, three)] == [1, 4, 3]
    assert len(one["losses"]) > 4  # several chunks an epoch: the state is carried
    assert_same_training(one, four)
    assert_same_training(one, three)
    assert_same_training(onehot_one, onehot_four)
    assert_same_training(one_dropout, four_dropout)


def test_devices_flag_on_four_devices(tiny_corpus, tmp_path):
    result = run_module("jaxmodels.train", "--devices", "9", "--data", str(tiny_corpus),
                        "--out", str(tmp_path / "run"), env=FOUR_DEVICES)
    assert_usage_error(result, "--devices 9", "only 4 cpu device")
    result = run_module("jaxmodels.train", "--devices", "4", "--data", str(tiny_corpus), "--out",
                        str(tmp_path / "run"), "--epochs", "1", "--min-freq", "1", "--batch-size", "6",
                        "--hidden-size", "8", "--embed-dim", "4", env=FOUR_DEVICES)
    assert result.returncode == 0, result.stderr
    assert "jax devices: 4 x cpu" in result.stdout
    assert json.loads((tmp_path / "run" / "config.json").read_text())["extra"]["devices"] == 4


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("context", ["window", "poem"])
def test_two_processes_train_like_one_device(tmp_path, context):
    """jax.distributed on the CPU backend (gloo): 2 processes x 2 devices = one 4-device mesh; in the poem context
    the streams and their carried state are sharded across both processes."""
    address = f"127.0.0.1:{free_port()}"
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    procs = [run_script(tmp_path, [["embedding", None, 0.0, context]], str(pid), address, env=env, background=True)
             for pid in (0, 1)]
    try:
        codes = [p.wait(timeout=300) for p, _ in procs]
    finally:
        for p, _ in procs:
            p.kill()
    outputs = [out.read_text() for _, out in procs]  # stdout and stderr together
    results = [parse(code, text, text)[0] for code, text in zip(codes, outputs, strict=True)]
    (one,) = run_script(tmp_path, [["embedding", 1, 0.0, context]])
    for result in results:
        assert result["devices"] == 4
        assert_same_training(one, result)
