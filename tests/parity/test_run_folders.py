"""Run folders written by each framework load in the other two and give the same logits.

For every model and cell, each framework trains one epoch of the tiny corpus through ``wordrnn.run.loop.train``
from the same initial weights, on the same batches. The three run folders
then hold weights within the trajectory tolerance of each other, and the
weights of every one of them give the same logits (1e-5) in all three
frameworks' ``Backend.logits``, the path that evaluation and generation use.
"""

from __future__ import annotations

from dataclasses import replace
from itertools import combinations

import numpy as np
from conftest import window_logits, write_tiny_corpus

from data.dataset import load_dataset
from wordrnn.core import tolerances
from wordrnn.core.config import Config
from wordrnn.core.params import init_params
from wordrnn.run.folder import load_run
from wordrnn.run.loop import train
from wordrnn.testing import parity as pc


def test_run_folders_load_in_every_framework(model, cell, small, tmp_path):
    config = Config(model=model, cell=cell, data=str(write_tiny_corpus(tmp_path)), min_freq=1, epochs=1, seed=0,
                    hidden_size=small["hidden_size"], embed_dim=small["embed_dim"], seq_len=small["seq_len"],
                    batch_size=small["batch_size"])
    dataset = load_dataset(**config.dataset_args())
    for framework in pc.FRAMEWORKS:
        train(replace(config), pc.backend_for(framework), tmp_path / framework, quiet=True, dataset=dataset,
              write_samples=False)
    runs = {fw: load_run(tmp_path / fw) for fw in pc.FRAMEWORKS}

    # same start, same batches: the three trained alike, and training moved the weights
    for a, b in combinations(pc.FRAMEWORKS, 2):
        assert runs[a].framework == a and runs[a].vocab.tokens == runs[b].vocab.tokens
        for name, value in runs[a].params.items():
            assert pc.max_abs_diff(value, runs[b].params[name]) <= tolerances.TRAJECTORY, (a, b, name)
    start = init_params(runs["numpy"].config)
    moved = max(pc.max_abs_diff(start[k], v) for k, v in runs["numpy"].params.items())
    assert moved > 100 * tolerances.TRAJECTORY

    # each framework's weights, loaded by all three, give the same logits
    assert len(dataset.val_x) > 0
    for writer, run in runs.items():
        logits = {}
        for framework in pc.FRAMEWORKS:
            backend = pc.backend_for(framework)
            logits[framework] = window_logits(backend, backend.init(run.params, run.config), dataset.val_x)
        for a, b in combinations(pc.FRAMEWORKS, 2):
            diff = pc.max_abs_diff(logits[a], logits[b])
            assert diff <= tolerances.LOGITS[np.float32], f"{writer}'s weights: {a} vs {b} differ by {diff:.2e}"
