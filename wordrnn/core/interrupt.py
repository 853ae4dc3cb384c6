"""Ctrl-C at any moment: one ``interrupted`` line and exit 130, never a lost interrupt or a crash.

Python's own SIGINT handler raises ``KeyboardInterrupt`` in whatever Python code the main thread runs
next. In a JAX process three moments make that go wrong:

- JAX runs a garbage-collector callback (``jax._src.lib._xla_gc_callback``) at every collection, and
  an exception raised inside a gc callback (or a ``__del__``) is printed as "Exception ignored" and
  dropped: the interrupt is lost and training runs on to the end, exit 0.
- An exception raised while an extension module initializes (jaxlib's, NumPy's: JAX's first second)
  leaves it half-built: an ``ImportError`` traceback, or a segmentation fault in the import.
- A jitted step returns before XLA has run it (asynchronous dispatch). An interrupt that ends the
  process then starts interpreter shutdown while XLA's threads still run the step on buffers that
  shutdown frees: a segmentation fault after the right messages.

``deliver_sigint`` sees the first two kinds of frame and delivers the signal again a moment later, once
they have returned; ``drain_device_work`` waits for dispatched work before any command exits. Even then,
tearing the interpreter down after an interrupt destroyed XLA's runtime under its own threads about one
time in eight (``bench.compare`` stopped during its JAX run): ``leave_after_interrupt`` therefore ends an
interrupted command's own process, once its messages are written, without that teardown.
"""

from __future__ import annotations

import gc
import os
import signal
import sys
import threading
from types import FrameType

INTERRUPTED_EXIT = 130  # the shell's code for SIGINT (wordrnn.core.errors says the same)
REDELIVER_SECONDS = 0.02
# Frames whose exceptions Python prints and drops instead of propagating.
_SWALLOWING = ("__del__",)
_IMPORTING = "<frozen importlib._bootstrap"  # both importlib._bootstrap and its _external
_state: dict = {"main_started": False, "pending": None}  # pending: the timer of an interrupt not yet delivered


def _unsafe_here(frame: FrameType | None) -> bool:
    """Whether an exception raised in ``frame`` would be dropped (a gc callback, a ``__del__``) or would
    break a module half-way through its import (an extension module's, fatally)."""
    callbacks = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    while frame is not None:
        code = frame.f_code
        if code in callbacks or code.co_name in _SWALLOWING or code.co_filename.startswith(_IMPORTING):
            return True
        frame = frame.f_back
    return False


def deliver_sigint(signum: int, frame: FrameType | None) -> None:
    """The SIGINT handler. Where raising is unsafe, the same signal again a moment later (from a timer
    thread: sent at once, it would run this handler again before the frame returns). Elsewhere,
    ``KeyboardInterrupt`` once a command's ``main`` runs (its ``@cli`` reports it), and before that an
    ``interrupted`` line and ``SystemExit(130)``."""
    if _unsafe_here(frame):
        # A real signal to the main thread, so that a blocking call there (a sleep, a wait on XLA) wakes; and a
        # note that one is pending, which the command's ``@cli`` honours if it ends before the signal comes again.
        timer = threading.Timer(REDELIVER_SECONDS, signal.pthread_kill, args=(threading.main_thread().ident, signum))
        timer.daemon = True
        _state["pending"] = timer
        timer.start()
        return
    _state["pending"] = None
    if not _state["main_started"]:
        print("\ninterrupted", file=sys.stderr)
        raise SystemExit(INTERRUPTED_EXIT)
    raise KeyboardInterrupt


def take_pending_interrupt() -> bool:
    """Whether a Ctrl-C arrived where raising was unsafe (an import) and has not been delivered since; the caller
    now handles it, so the signal sent again is called off (where it has not gone yet)."""
    timer = _state["pending"]
    if timer is None:
        return False
    timer.cancel()
    _state["pending"] = None
    return True


def quit_on_ctrl_c() -> None:
    """Install ``deliver_sigint`` before a command module's own imports (only where Python's default handler
    is in place: a handler the caller chose, or SIGINT ignored by the parent, is left alone)."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, deliver_sigint)


def install_sigint_handler() -> None:
    """What ``@cli`` calls as ``main`` starts: ``deliver_sigint``, raising ``KeyboardInterrupt`` from now on."""
    _state["main_started"] = True
    quit_on_ctrl_c()


def drain_device_work() -> None:
    """Wait for work JAX has dispatched but not finished, so that no XLA thread runs during shutdown.

    Reads ``sys.modules``: a process that never imported JAX has nothing to wait for (and imports nothing).
    """
    jax = sys.modules.get("jax")
    if jax is None or not hasattr(jax, "live_arrays"):
        return
    # A second Ctrl-C here would start the very shutdown this wait protects; it is over in moments.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        for array in jax.live_arrays():
            array.block_until_ready()
        jax.effects_barrier()
    except Exception:  # noqa: BLE001 - a failed computation has nothing left running; exit as planned
        pass
    finally:
        signal.signal(signal.SIGINT, previous)


def leave_after_interrupt(entry_point: bool) -> None:
    """After Ctrl-C, in the command's own process (``entry_point``) with XLA loaded: wait for XLA's work,
    flush the output and exit 130 at once (``os._exit``). Called as a function (a test, another command),
    nothing happens and the caller goes on. Every ``finally`` has run by now (locks released, temporary
    folders removed) and every write was atomic, so the teardown skipped holds nothing of ours."""
    if not entry_point or "jaxlib" not in sys.modules:
        return
    drain_device_work()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(INTERRUPTED_EXIT)
