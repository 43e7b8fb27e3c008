"""`semrank rerank`: re-rank documents from a file for one query."""

from __future__ import annotations

import gzip
import json
import math
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any

import typer

from semrank._checks import (
    MAX_JSON_DEPTH,
    UnreadableJSONError,
    json_depth_over,
    loads_json,
    pandas_layout_hint,
)
from semrank._files import (
    GZIP_ERRORS,
    LINE_END,
    file_problem,
    refuse_binary_table,
    refuse_utf16,
    stdin_bytes,
)
from semrank._words import for_terminal, json_for_stdout
from semrank.errors import DataFormatError, InvalidInputError
from semrank.runtime.commands import BACKEND_HELP


def read_documents(path: str) -> list[Any]:
    """Documents from a JSON list, JSONL (strings or objects), or one document per line."""
    return read_numbered_documents(path)[0]


def read_numbered_documents(
    path: str, *, as_lines: bool = False
) -> tuple[list[Any], list[int] | None]:
    """``read_documents`` with each document's line number (None for a JSON list). A .csv or
    .tsv file gives one object per row (its header names the fields), as `index create` reads
    it: read as lines, its header was ranked as a document and its ids as text. ``as_lines``:
    every non-blank line is a document as written, whatever it looks like."""
    if as_lines:
        if path != "-":
            _require_file(path)
        return _text_lines(_read_text(path))
    documents, numbers = _read_numbered(path)
    deep = next((n for n, doc in enumerate(documents) if json_depth_over(doc)), None)
    if deep is not None:  # Python's own JSON writer and copies recurse: a traceback otherwise
        where = f"{path}:{numbers[deep]}" if numbers else f"{path}: document {deep}"
        raise DataFormatError(
            f"{where}: the document nests lists / objects more than {MAX_JSON_DEPTH} levels "
            "deep; flatten it"
        )
    return documents, numbers


def _read_numbered(path: str) -> tuple[list[Any], list[int] | None]:
    if path != "-":
        from semrank.store._corpus import table_rows

        _require_file(path)
        table = table_rows(Path(path))
        if table is not None:
            return list(table[0]), table[1]
    text = _read_text(path)
    stripped = text.lstrip()
    whole = _whole_json(path, stripped)
    if isinstance(whole, list):  # a JSON list, whatever its first item ('[null, ...' too)
        return whole, None
    if whole is not None:  # one object, maybe pretty-printed over many lines
        return [whole], [text[: len(text) - len(stripped)].count("\n") + 1]
    if _opens_json_list(stripped):
        try:
            data = loads_json(text)
        except json.JSONDecodeError as exc:
            raise DataFormatError(
                f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}){LINES_HINT}"
            ) from exc
        if not isinstance(data, list):
            raise DataFormatError(f"{path}: a JSON file of documents must hold a list")
        return data, None
    documents, numbers = _text_lines(text)
    lines = list(zip(numbers, documents, strict=True))
    looks_json = lines and all(_looks_like_json(line) for _number, line in lines)
    if looks_json and any(_is_json(line) for _number, line in lines):
        return [_json_line(path, number, line) for number, line in lines], numbers
    _refuse_mixed_lines(path, lines)
    return [line for _number, line in lines], numbers


# Said wherever a text file was taken for JSON: its lines may only look like JSON.
LINES_HINT = "; if the file is plain text, one document per line, pass --lines"


def _text_lines(text: str) -> tuple[list[str], list[int]]:
    """The non-blank lines of ``text`` and their line numbers. Lines end at \\n, \\r\\n or \\r
    (old Mac files): str.splitlines also breaks at form feeds, U+0085 and U+2028, which JSON
    strings and pdftotext output hold, and would misnumber every later document."""
    # A byte-order mark starting a later line (files joined with `cat`) is not text either.
    rows = [row.removeprefix("\ufeff") for row in LINE_END.split(text)]
    lines = [(number, line) for number, line in enumerate(rows, 1) if line.strip()]
    return [line for _number, line in lines], [number for number, _line in lines]


def _on_lines(error: InvalidInputError, path: str, numbers: list[int] | None) -> Exception:
    """``error`` with each ``documents[i]`` it names given as the file line it came from: the
    Reranker counts the documents it was handed, a user counts lines."""
    # The CLI's flag, not the library's parameter the Reranker's message names.
    message = re.sub(r"\brank_fields\b", "--rank-field", str(error))
    if numbers is None:
        return type(error)(message)

    def line_of(match: re.Match[str]) -> str:
        position = int(match[1])
        if position >= len(numbers):
            return match[0]
        return f"{path}:{numbers[position]} ({match[0]})"

    return type(error)(re.sub(r"documents\[(\d+)\]", line_of, message))


def _looks_like_json(line: str) -> bool:
    return line.lstrip().startswith(("{", '"'))


