"""One process at a time trains into a run folder.

Two trainers on one ``--out`` would each rewrite the other's checkpoint and weights: the last writer
wins and the first run is silently gone. While a process trains, the folder holds ``LOCK``: a small
JSON file with the process id, the host and when it started, created exclusively (``O_EXCL``) so that
of two processes starting together exactly one gets it, and removed when training ends, however it ends.

A lock left by a process that was killed (``kill -9``, a power cut) is stale: on the same host, a
process id that no longer runs is recognised and the lock replaced, with a note. A lock from another
host (a shared file system) cannot be checked from here; the message says how to remove it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

from wordrnn.core.errors import UsageError
from wordrnn.run.folder import check_out_dir

T = TypeVar("T")

LOCK = "wordrnn.lock"
PID_MAX = 2**22  # Linux's largest process id (pid_max's ceiling)
# What each field of a lock must hold to be read (the time: seconds since 1970, before the year 3000).
LOCK_FIELDS: dict[str, Callable[[Any], bool]] = {
    "pid": lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 < v <= PID_MAX,
    "host": lambda v: isinstance(v, str),
    "started": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 32503680000,
}


def _holder(path: Path) -> dict[str, Any] | None:
    """The lock's fields that have their type and range (a process id, a host name, a start time); ``{}`` for a
    lock being written, unreadable or damaged; None if there is none."""
    try:
        holder = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    if not isinstance(holder, dict):
        return {}
    return {name: value for name, value in holder.items() if name in LOCK_FIELDS and LOCK_FIELDS[name](value)}


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it runs
        return True
    return True


def _is_stale(holder: dict[str, Any]) -> bool:
    return holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int) \
        and not _running(holder["pid"])


def _refusal(run_dir: Path, holder: dict[str, Any]) -> UsageError:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder["started"])) if "started" in holder else "?"
    return UsageError(f"{run_dir} is in use: process {holder.get('pid', '?')} on {holder.get('host', '?')} has "
                      f"been training into it since {since}; wait for it to finish or choose another --out "
                      f"(if that process is gone, delete {run_dir / LOCK})")


def acquire(run_dir: Path) -> bool:
    """Take the folder's lock (creating the folder); returns whether the folder was created for it.

    Raises ``UsageError`` naming the holder when another live process has it.
    """
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    mine = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()})
    for _ in range(2):  # a second try only after removing a stale lock
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if holder is None:
                continue  # released in between
            if not _is_stale(holder):
                raise _refusal(run_dir, holder) from None
            print(f"note: removed the stale lock of process {holder['pid']} (no longer running) in {run_dir}",
                  file=sys.stderr)
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(mine)
        return created
    raise UsageError(f"could not lock {run_dir}: another process keeps taking it; try again")


def release(run_dir: Path, created: bool) -> None:
    """Remove our lock, and the folder too if it was made for the lock and nothing else was written."""
    path = run_dir / LOCK
    holder = _holder(path)
    if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
        path.unlink(missing_ok=True)
    _release_folder(run_dir, created)


def _release_folder(run_dir: Path, created: bool) -> None:
    if created:
        try:
            run_dir.rmdir()  # only if empty: a run that wrote anything keeps its folder
        except OSError:
            pass


@contextmanager
def locked(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir``'s lock for the duration of the block."""
    check_out_dir(run_dir)  # a folder that cannot be made is refused in words before the lock tries
    created = acquire(run_dir)
    try:
        yield
    finally:
        release(run_dir, created)


def holds_run_lock(train: Callable[..., T]) -> Callable[..., T]:
    """Wrap ``train(config, backend, run_dir, ...)``: the process that writes (JAX's first; every other one
    of a multi-process run only reads) holds the folder's lock while it trains."""

    @wraps(train)
    def wrapper(config: Any, backend: Any, run_dir: str | Path, *args: Any, **kwargs: Any) -> T:
        if backend.process_index != 0:
            return train(config, backend, run_dir, *args, **kwargs)
        with locked(Path(run_dir)):
            return train(config, backend, run_dir, *args, **kwargs)

    return wrapper
