"""Reading poems: a CSV with one poem per row, or a .txt with poems separated by blank lines."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

from wordrnn.core.errors import UsageError

_ONE_BLANK = re.compile(r"\n[ \t]*\n")
_TWO_BLANKS = re.compile(r"\n[ \t]*\n[ \t]*\n+")
# A .txt corpus separates poems by two blank lines (stanzas by one) only if two-blank breaks are common:
# at least this share of all breaks. A few stray double blank lines in a one-blank-line corpus do not count.
TWO_BLANKS_SHARE = 0.1


@dataclass
class Corpus:
    poems: list[str]
    separator: str  # in words: "CSV column 'text'", "two blank lines", "one blank line"


def read_poems(path: Path, text_column: str = "text") -> list[str]:
    """The poems of a corpus file, as raw strings (UTF-8, CRLF or LF)."""
    return read_corpus(path, text_column).poems


def read_corpus(path: Path, text_column: str = "text") -> Corpus:
    """The poems of a corpus file and how they were told apart."""
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
        poems, separator = _read_csv(text, path, text_column), f"CSV column {text_column!r}"
    else:
        poems, separator = _read_txt(text)
    poems = [p for p in poems if p.strip()]
    if not poems:
        raise UsageError(f"{path} holds no text; give a corpus with at least one poem")
    return Corpus(poems, separator)


def _read_csv(text: str, path: Path, column: str) -> list[str]:
    # strict: a quote left open would otherwise swallow every following row into one field, silently.
    reader = csv.DictReader(io.StringIO(text), strict=True)
    try:
        fieldnames = reader.fieldnames
    except csv.Error as err:
        raise _csv_error(path, 1, err) from None
    if fieldnames is None:
        raise UsageError(f"{path} is empty; give a CSV with a header row and a {column!r} column")
    if column not in fieldnames:
        raise UsageError(
            f"{path} has no column {column!r} (columns: {', '.join(fieldnames)}); "
            f"pass --text-column NAME"
        )
    poems = []
    while True:
        start = reader.line_num + 1  # the line the next record begins on
        try:
            row = next(reader)
        except StopIteration:
            return poems
        except csv.Error as err:
            raise _csv_error(path, start, err) from None
        poems.append(row[column] or "")


def _csv_error(path: Path, line: int, err: csv.Error) -> UsageError:
    """The record that could not be read, by its first line, and the likely cause."""
    if "unexpected end of data" in str(err):
        return UsageError(f"{path}: the quote opened in the record on line {line} is never closed, so it would "
                          "swallow the rest of the file; close it (a quote inside a quoted field is written \"\")")
    return UsageError(f"{path}: the record on line {line} is not valid CSV ({err}); "
                      "a quote inside a quoted field is written \"\"")


def _read_txt(text: str) -> tuple[list[str], str]:
    """Poems separated by two or more blank lines where such breaks are common; else by one blank line."""
    breaks = len(_ONE_BLANK.findall(text))
    double = len(_TWO_BLANKS.findall(text))
    if double and double >= TWO_BLANKS_SHARE * breaks:
        return _TWO_BLANKS.split(text), "two blank lines"
    if breaks:
        return _ONE_BLANK.split(text), "one blank line"
    return [text], "none (one poem)"
