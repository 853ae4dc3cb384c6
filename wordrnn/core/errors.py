"""One way to fail: a clear line, exit code 2, no traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

T = TypeVar("T")

USAGE_EXIT = 2


class UsageError(Exception):
    """Bad input from the user: the message says what is wrong and what to do."""


def cli(main: Callable[..., T]) -> Callable[..., T]:
    """Wrap a command's ``main`` so a ``UsageError`` prints one line and exits 2."""

    @wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UsageError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(USAGE_EXIT) from None

    return wrapper
