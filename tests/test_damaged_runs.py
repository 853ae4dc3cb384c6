"""Every file of a run folder damaged in many ways (cut short, a value of the wrong type, a value out of range,
another tool's content): every command that reads the file refuses in one `error:` line with exit 2 and leaves the
folder as it was. Another tool's metadata in a weights file is the one harmless change: it is ignored.

The commands run in this process through their ``main(argv)``, on copies of one tiny run folder made once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import write_tiny_corpus
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.numpy import save_file
from test_reliability import trainer

from export import onnx as export_onnx
from scratch import generate as scratch_generate
from scratch import train as scratch_train
from wordrnn.core.config import Config, field_types
from wordrnn.run.corpus_record import CORPUS
from wordrnn.run.folder import CHECKPOINT, CONFIG, METRICS, ROW_NUMBERS, VOCAB, WEIGHTS
from wordrnn.run.lock import LOCK

# The commands that read each file (resume rewrites weights.safetensors from the checkpoint; it never reads it).
READERS = {CONFIG: ("generate", "export", "resume"), VOCAB: ("generate", "export", "resume"),
           WEIGHTS: ("generate", "export"), CHECKPOINT: ("resume",), METRICS: ("export", "resume"),
           CORPUS: ("resume",), LOCK: ("resume",)}
KINDS = ("truncate", "wrong type", "out of range", "foreign")
FOREIGN_METADATA = {"format": "pt"}  # what torch's and Hugging Face's safetensors writers put in the header
ODD_VALUES = ["x", [1], {"a": 1}, True, None, 1.5, 7]
FIELDS = {f.name: f for f in dataclasses.fields(Config)}


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# For each key a command reads from a JSON file: what its type is, and values out of its range.
JSON_KEYS: dict[str, dict[str, tuple[Callable, list]]] = {
    CONFIG: {"format_version": (_whole, [-1, 0]),
             **{name: (kind.accepts,
                       ["bogus"] if FIELDS[name].metadata.get("choices")
                       else [-1] if kind.kind is int
                       else [-1.0, math.nan, math.inf] if kind.kind is float else [])
                for name, kind in field_types(Config).items()}},
    VOCAB: {"tokens": (lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v), [[], ["a", "b"]]),
            "tokenizer": (lambda v: isinstance(v, str), ["bogus"]), "min_freq": (_whole, [0, -1])},
    CORPUS: {"path": (lambda v: isinstance(v, str), []), "size": (_whole, [-1]),
             "sha256": (lambda v: isinstance(v, str), ["abc", "z" * 64])},
    METRICS: {"epoch": (_whole, [0, -1]), **{name: (_number, [-1.0, math.nan, math.inf]) for name in ROW_NUMBERS}},
    LOCK: {"pid": (_whole, [0, -1, 2**40]), "host": (lambda v: isinstance(v, str), []),
           "started": (_number, [-1, 1e300])},
}


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> tuple[Path, Path]:
    """(a one-epoch run folder, its corpus), made once."""
    folder = tmp_path_factory.mktemp("damaged")
    corpus = write_tiny_corpus(folder)
    run = folder / "run"
    assert scratch_train.main(trainer(corpus, run, "--epochs", "1", "--hidden-size", "4", "--embed-dim", "3")) == 0
    (run / "samples.txt").unlink()  # nothing reads it
    return run, corpus


def contents(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def lock_document() -> dict:
    """A lock of a live process on this host (this one): on its own, already a refusal."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}


# ---------------------------------------------------------------- the damage, drawn

@st.composite
def damages(draw) -> tuple[str, str, Callable[[Path], None]]:
    """(file, kind, apply): ``apply(folder)`` damages ``folder/file`` in that way."""
    name = draw(st.sampled_from(sorted(READERS)))
    kind = draw(st.sampled_from(KINDS))
    if name.endswith(".safetensors"):
        return name, kind, draw(safetensors_damage(name, kind))
    return name, kind, draw(json_damage(name, kind))


def read_json_lines(path: Path, name: str) -> list[dict]:
    if name == LOCK:
        return [lock_document()]
    text = path.read_text()
    return [json.loads(line) for line in text.splitlines()] if name == METRICS else [json.loads(text)]


def write_json_lines(path: Path, name: str, documents: list) -> None:
    if name == METRICS:
        path.write_text("".join(json.dumps(d) + "\n" for d in documents))
    else:
        path.write_text(json.dumps(documents[0], indent=2) + "\n")


