"""The Python examples of README.md and docs/*.md run as a new user pastes them: each block
imports or assigns every name it uses (README's date-metric example called ``search`` without
importing it, a NameError; server.md's FastAPI mount used four names it never imported)."""

from __future__ import annotations

import ast
import builtins
import re
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^[ \t]*```python\n(.*?)^[ \t]*```", re.S | re.M)  # list items indent theirs
# Names a block takes from the reader or from the block just above it, as its text says.
GIVEN = {
    "articles",  # server.md: the documents the reader fills an index with
    "es",  # server.md: the point in time example continues the scroll example's client
    "DSN",  # postgresql.md: the reader's database, as the shell example above exports it
}


def _blocks() -> list[tuple[str, int, str]]:
    found = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append((page.name, line, textwrap.dedent(match.group(1))))
    return found


def _bound(tree: ast.AST) -> set[str]:
    """Every name the block imports, assigns, defines or takes as a parameter."""
    names = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names


@pytest.mark.parametrize(("page", "line", "code"), _blocks(), ids=lambda v: str(v)[:20])
def test_each_python_example_binds_the_names_it_uses(page: str, line: int, code: str) -> None:
    tree = ast.parse(code, filename=f"{page}:{line}")
    used = {
        node.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
    }
    assert used - _bound(tree) - GIVEN == set(), f"{page}:{line}"


def test_the_pages_hold_python_examples() -> None:
    assert len(_blocks()) >= 12  # the pattern still finds the blocks it checks