def _whole_json(path: str, text: str) -> list[Any] | dict[str, Any] | None:
    """The file as one JSON list or object, or None (JSONL, lines, or not JSON): a list led by
    null or a number, or an object written over several lines, was ranked line by line, its
    brackets and keys as documents."""
    if not text.startswith(("[", "{")):
        return None
    try:
        data = loads_json(text)
    except UnreadableJSONError as exc:  # JSON all the same: said, not read as lines of text
        raise DataFormatError(f"{path}: JSON that cannot be read: {exc.msg}") from None
    except json.JSONDecodeError:
        return None
    if isinstance(data, dict) and {"query", "documents"} <= set(data):
        raise DataFormatError(
            f"{path}: a JSON object with 'query' and 'documents' (a request body?); give the "
            "documents alone: a JSON list, or JSONL with one document per line"
        )
    hint = pandas_layout_hint(data)
    if hint is not None:  # ranked as one document whose fields held every row's values
        raise DataFormatError(f"{path}: {hint}")
    one_line = "\n" not in text.strip()
    if one_line and isinstance(data, list) and not all(isinstance(d, str | dict) for d in data):
        return None  # '[1, 2, 3]' on a line of its own is text, as it always was
    return data if isinstance(data, list | dict) else None


def _opens_json_list(text: str) -> bool:
    """'[' then a JSON value or ']': a JSON list, unlike a text line such as '[Draft] Fleas'."""
    return text.startswith("[") and text[1:].lstrip()[:1] in ("{", '"', "[", "]")


def _is_json(line: str) -> bool:
    """Whether a line parses: when none does, quotations ('"Fleas bite," said the vet.') are
    plain text; when some do, the file is JSONL and a line that fails is named."""
    try:
        loads_json(line)
    except UnreadableJSONError:
        return True  # JSON too deep or too long to read: reading it as a line names the problem
    except json.JSONDecodeError:
        return False
    return True


def _is_json_object(line: str) -> bool:
    if not line.lstrip().startswith("{"):
        return False
    try:
        return isinstance(loads_json(line), dict)
    except UnreadableJSONError:
        return True  # JSON all the same
    except json.JSONDecodeError:
        return False  # plain text that happens to start with '{'


def _refuse_mixed_lines(path: str, lines: list[tuple[int, str]]) -> None:
    """JSON-object lines among plain ones would be ranked as raw '{"text": ...}' strings."""
    if not any(_is_json_object(line) for _number, line in lines):
        return
    # The first line sets the format the file means; the first line that breaks it is named.
    if _looks_like_json(lines[0][1]):
        number = next(number for number, line in lines if not _looks_like_json(line))
        problem = "is plain text, but the lines before it are JSON"
    else:
        number = next(number for number, line in lines if _is_json_object(line))
        problem = "is a JSON object, but the lines before it are plain text"
    raise DataFormatError(
        f"{path}:{number}: this line {problem}; use one format: a JSON object or string per "
        "line (JSONL), or one plain-text document per line (--lines reads every line as text)"
    )


def _read_text(path: str) -> str:
    # A byte-order mark (Windows editors write one) is not part of the first document, and
    # left in place it hides a leading '[' or '{' from the format detection.
    if path == "-":  # bytes, decoded as a file is: the locale's decoder may be lenient or not
        data = stdin_bytes(  # typed documents, ended by Ctrl-D, as cat reads them
            "--docs",
            "the documents",
            "cat docs.jsonl | semrank rerank QUERY --docs -",
            typed_ok=True,
        )
    else:  # read_numbered_documents checked that it is a file or a pipe
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise InvalidInputError(f"--docs {path!r}: cannot read it ({exc.strerror})") from None
    if data[:2] == b"\x1f\x8b":  # gzip, whatever the name (corpus.jsonl.gz)
        try:
            data = gzip.decompress(data)
        except (*GZIP_ERRORS, OSError) as exc:
            raise InvalidInputError(f"--docs {path!r}: a damaged gzip file ({exc})") from None
    refuse_binary_table(f"--docs {path!r}", data, InvalidInputError)
    refuse_utf16(f"--docs {path!r}", data, InvalidInputError)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        at = exc.start + len(data) - len(exc.object)  # offsets past a byte-order mark
        raise InvalidInputError(
            f"--docs {path!r}: not valid UTF-8 (byte 0x{data[at]:02x} at byte {at}); save "
            "the file as UTF-8"
        ) from None


def _require_file(path: str) -> None:
    problem = file_problem(Path(path))  # a pipe is read as a file: --docs <(cmd)
    if problem is not None:
        raise InvalidInputError(
            f"--docs {path!r}: {problem}; pass a JSONL, JSON, CSV, TSV or text file"
        )


def _json_line(path: str, number: int, line: str) -> Any:
    try:
        return loads_json(line)
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path}:{number}: not valid JSON ({exc.msg}){LINES_HINT}") from exc