@st.composite
def json_damage(draw, name: str, kind: str) -> Callable[[Path], None]:
    keys = JSON_KEYS[name]
    if kind == "truncate":
        share = draw(st.floats(0, 1))

        def cut(folder: Path) -> None:
            path = folder / name
            if name == LOCK:
                write_json_lines(path, name, [lock_document()])
            data = path.read_bytes()
            # a JSON document ends "}\n": without its last two bytes it cannot parse; a metrics file keeps one byte,
            # since no row at all is what a folder without a complete epoch holds
            least = 1 if name == METRICS else 0
            path.write_bytes(data[:least + int(share * (len(data) - 2 - least))])

        return cut
    if kind == "foreign":
        def foreign(folder: Path) -> None:
            write_json_lines(folder / name, name, [FOREIGN_METADATA])

        return foreign
    key = draw(st.sampled_from(sorted(keys)))
    is_type, out_of_range = keys[key]
    if kind == "wrong type":
        value = draw(st.sampled_from([v for v in ODD_VALUES if not is_type(v)]))
    else:
        value = draw(st.sampled_from(out_of_range)) if out_of_range else draw(st.sampled_from(
            [v for v in ODD_VALUES if not is_type(v)]))

    def replace(folder: Path) -> None:
        path = folder / name
        documents = read_json_lines(path, name)
        for document in documents:
            document[key] = value
        write_json_lines(path, name, documents)

    return replace


def read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    with safe_open(path, framework="numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}


@st.composite
def safetensors_damage(draw, name: str, kind: str) -> Callable[[Path], None]:
    index = draw(st.integers(0, 1000))
    if kind == "truncate":
        share = draw(st.floats(0, 1, exclude_max=True))

        def cut(folder: Path) -> None:
            data = (folder / name).read_bytes()
            (folder / name).write_bytes(data[:int(share * len(data))])

        return cut
    if kind == "foreign":
        def foreign(folder: Path) -> None:
            arrays, _ = read_safetensors(folder / name)
            save_file(arrays, folder / name, metadata=FOREIGN_METADATA)

        return foreign
    counters = name == CHECKPOINT and draw(st.booleans())
    if counters:  # the loop's counters in the checkpoint's header
        field = draw(st.sampled_from(["epoch", "step", "best.epoch", "best.bad_epochs", "best.val_loss"]))
        wrong = ["1", [1], None] + ([] if field == "best.val_loss" else [1.5])  # 1.5 is a loss, not a count
        value = draw(st.sampled_from(wrong) if kind == "wrong type"
                     else st.sampled_from([-1, 0]) if field == "epoch" else st.just(-1))

        def edit_counters(folder: Path) -> None:
            arrays, header = read_safetensors(folder / name)
            parsed = {k: json.loads(v) for k, v in header.items()}
            if field.startswith("best."):
                parsed["best"][field[5:]] = value if field != "best.epoch" or kind == "wrong type" else 2
            else:
                parsed[field] = value
            save_file(arrays, folder / name, metadata={k: json.dumps(v) for k, v in parsed.items()})

        return edit_counters
    change = draw(st.sampled_from(["dtype", "shape"]) if kind == "wrong type" else st.sampled_from(["nan", "inf"]))
    dtype = draw(st.sampled_from(["float16", "float64", "int32"]))

    def edit_array(folder: Path) -> None:
        arrays, header = read_safetensors(folder / name)
        floats = sorted(k for k, v in arrays.items() if v.dtype == np.float32)
        key = floats[index % len(floats)]
        if change == "dtype":
            arrays[key] = arrays[key].astype(dtype)
        elif change == "shape":
            arrays[key] = np.concatenate([arrays[key], arrays[key][:1]])
        else:
            arrays[key] = arrays[key].copy()
            arrays[key].flat[index % arrays[key].size] = np.nan if change == "nan" else np.inf
        save_file(arrays, folder / name, metadata=header or None)

    return edit_array


# ---------------------------------------------------------------- the commands, in this process

def run(main, argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv) or 0
        except SystemExit as stop:
            code = stop.code
    return code, err.getvalue()


def commands(folder: Path, corpus: Path, out: Path) -> dict[str, tuple]:
    return {"generate": (scratch_generate.main, ["--run", str(folder), "--words", "3", "--strategy", "greedy"]),
            "export": (export_onnx.main, ["--run", str(folder), "--out", str(out), "--reference", "numpy"]),
            "resume": (scratch_train.main, trainer(corpus, folder, "--resume", "--epochs", "2", "--hidden-size", "4",
                                                   "--embed-dim", "3"))}


@settings(max_examples=int(os.environ.get("WORDRNN_DAMAGE_EXAMPLES", "150")), deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(damage=damages())
def test_every_command_refuses_a_damaged_file_in_one_line_and_leaves_the_folder(made, damage):
    source, corpus = made
    name, kind, apply = damage
    event(f"{name}: {kind}")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(shutil.copytree(source, Path(scratch) / "run"))
        apply(folder)
        before = contents(folder)
        harmless = name == WEIGHTS and kind == "foreign"  # another tool's metadata beside wordrnn's weights
        for command in READERS[name]:
            out = Path(scratch) / f"{command}.onnx"
            main, argv = commands(folder, corpus, out)[command]
            code, err = run(main, argv)
            lines = [line for line in err.splitlines() if "error:" in line]
            if harmless:
                assert code == 0, (command, err)
            else:
                assert code == 2 and len(lines) == 1, (name, kind, command, code, err)
                assert "Traceback" not in err and not out.exists(), err
            assert contents(folder) == before, (name, kind, command)
