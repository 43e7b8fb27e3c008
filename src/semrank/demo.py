"""`semrank demo`: two-stage search over the Python standard library's own documentation.

The corpus is built from the docstrings of the standard library modules installed with the
Python running semrank, so it exists on every machine, needs no download and no data folder.
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from semrank.pipeline import Retriever

# Modules that are safe to import (no GUI, no side effects) and document common tasks.
STDLIB_MODULES = (
    "argparse",
    "array",
    "asyncio",
    "base64",
    "bisect",
    "bz2",
    "calendar",
    "cmath",
    "codecs",
    "collections",
    "concurrent.futures",
    "configparser",
    "contextlib",
    "copy",
    "csv",
    "datetime",
    "decimal",
    "difflib",
    "enum",
    "filecmp",
    "fnmatch",
    "fractions",
    "ftplib",
    "functools",
    "getpass",
    "gettext",
    "glob",
    "gzip",
    "hashlib",
    "heapq",
    "hmac",
    "html",
    "http.client",
    "http.server",
    "imaplib",
    "inspect",
    "io",
    "ipaddress",
    "itertools",
    "json",
    "locale",
    "logging",
    "lzma",
    "math",
    "mimetypes",
    "multiprocessing",
    "operator",
    "os",
    "os.path",
    "pathlib",
    "pickle",
    "platform",
    "pprint",
    "queue",
    "random",
    "re",
    "sched",
    "secrets",
    "select",
    "shelve",
    "shlex",
    "shutil",
    "signal",
    "smtplib",
    "socket",
    "sqlite3",
    "ssl",
    "statistics",
    "string",
    "struct",
    "subprocess",
    "sys",
    "tarfile",
    "tempfile",
    "textwrap",
    "threading",
    "time",
    "timeit",
    "traceback",
    "types",
    "typing",
    "unicodedata",
    "unittest",
    "urllib.parse",
    "urllib.request",
    "uuid",
    "warnings",
    "weakref",
    "xml.etree.ElementTree",
    "zipfile",
    "zlib",
)
QUERIES = (
    "run a shell command and capture what it prints",
    "generate a secure random token for a password reset link",
    "show the differences between two versions of a text file",
    "compress a file to save disk space",
)
INDEX_NAME = "demo-stdlib"
TEXT_CHARS = 600  # docstrings are cut here: the demo ingests in well under a minute


def _summary(doc: str | None) -> str:
    if not doc:
        return ""
    text = " ".join(doc.split())
    return text[:TEXT_CHARS]


def _members(module: Any) -> list[tuple[str, Any]]:
    public = getattr(module, "__all__", None) or [n for n in vars(module) if not n.startswith("_")]
    found = []
    for name in sorted(set(public)):
        obj = getattr(module, name, None)
        if inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj):
            home = getattr(obj, "__module__", None) or module.__name__
            if home.lstrip("_").split(".")[0] == module.__name__.split(".")[0]:
                found.append((name, obj))
    return found


def stdlib_documents(modules: tuple[str, ...] = STDLIB_MODULES) -> list[dict[str, str]]:
    """One document per documented module, public function and class: id ``module.name``."""
    documents: dict[str, dict[str, str]] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module_name in modules:
            try:
                module = importlib.import_module(module_name)
            except ImportError:
                continue  # e.g. ssl or sqlite3 missing from a minimal Python build
            if text := _summary(inspect.getdoc(module)):
                documents[module_name] = {
                    "id": module_name,
                    "title": f"module {module_name}",
                    "text": text,
                }
            for name, obj in _members(module):
                text = _summary(inspect.getdoc(obj))
                doc_id = f"{module_name}.{name}"
                if text and doc_id not in documents:
                    documents[doc_id] = {"id": doc_id, "title": doc_id, "text": text}
    return list(documents.values())


def _retrievers(model: str | None, window: int) -> dict[str, Retriever]:
    from semrank.pipeline import BM25, Knn, Rerank

    bm25, dense = BM25(), Knn()
    hybrid = bm25 | dense
    return {
        "BM25": bm25,
        "dense": dense,
        "hybrid (RRF)": hybrid,
        "hybrid >> re-rank": hybrid >> Rerank(model, window=window),
    }


def _ensure_index(home: Path | None, rebuild: bool) -> Any:
    """The demo index, created or brought in line with this Python's documentation."""
    from rich.progress import Progress

    from semrank.store import create_index, drop_index, list_indexes, open_index

    documents = stdlib_documents()
    if rebuild and INDEX_NAME in list_indexes(home):
        drop_index(INDEX_NAME, home=home)
    if INDEX_NAME in list_indexes(home):
        index = open_index(INDEX_NAME, home=home)
    else:
        index = create_index(
            INDEX_NAME, home=home, fields=("title", "text"), embedding_max_length=128
        )
    wanted = {d["id"] for d in documents}
    stale = [i for i in index.document_ids() if i not in wanted]
    with Progress(transient=True) as bar:
        task = bar.add_task(f"indexing {len(documents)} stdlib docstrings", total=len(documents))
        index.upsert(documents, progress=lambda n: bar.advance(task, n))
    if stale:
        index.delete(stale)
        index.refresh()
    return index


def run_demo(
    home: Path | None, queries: tuple[str, ...], top: int, model: str | None, rebuild: bool
) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from semrank.pipeline import search

    console = Console()
    index = _ensure_index(home, rebuild)
    console.print(
        f"index [bold]{INDEX_NAME}[/]: {len(index)} docstrings of the Python standard "
        f"library, at {escape(str(index.path))}; it stays for your own searches (`semrank "
        f"search {INDEX_NAME} QUERY`), and `semrank index drop {INDEX_NAME}` removes it"
    )
    retrievers = _retrievers(model, window=50)
    for query in queries:
        table = Table(title=f"“{escape(query)}”", show_lines=False)
        table.add_column("#", justify="right")
        columns = {}
        for label, tree in retrievers.items():
            table.add_column(label, overflow="fold")
            columns[label] = search(index, query, retriever=tree, k=top, with_documents=False)
        for position in range(top):
            cells = []
            for results in columns.values():
                hit = results.hits[position] if position < len(results.hits) else None
                moved = (
                    ""
                    if hit is None or hit.rerank_score is None
                    else f" [dim](was {hit.first_stage_rank})[/]"
                )
                cells.append("" if hit is None else f"{escape(hit.id)}{moved}")
            table.add_row(str(position + 1), *cells)
        console.print(table)


def register(app: typer.Typer) -> None:
    """Add `semrank demo`."""
    from semrank.store.commands import HOME_OPTION

    @app.command("demo")
    def demo(
        query: list[str] = typer.Option(
            None, "--query", "-q", help="Your own queries (repeatable)."
        ),
        top: int = typer.Option(5, "--top", min=1, max=20, help="Hits per retriever."),
        model: str | None = typer.Option(
            None, "--model", help="Re-ranking model (default: bundled)."
        ),
        rebuild: bool = typer.Option(False, "--rebuild", help="Drop and rebuild the demo index."),
        # The index commands' option: no envvar, the store's lookup reads $SEMRANK_HOME and
        # refuses a blank one (typer's envvar made a folder named two spaces), as it refuses
        # a blank --home.
        home: Path | None = HOME_OPTION,
    ) -> None:
        """Compare BM25, dense, hybrid and re-ranked search on Python's own docs (offline)."""
        run_demo(home, tuple(query) if query else QUERIES, top, model, rebuild)
