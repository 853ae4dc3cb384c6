"""Shared fixtures: tiny corpora made in the test, and the real corpus when $WORDRNN_DATA names it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A test run started in the background of a non-interactive shell (`nohup make test &`) inherits SIGINT ignored, and
# so would every command the tests start, which Ctrl-C then cannot reach: give them the default a terminal gives
# (a Python handler, unlike SIG_IGN, is reset to the default in a child that execs).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

# Subprocesses may run in another folder: make the corpus path absolute once.
if os.environ.get("WORDRNN_DATA"):
    os.environ["WORDRNN_DATA"] = str(Path(os.environ["WORDRNN_DATA"]).resolve())

TINY_POEMS = [
    "The sea is calm tonight,\nthe tide is full, the moon lies fair\nupon the straits.",
    "My love is like a red, red rose\nthat's newly sprung in June;\nmy love is like the melody\n"
    "that's sweetly played in tune.",
    "I wandered lonely as a cloud\nthat floats on high o'er vales and hills,\nwhen all at once I saw a crowd,\n"
    "a host, of golden daffodils.",
    "The night is calm, the sea is full;\nmy love, the moon is on the sea.\nI wandered by the tide.",
    "A rose, a cloud, the sea, the moon:\nthe night is full of love and tune.",
    "The tide is calm and the night is fair;\nI saw the sea, I saw the rose.",
]


def write_tiny_corpus(folder: Path, poems: list[str] | None = None) -> Path:
    """A .txt corpus: poems separated by two blank lines."""
    path = folder / "tiny.txt"
    path.write_text("\n\n\n".join(poems or TINY_POEMS) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    return write_tiny_corpus(tmp_path)


@pytest.fixture
def real_corpus() -> Path:
    value = os.environ.get("WORDRNN_DATA")
    if not value or not Path(value).is_file():
        pytest.skip("WORDRNN_DATA does not name the real corpus")
    return Path(value)


def _child_env(env: dict | None, unset: tuple[str, ...]) -> dict:
    """This process's environment without ``unset``, the repo on ``PYTHONPATH``, then ``env`` over it."""
    inherited = {k: v for k, v in os.environ.items() if k not in unset}
    return {**inherited, "PYTHONPATH": str(ROOT), **(env or {})}


def run_module(module: str, *args: str, cwd: Path | None = None, env: dict | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m module args`` from the repo root (or ``cwd``) and capture its output."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd or ROOT, env=_child_env(env, ()),
                          capture_output=True, text=True, timeout=timeout)


def run_python(code: str, *args: str, cwd: Path | None = None, env: dict | None = None,
               unset: tuple[str, ...] = (), timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``python -c code args`` in a fresh interpreter from the repo root (or ``cwd``), without the
    environment variables ``unset``, and capture its output."""
    return subprocess.run([sys.executable, "-c", code, *args], cwd=cwd or ROOT, env=_child_env(env, unset),
                          capture_output=True, text=True, timeout=timeout)


def assert_usage_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit 2, one `error:` line naming the problem, and no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert "usage:" not in result.stderr, result.stderr  # argparse's usage block is not part of the one line
    lines = [line for line in result.stderr.strip().splitlines() if "error:" in line]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def window_step(backend, state, x, y, step: int):
    """One training step of ``backend`` on a batch of windows ``x`` [B, T] with targets ``y`` [B]: the chunk
    from a zero state scored at its last position. Returns the state and the loss."""
    from data.streams import window_chunk

    state, loss, _ = backend.train_step(state, window_chunk(x, y), None, step)
    return state, loss


def window_logits(backend, state, x):
    """``backend``'s logits [B, V] of windows ``x`` [B, T] (the last position, from a zero state)."""
    return backend.logits(state, x, last_only=True)[0]


def the_page():
    """``(page_of, write, assert_page_writes)`` of tests/test_web_browser.py, the page in headless Chromium; a
    skip where it cannot run here (no Playwright, no Chromium, or no onnxruntime-web in node_modules)."""
    pytest.importorskip("playwright.sync_api")
    from test_web_browser import CHROMIUM, assert_page_writes, page_of, write

    from export import web as export_web

    if not CHROMIUM.is_file() or not (export_web.ORT_DIST / export_web.ORT_FILES[0]).is_file():
        pytest.skip("needs Chromium and onnxruntime-web in node_modules")
    return page_of, write, assert_page_writes
