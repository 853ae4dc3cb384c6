"""Output paths checked before any work: a command that would fail at its first write says so at once."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from wordrnn.core.errors import UsageError

REPORT_RUNS = "runs"  # the folder of a report (python -m wordrnn.bench.compare) that holds its run folders
TMP_SUFFIX = ".tmp"  # what every temporary file of an atomic write ends with (a later run removes orphans)


def check_writable(path: str | Path, flag: str = "--out") -> None:
    """Refuse, before any work, an output path in a place nothing can be written (permissions, a read-only
    or pseudo file system): a file is made and removed in ``path`` or its nearest existing parent."""
    path = Path(path)
    where = next((p for p in (path, *path.parents) if p.is_dir()), Path("."))
    try:
        fd, probe = tempfile.mkstemp(dir=where, prefix=".write-check.", suffix=TMP_SUFFIX)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UsageError(f"{flag} {path}: nothing can be written in {where} ({err.strerror}); "
                         "give a path in a folder you can write to") from None
