"""Two ways to fail, each one clear line and no traceback.

- ``UsageError``: the input was wrong (a flag, a file, a run folder). The
  message says what and what to do; the command exits 2 (as argparse does).
- ``RunFailed``: the input was fine but the work could not be done (training
  diverged, the disk is full, an exported model does not match its source).
  The message says what happened and what was kept; the command exits 1.

An ``OSError`` that names a path (a folder the user may not write, a read-only
or full disk, a missing parent) is one line naming that path too: exit 2, or 1
for a full disk, which is no fault of the input.

A Ctrl-C ends a command with 130, the shell's code for SIGINT, after one
``interrupted`` line (the training loop says what it kept).
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import os
import sys
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

from wordrnn.core.interrupt import (
    INTERRUPTED_EXIT,
    drain_device_work,
    install_sigint_handler,
    leave_after_interrupt,
    quit_on_ctrl_c,
    take_pending_interrupt,
)

T = TypeVar("T")

FAILED_EXIT = 1
USAGE_EXIT = 2
# The libraries a command may lack, by the extra of pyproject.toml that installs them ("": the package itself).
EXTRAS = {"numpy": "", "safetensors": "", "tqdm": "", "threadpoolctl": "", "matplotlib": "", "torch": "torch",
          "jax": "jax", "jaxlib": "jax", "flax": "jax", "optax": "jax", "onnx": "onnx", "onnxruntime": "onnx",
          "onnxscript": "onnx", "jax2onnx": "jax2onnx", "optuna": "search"}


class UsageError(Exception):
    """Bad input from the user: the message says what is wrong and what to do."""


class RunFailed(Exception):
    """The work could not be completed: the message says what happened and what was kept."""


class DiskFull(RunFailed):
    """A write ran out of space; the file it would have replaced is intact."""


class CommandParser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (``prog: error: ...``) and exit 2 instead of the usage block."""

    def error(self, message: str):  # noqa: ANN201 - argparse's signature
        self.exit(USAGE_EXIT, f"{self.prog}: error: {message}; see --help\n")


def plural(n: int, word: str) -> str:
    """``1 epoch``, ``2 epochs``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def cli(main: Callable[..., T]) -> Callable[..., T]:
    """Wrap a command's ``main``: ``UsageError`` exits 2, ``RunFailed`` exits 1, each after one ``error:`` line;
    a Ctrl-C that the command does not handle itself exits 130."""

    entry_point = main.__module__ == "__main__"  # run as ``python -m``, not called by a test or a command

    @wraps(main)
    def wrapper(*args, **kwargs):
        install_sigint_handler()
        try:
            try:
                code = _reported(main, *args, **kwargs)
            except SystemExit:
                if take_pending_interrupt():  # a Ctrl-C during an import, not delivered before the command ended
                    raise KeyboardInterrupt from None
                raise
            if take_pending_interrupt():
                raise KeyboardInterrupt
            if code == INTERRUPTED_EXIT:  # a command that reported its own interrupt
                leave_after_interrupt(entry_point)
            return code
        except KeyboardInterrupt:  # in the command, or while its error was being reported
            print("\ninterrupted", file=sys.stderr)
            leave_after_interrupt(entry_point)
            raise SystemExit(INTERRUPTED_EXIT) from None
        finally:
            drain_device_work()

    return wrapper


def start_command(*libraries: str) -> None:
    """What a command module runs first as ``__main__``, before its own imports: a Ctrl-C while they load is one
    ``interrupted`` line (exit 130), and a Python that lacks one of ``libraries`` or of wordrnn's own
    dependencies (the system Python, say) is one line saying what to install (exit 2), ``--help`` included."""
    quit_on_ctrl_c()
    own = [name for name, extra in EXTRAS.items() if not extra and name != "matplotlib"]  # matplotlib: plots only
    missing = [name for name in (*own, *libraries) if importlib.util.find_spec(name) is None]
    if missing:
        print(f"error: {missing_library(*missing)}", file=sys.stderr)
        raise SystemExit(USAGE_EXIT)


def _reported(main: Callable[..., T], *args, **kwargs) -> T:
    """``main``'s result, or its error as one line and ``SystemExit`` with the error's code."""
    try:
        if take_pending_interrupt():  # a Ctrl-C while the command's modules were imported
            raise KeyboardInterrupt
        return main(*args, **kwargs)
    except ImportError as err:
        if not isinstance(err, ModuleNotFoundError) or (err.name or "").split(".")[0] not in EXTRAS:
            raise
        print(f"error: {missing_library(err.name)}", file=sys.stderr)
        raise SystemExit(USAGE_EXIT) from None
    except UsageError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(USAGE_EXIT) from None
    except RunFailed as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(FAILED_EXIT) from None
    except OSError as err:
        if err.filename is None:
            raise
        full = err.errno in (errno.ENOSPC, errno.EDQUOT)
        print(f"error: {path_error(err)}", file=sys.stderr)
        raise SystemExit(FAILED_EXIT if full else USAGE_EXIT) from None


def missing_library(*names: str) -> str:
    """Libraries this Python lacks, and the two ways to get them (one line)."""
    tops = list(dict.fromkeys(name.split(".")[0] for name in names))
    extras = sorted({EXTRAS[top] for top in tops if EXTRAS[top]})
    extra = f"[{','.join(extras)}]" if extras else ""
    them = "it" if len(tops) == 1 else "them"
    return (f"this command needs {', '.join(tops)}, which {sys.executable} cannot import; run it with the "
            f"environment `make setup` builds (.venv/bin/python -m ...), or install {them}: pip install -e '.{extra}'")


def path_error(err: OSError) -> str:
    """An ``OSError`` on a path, in words, with what to do (one line)."""
    reason = err.strerror or os.strerror(err.errno or 0)
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = "free some space and run the command again"
    elif err.errno == errno.EISDIR:
        advice = "a folder stands where a file belongs: move it away, or give another path"
    else:
        advice = "give a path in a folder you can write to (and that exists)"
    return f"cannot use {err.filename}: {reason}; {advice}"