def rerank_command(
    query: str = typer.Argument(..., help="The query."),
    docs: str = typer.Option(
        ...,
        "--docs",
        "-d",
        help="JSONL, JSON list, CSV/TSV (a header row names the fields) or text file, "
        "optionally .gz; - for stdin (JSON, JSONL or lines).",
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Model name, directory or hub id."
    ),
    top_n: int | None = typer.Option(None, "--top-n", "-n", help="Return only the best N."),
    min_score: float | None = typer.Option(None, "--min-score", help="Drop results below this."),
    rank_field: list[str] | None = typer.Option(None, "--rank-field", help="Field(s) to score."),
    no_chunking: bool = typer.Option(False, "--no-chunking", help="Truncate long documents."),
    raw: bool = typer.Option(False, "--raw", help="Raw logits instead of 0..1 scores."),
    cascade_keep: int | None = typer.Option(
        None,
        "--cascade-keep",
        help="Prune to the N best by the embedding model before the re-ranker reads them (0: off).",
    ),
    backend: str | None = typer.Option(None, "--backend", help=BACKEND_HELP),
    feedback: bool = typer.Option(
        True,
        "--feedback/--no-feedback",
        help="The model's pseudo-relevance feedback (on where the model has it); off scores each "
        "document on its own.",
    ),
    as_lines: bool = typer.Option(
        False,
        "--lines",
        help="Read --docs as plain text, one document per line, even where lines look like JSON.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Re-rank the documents in a file for QUERY."""
    from semrank.rerank import CascadeConfig, Reranker, select_results
    from semrank.rerank._documents import unread_fields_warning

    documents, numbers = read_numbered_documents(docs, as_lines=as_lines)
    if rank_field and not any(isinstance(d, dict) for d in documents):
        raise InvalidInputError(
            f"--rank-field {rank_field[0]!r} picks fields of JSON-object documents, and {docs} "
            "holds none (plain text has no fields); drop --rank-field or give JSONL objects"
        )
    if cascade_keep is not None and cascade_keep < 0:
        raise InvalidInputError(
            f"--cascade-keep must be 0 (off) or the number of documents to keep, got {cascade_keep}"
        )
    if top_n is not None and top_n < 1:  # the flag named, not the library's parameter
        raise InvalidInputError(f"--top-n {top_n} must be >= 1; leave it out to print them all")
    if min_score is not None and not math.isfinite(min_score):
        raise InvalidInputError(f"--min-score {min_score} must be a finite number")
    cascade = CascadeConfig(keep=cascade_keep) if cascade_keep else None
    reranker = Reranker(model, cascade=cascade, feedback=feedback, backend=backend)
    try:
        ranked = reranker.rerank(
            query,
            documents,
            rank_fields=rank_field or None,
            chunking=not no_chunking,
            raw_scores=raw,
        )
    except InvalidInputError as error:
        raise _on_lines(error, docs, numbers) from None
    # How the query was read is said of every document scored, not of those shown: a query cut
    # next to a long document left out by --top-n was cut all the same (the server says so too).
    unread = unread_fields_warning(documents, rank_field or None, option="--rank-field")
    for warning in [*reranker.query_warnings(query, ranked), *([unread] if unread else [])]:
        typer.echo(f"warning: {warning}", err=True)  # stderr: stdout stays the results
    results = select_results(ranked, top_n=top_n, min_score=min_score)
    if as_json:
        rows = [
            {k: v for k, v in asdict(r).items() if k not in ("piece_tokens", "window_scores")}
            for r in results
        ]
        payload = {"model": reranker.name, "results": rows}
        typer.echo(json_for_stdout(payload, indent=2))
        return
    _print_table(query, reranker.name, results)


def _print_table(query: str, model: str, results: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{for_terminal(repr(query))} — {model}")
    for column in ("rank", "index", "score", "tokens", "document"):
        table.add_column(column, overflow="fold")
    for rank, result in enumerate(results, 1):
        document = result.document
        text = document if isinstance(document, str) else json.dumps(document, ensure_ascii=False)
        note = " [truncated]" if result.truncated else ""
        if result.pruned:  # its score only places it below the documents read
            note += " [pruned: not read by the re-ranker]"
        if result.chunk is not None:
            chunk = result.chunk  # offsets into its field's text where several were read
            field = f"{chunk.field} " if chunk.field else ""
            note += f" [chunk {chunk.index}: {field}{chunk.start}-{chunk.end}]"
        table.add_row(
            str(rank),
            str(result.index),
            "-" if result.pruned else f"{result.relevance_score:.4f}",
            str(result.tokens),
            for_terminal((text or "")[:200]) + note,
        )
    Console(markup=False).print(table)  # documents and queries are shown as written


def register(app: typer.Typer) -> None:
    """Add `semrank rerank`."""
    app.command("rerank")(rerank_command)
