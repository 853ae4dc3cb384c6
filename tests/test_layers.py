"""The layers of docs/ARCHITECTURE.md: every import of one project package by another points down the list."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# lower rank = lower layer; a module may import its own layer and the layers below it
RANKS = {
    "wordrnn.core": 0,
    "data": 1,
    "wordrnn.run": 2,
    "scratch": 3, "torchmodels": 3, "jaxmodels": 3,
    "export": 4,
    "wordrnn.frameworks": 5,
    "wordrnn.testing": 6,
    "wordrnn.bench": 7,
}
IMPLEMENTATIONS = ("scratch", "torchmodels", "jaxmodels")


def layer(module: str) -> str | None:
    for name in sorted(RANKS, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return name
    return None


def imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def upward_imports() -> list[str]:
    wrong = []
    for path in sorted(ROOT.glob("**/*.py")):
        relative = path.relative_to(ROOT)
        own = layer(".".join(relative.with_suffix("").parts))
        if own is None or relative.parts[0] in ("tests", ".venv", "node_modules"):
            continue
        for line, module in imports(path):
            other = layer(module)
            if other is None or other == own:
                continue
            sideways = RANKS[other] == RANKS[own] and own in IMPLEMENTATIONS
            if RANKS[other] > RANKS[own] or sideways:
                wrong.append(f"{relative}:{line} ({own}) imports {module} ({other})")
    return wrong


def test_every_import_points_down_the_layers():
    assert upward_imports() == []


def test_the_check_sees_an_upward_import(tmp_path, monkeypatch):
    fake_root = tmp_path
    (fake_root / "data").mkdir()
    (fake_root / "data" / "bad.py").write_text("from wordrnn.run.loop import train\nimport torchmodels\n")
    (fake_root / "scratch").mkdir()
    (fake_root / "scratch" / "bad.py").write_text("from torchmodels.model import build_module\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", fake_root)
    assert len(upward_imports()) == 3
