"""Reading poems: a CSV with one poem per row, or a .txt with poems separated by blank lines."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from wordrnn.core.errors import UsageError

_POEM_BREAK = re.compile(r"\n[ \t]*\n[ \t]*\n+")


def read_poems(path: Path, text_column: str = "text") -> list[str]:
    """The poems of a corpus file, as raw strings (UTF-8, CRLF or LF)."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise UsageError(f"cannot read {path}: {err.strerror}; check the path given to --data") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UsageError(
            f"{path} is not UTF-8 text (bad byte at offset {err.start}); convert it to UTF-8 first"
        ) from None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if path.suffix.lower() == ".csv":
        poems = _read_csv(text, path, text_column)
    else:
        poems = _read_txt(text)
    poems = [p for p in poems if p.strip()]
    if not poems:
        raise UsageError(f"{path} holds no text; give a corpus with at least one poem")
    return poems


def _read_csv(text: str, path: Path, column: str) -> list[str]:
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None:
        raise UsageError(f"{path} is empty; give a CSV with a header row and a {column!r} column")
    if column not in reader.fieldnames:
        raise UsageError(
            f"{path} has no column {column!r} (columns: {', '.join(reader.fieldnames)}); "
            f"pass --text-column NAME"
        )
    return [row[column] or "" for row in reader]


def _read_txt(text: str) -> list[str]:
    """Poems are separated by two or more blank lines; if there are none, by one blank line."""
    poems = _POEM_BREAK.split(text)
    if len(poems) == 1:
        poems = re.split(r"\n[ \t]*\n", text)
    return poems
