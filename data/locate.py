"""Where the corpus comes from: --data, then $WORDRNN_DATA, then the user cache, then a download.

The download is the pinned public copy of poems-100.csv; its SHA-256 is
checked before the file is kept, so a corrupt or tampered copy never lands
in the cache, and checked again whenever the cached copy is used (a truncated
copy is fetched anew).

``python3 -m data.locate`` (standard library only, so it runs before any
environment is built) prints where the corpus is, or says how to supply it;
the pinned corpus it found elsewhere is copied into the cache, so that a
command typed later, without ``make``'s $WORDRNN_DATA, finds it too.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from wordrnn.core.errors import CommandParser, UsageError, cli

CORPUS_NAME = "poems-100.csv"
CORPUS_URL = ("https://raw.githubusercontent.com/amank010/Deep-Learning-Lab-Text-Generation/"
              "6011172e8ff049b0a5b3f4113ccaff4cfaae68a8/poems-100.csv")
CORPUS_SHA256 = "97e00256dfc21b73d1f6b95b4cac9283a84394554da8fa7d0d81a624750c2531"
ENV_VAR = "WORDRNN_DATA"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "wordrnn"


def locate_corpus(path: str | None = None, url: str = CORPUS_URL, sha256: str = CORPUS_SHA256) -> Path:
    """Return the path of the corpus to read, downloading it into the cache if needed."""
    for given, origin in ((path, "--data"), (os.environ.get(ENV_VAR), ENV_VAR)):
        if given:
            found = Path(given).expanduser()
            if not found.is_file():
                raise UsageError(f"{origin} points to {given}, which is not a file; "
                                 "give the path of a .csv or .txt corpus")
            return found
    cached = cache_dir() / CORPUS_NAME
    if cached.is_file():
        digest = sha256_of(cached.read_bytes())
        if digest == sha256:
            return cached
        print(f"wordrnn: the cached corpus {cached} has SHA-256 {digest}, expected {sha256} (damaged or "
              "truncated); fetching it again", file=sys.stderr)
    return download(url, cached, sha256)


def sha256_of(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def download(url: str, dest: Path, sha256: str, timeout: float = 30.0) -> Path:
    """Fetch ``url`` into ``dest`` atomically, keeping it only if its SHA-256 matches."""
    print(f"wordrnn: downloading the corpus from {url}", file=sys.stderr)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = response.read()
    except (urllib.error.URLError, OSError) as err:
        raise UsageError(
            f"no corpus found and the download failed ({getattr(err, 'reason', err)}); "
            f"pass --data PATH, set {ENV_VAR}=PATH, or put {CORPUS_NAME} in {dest.parent}"
        ) from None
    digest = sha256_of(payload)
    if digest != sha256:
        raise UsageError(
            f"the downloaded corpus has SHA-256 {digest}, expected {sha256}; it was not kept. "
            f"Pass --data PATH with a good copy of {CORPUS_NAME}"
        )
    _store(payload, dest)
    print(f"wordrnn: checked SHA-256 and stored the corpus in {dest}", file=sys.stderr)
    return dest


def _store(payload: bytes, dest: Path) -> None:
    """Write ``payload`` to ``dest`` atomically (a temporary file beside it, then a rename)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=dest.parent, delete=False, prefix=".download-") as tmp:
        tmp.write(payload)
    os.replace(tmp.name, dest)


def remember_corpus(found: Path, sha256: str = CORPUS_SHA256) -> Path | None:
    """Copy the pinned corpus, found through --data or $WORDRNN_DATA, into the user cache when the cache has none,
    so that later commands find it with neither (``make demo`` sets $WORDRNN_DATA; a command typed after it
    does not). Says where it was stored; returns that path, or None when nothing was stored."""
    cached = cache_dir() / CORPUS_NAME
    if cached.is_file() or found.resolve() == cached.resolve():
        return None
    payload = found.read_bytes()
    if sha256_of(payload) != sha256:
        return None  # another corpus: the cache holds only the pinned one
    try:
        _store(payload, cached)
    except OSError as err:
        print(f"wordrnn: could not store a copy of the corpus in {cached} ({err.strerror}); later commands "
              f"need --data or {ENV_VAR}", file=sys.stderr)
        return None
    print(f"wordrnn: stored a copy of the corpus in {cached}, where later commands find it without --data "
          f"or {ENV_VAR}", file=sys.stderr)
    return cached


@cli
def main(argv: list[str] | None = None) -> int:
    """Find (or fetch) the corpus and print its path; exit 2 with how to supply it when there is none."""

    parser = CommandParser(prog="python3 -m data.locate",
                                     description="Print the corpus every command would read, fetching the pinned "
                                                 "copy into the user cache if needed. Standard library only.")
    parser.add_argument("--data", default=None, metavar="PATH", help="corpus to check instead of the defaults")
    args = parser.parse_args(argv)
    found = locate_corpus(args.data)
    remember_corpus(found)
    print(f"corpus: {found}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
