"""Which corpus file a run was trained on: ``corpus.json`` in the run folder (path, size, SHA-256).

``--resume`` continues the saved windows and vocabulary; on a corpus that changed since (words
replaced, poems added) it would train on other windows without a word. The record lets it refuse,
naming both checksums. A folder written before the record existed has none and is not checked.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from wordrnn.core.errors import UsageError
from wordrnn.run.folder import atomic_write_text

CORPUS = "corpus.json"
CHUNK = 1 << 20


def describe_corpus(path: Path) -> dict[str, Any]:
    """The record of one corpus file: its absolute path, its size in bytes and its SHA-256."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return {"path": str(path.resolve()), "size": path.stat().st_size, "sha256": digest.hexdigest()}


def read_record(run_dir: Path) -> dict[str, Any] | None:
    try:
        record = json.loads((run_dir / CORPUS).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise UsageError(f"{run_dir / CORPUS} is unreadable ({err}); restore it, or delete it to resume "
                         "without checking the corpus") from None
    if not _is_record(record):
        raise UsageError(f"{run_dir / CORPUS} is not a corpus record (a path, a size in bytes and a SHA-256); the "
                         "file was edited or damaged: restore it, or delete it to resume without checking the corpus")
    return record


def _is_record(record: Any) -> bool:
    """What ``describe_corpus`` writes: the path as text, the size a whole number of bytes, 64 hex digits."""
    return (isinstance(record, dict) and isinstance(record.get("path"), str)
            and isinstance(record.get("size"), int) and not isinstance(record.get("size"), bool)
            and record["size"] >= 0 and isinstance(record.get("sha256"), str)
            and len(record["sha256"]) == 64 and all(c in "0123456789abcdef" for c in record["sha256"]))


def record_corpus(run_dir: Path, corpus: Path, resuming: bool) -> None:
    """A fresh run writes the record; a resumed one checks that the corpus is the one it was trained on."""
    now = describe_corpus(corpus)
    if not resuming:
        atomic_write_text(run_dir / CORPUS, json.dumps(now, indent=2) + "\n")
        return
    saved = read_record(run_dir)
    if saved is not None and saved["sha256"] != now["sha256"]:
        raise UsageError(f"--resume: the corpus changed since {run_dir} was trained: {now['path']} now has "
                         f"SHA-256 {now['sha256']} ({now['size']:,} bytes), the run was trained on "
                         f"{saved['path']} with SHA-256 {saved['sha256']} ({saved['size']:,} "
                         "bytes); resume with that file (--data), or train a new run (another --out)")


def check_corpus(run_dir: Path, data: str | None) -> str:
    """The corpus ``run_dir`` was trained on, for work that reads its split again (its validation poems): the
    recorded file where it still is, else ``data`` as the trainers locate it; refused if its SHA-256 differs
    from the record's. A folder without a record gives ``data`` unchecked."""
    from data.locate import locate_corpus

    saved = read_record(run_dir)
    if saved is None:
        return str(locate_corpus(data))
    recorded = Path(saved["path"])
    path = recorded if recorded.is_file() else locate_corpus(data)
    now = describe_corpus(Path(path))
    if now["sha256"] != saved["sha256"]:
        raise UsageError(f"{run_dir} was trained on a corpus with SHA-256 {saved['sha256']} "
                         f"({saved['path']}); {now['path']} has {now['sha256']}: give that file with "
                         "--data or WORDRNN_DATA")
    return str(path)
