"""Transparent huge pages for the large buffers a training step allocates afresh, where glibc can ask for them,
and those buffers kept in the process for the next step.

XLA's CPU runtime allocates a step's temporaries on every call, and so does PyTorch. A poem chunk of 64 x 35
tokens at V 16,000 has logits, softmax and gradient of 143 MB each; glibc maps anything above 32 MB straight
from the kernel and gives it back when freed, so each call faults every 4 KiB page of them in again.
glibc 2.35 and later can ask the kernel for 2 MiB pages on those mappings (the tunable
``glibc.malloc.hugetlb=1``), which the kernel grants where transparent huge pages are "madvise". On
the 2-core box it took 27-45% off JAX's large-size chunk and 7-39% off NumPy's, and left PyTorch's
within its noise (docs/PERFORMANCE.md, "Huge pages").

Huge pages alone still fault a fresh mapping in every step, and the kernel's cost of a 2 MiB fault (zeroing,
and compacting memory to find the page) grew with the buffers: PyTorch at 512 streams spent more time in the
kernel than computing, the "collapse at many streams" (docs/PERFORMANCE.md, "Many streams"). So the tunable
also keeps large blocks inside the heap (``glibc.malloc.mmap_max=0``: no block is mapped on its own) and the
heap's free memory in the process (``glibc.malloc.trim_threshold``, 64 GiB): the next step's buffers reuse the
pages the last one freed, already faulted in. The price is that the process's resident set stays at its peak.

glibc reads its tunables once, when the process starts, so a command that wants them starts itself
again with the tunable set (``exec_with_huge_pages``, first thing under ``__main__``, before any heavy
work): every trainer and the speed benchmarks. ``WORDRNN_HUGE_PAGES=0`` leaves a process as it is.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from wordrnn.core.errors import USAGE_EXIT
from wordrnn.core.interrupt import INTERRUPTED_EXIT, take_pending_interrupt

# huge pages; large blocks from the heap, never mapped apart; the heap never given back (module docstring)
TUNABLE = "glibc.malloc.hugetlb=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"
OPT_OUT = "WORDRNN_HUGE_PAGES"  # "0": never start again with the tunable; "1" or unset: where it helps
THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")
MIN_GLIBC = (2, 35)  # the first glibc with glibc.malloc.hugetlb


def _glibc_version() -> tuple[int, ...] | None:
    name, version = platform.libc_ver()
    if name != "glibc" or not version:
        return None
    return tuple(int(part) for part in version.split(".")[:2])


def tunable_set(environ: dict[str, str] | None = None) -> bool:
    """Whether this environment asks glibc for huge pages."""
    env = os.environ if environ is None else environ
    return "glibc.malloc.hugetlb=" in env.get("GLIBC_TUNABLES", "")


def would_help() -> bool:
    """glibc knows the tunable, and the kernel gives huge pages only to memory that asks ("madvise"): with
    "always" every mapping gets them already, with "never" none can."""
    version = _glibc_version()
    if version is None or version < MIN_GLIBC:
        return False
    try:
        return "[madvise]" in THP_SETTING.read_text()
    except OSError:
        return False


def with_tunable(environ: dict[str, str]) -> dict[str, str]:
    """``environ`` with the huge-page tunable added to whatever ``GLIBC_TUNABLES`` already holds."""
    existing = environ.get("GLIBC_TUNABLES", "")
    return {**environ, "GLIBC_TUNABLES": f"{existing}:{TUNABLE}" if existing else TUNABLE}


def exec_with_huge_pages() -> None:
    """Start this command again, the same arguments, with the tunable set, unless it is set already, would not
    help, or ``WORDRNN_HUGE_PAGES=0``. Returns only when it does not start again; any other value of that
    variable than 0 or 1 is refused (one line, exit 2), as a bad flag would be."""
    setting = os.environ.get(OPT_OUT, "1")
    if setting not in ("0", "1"):
        print(f"error: {OPT_OUT} must be 0 (no huge pages) or 1 (huge pages where they help), got {setting!r}",
              file=sys.stderr)
        raise SystemExit(USAGE_EXIT)
    if setting == "0" or tunable_set() or not would_help():
        return
    if take_pending_interrupt():  # a Ctrl-C during the imports before this: the new process would never see it
        print("\ninterrupted", file=sys.stderr)
        raise SystemExit(INTERRUPTED_EXIT)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], with_tunable(dict(os.environ)))
