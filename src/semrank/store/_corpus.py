"""Reading corpora: BEIR folders, corpus.jsonl[.gz], other JSONL / JSON / CSV / TSV files.

A corpus yields ``Document(id, fields)``; ``text_fields`` names the fields that are searched by
default and embedded. Files are streamed, so a corpus never has to fit in memory twice.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from semrank._checks import (
    MAX_JSON_DEPTH,
    UnreadableJSONError,
    field_key,
    has_non_finite_number,
    id_problem,
    is_valid_unicode,
    json_depth_over,
    loads_json,
    pandas_layout_hint,
    require_unicode,
)
from semrank._files import GZIP_ERRORS, open_binary, read_text, refuse_binary_table, text_lines
from semrank.errors import DataFormatError, InvalidInputError

ID_FIELD_GUESSES = ("_id", "id", "docid", "doc_id", "pid")
BEIR_FIELDS = ("title", "text")
FORMATS = ("jsonl", "json", "csv", "tsv")


@dataclass(frozen=True)
class Document:
    """One document: its id and its fields (the id field itself is not repeated in ``fields``)."""

    id: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Corpus:
    """A readable corpus and how its records map to documents."""

    path: Path
    format: str  # jsonl | json | csv | tsv
    id_field: str | None  # None: ids are record numbers (1, 2, ...)
    text_fields: tuple[str, ...]
    is_beir: bool = False
    id_guessed: bool = False  # id_field taken from the header's names, not given

    def __iter__(self) -> Iterator[Document]:
        for number, record in enumerate(_records(self.path, self.format), start=1):
            yield to_document(record, self.id_field, number)

    def count(self, check: Callable[[Document], None] | None = None) -> int:
        """Number of records, each checked as an ingest checks it (``IngestChecks``, and
        ``check``: a store's own limits): one pass over the file before anything is written, so
        a bad record deep in it fails early."""
        return self.survey(check)[0]

    def survey(self, check: Callable[[Document], None] | None = None) -> tuple[int, set[str]]:
        """``count()``, and the text fields that hold a value in at least one record."""
        note = (
            f" (the id field {self.id_field!r} was guessed from the field names; if it holds no "
            "ids, name the one that does with --id-field)"
            if self.id_guessed
            else ""
        )
        checks, total = IngestChecks(self.text_fields, duplicate_note=note), 0
        for number, document in enumerate(documents_from(self), start=1):
            checks.check(document, number)
            if check is not None:
                check(document)
            total += 1
        return total, checks.fields_used


class IngestChecks:
    """What one ingest refuses, record by record: an id given twice (the later record would
    silently replace the earlier one) and a record with none of the index's text fields (it
    would be stored, but no search could find it)."""

    def __init__(self, text_fields: Sequence[str], *, duplicate_note: str = "") -> None:
        self.text_fields = tuple(text_fields)
        self.duplicate_note = duplicate_note  # said after a repeated id
        self._first_record: dict[str, int] = {}
        self.fields_used: set[str] = set()  # text fields some record gave a value
        # Fields holding a string in some record that are not text fields: kept with the
        # documents, but neither searched by default nor embedded (in the order first met).
        self.unread_fields: dict[str, None] = {}
        self._searched_keys: set[str] = set()  # record keys that name a text field

    def checked(self, documents: Iterable[Document]) -> Iterator[Document]:
        """``documents``, each checked as it passes."""
        for number, document in enumerate(documents, start=1):
            self.check(document, number)
            yield document

    def check(self, document: Document, number: int) -> None:
        if json_depth_over(document.fields):
            raise DataFormatError(
                f"record {number} (id {document.id!r}) nests lists / objects more than "
                f"{MAX_JSON_DEPTH} levels deep, more than a search can return; flatten it"
            )
        earlier = self._first_record.setdefault(document.id, number)
        if earlier != number:
            raise DataFormatError(
                f"record {number} repeats the id {document.id!r} of record {earlier}; ids must "
                "be unique (the later record would replace the earlier one): fix or drop one"
                + self.duplicate_note
            )
        keys = {name: field_key(document.fields, name) for name in self.text_fields}
        present = [
            n for n, key in keys.items() if key is not None and document.fields[key] is not None
        ]
        self.fields_used.update(present)
        self._note_unread(document.fields)
        if not present:
            null = [name for name, key in keys.items() if key is not None]
            has = (
                f"{', '.join(null)} null"
                if null
                else f"it has: {', '.join(map(str, document.fields)) or 'no fields'}"
            )
            raise DataFormatError(
                f"record {number} (id {document.id!r}) has none of the index's text fields "
                f"{', '.join(self.text_fields)} ({has}), so no search could find it; put "
                "its text in one of them"
            )

    def _note_unread(self, fields: dict[str, Any]) -> None:
        for key, value in fields.items():
            known = key in self.unread_fields or key in self._searched_keys
            if known or not _reads_as_text(value):
                continue
            if field_key(self.text_fields, key) is None:
                self.unread_fields[key] = None
            else:
                self._searched_keys.add(key)


# A string of this many words or more reads as text someone would search for; a shorter one (a
# language code, a tenant, a date, a tag, a name) as a keyword kept to filter on, whose field
# is not worth a warning that the index does not search it.
TEXT_WORDS = 3


def _reads_as_text(value: Any) -> bool:
    return isinstance(value, str) and len(value.split(maxsplit=TEXT_WORDS - 1)) >= TEXT_WORDS


def _text_lines(path: Path, *, records_span_lines: bool = False) -> Iterator[str]:
    """The lines of a UTF-8 (optionally gzipped) file, line endings kept; errors name the line."""
    return text_lines(path, InvalidInputError, records_span_lines=records_span_lines)


def _read_text(path: Path) -> str:
    """The whole file as text, with the same errors as ``_text_lines``."""
    return read_text(path, InvalidInputError)


def _format_of(path: Path) -> str:
    # Before the name: a corpus is read more than once (its first records sniffed, then read
    # through), and a named pipe (`mkfifo docs.jsonl`) gives its data once: the next read
    # waited for a writer for good. Stdin (--from -) is copied to a file for it.
    if path.is_fifo():  # `--from <(cmd)` too: no name, and --format is what stdin is told by
        raise DataFormatError(
            f"{path} is a pipe, which a corpus cannot be read from (it is read more than once, "
            "a pipe only once, and a pipe's name need not tell the format); pipe the documents "
            "to stdin and name their format with --format (e.g. `cmd | semrank index create "
            "NAME --from - --format jsonl`, or `index add NAME - --format jsonl`)"
        )
    name = path.name.lower().removesuffix(".gz")
    for fmt in FORMATS:
        if name.endswith("." + fmt):
            return fmt
    if name.endswith(".ndjson"):
        return "jsonl"
    if path.is_file():  # a Parquet file or a workbook is named with how to convert it
        try:
            with open_binary(path) as handle:
                head = handle.read(512)
        except GZIP_ERRORS:  # damaged gzip: its name is what is said
            head = b""
        refuse_binary_table(path, head, DataFormatError)
    raise DataFormatError(
        f"{path}: cannot tell the format from the name; use a .jsonl, .json, .csv or .tsv "
        "file (optionally .gz) or a BEIR folder with corpus.jsonl"
    )


def _jsonl_records(path: Path) -> Iterator[dict[str, Any]]:
    for line_number, line in enumerate(_text_lines(path), start=1):
        if not line.strip():
            continue
        try:
            record = loads_json(line)
        except json.JSONDecodeError as exc:
            raise DataFormatError(f"{path}:{line_number}: not valid JSON ({exc.msg})") from exc
        if not isinstance(record, dict):
            raise DataFormatError(f"{path}:{line_number}: expected a JSON object per line")
        yield record


def _json_records(path: Path) -> Iterator[dict[str, Any]]:
    try:
        data = loads_json(_read_text(path))
    except json.JSONDecodeError as exc:
        hint = (
            "; one JSON object per line is JSONL: name the file .jsonl"
            if exc.msg == "Extra data"
            else ""
        )
        # Unreadable JSON (a key given twice, too deep) is found with no place in the text.
        where = "" if isinstance(exc, UnreadableJSONError) else f" at line {exc.lineno}"
        raise DataFormatError(f"{path}: not valid JSON ({exc.msg}{where}){hint}") from exc
    if isinstance(data, dict):
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            layout = pandas_layout_hint(data)
            raise DataFormatError(
                f"{path}: expected a JSON list of objects (or an object holding one list)"
                + (f"; {layout}" if layout else "")
            )
        data = lists[0]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataFormatError(f"{path}: expected a JSON list of objects")
    yield from data


def _csv_records(
    path: Path, delimiter: str, lines: list[int] | None = None
) -> Iterator[dict[str, Any]]:
    """The rows as objects named by the header; ``lines`` (if given) gets the line each row
    ends on (quoted fields may span lines, blank lines are skipped)."""
    csv.field_size_limit(1 << 30)
    # TSV has no quoting convention: a field that merely starts with '"' would otherwise open a
    # quoted field that swallows the rest of the file into one document. (Telling a TSV that
    # csv writers quoted from a raw one by its first lines merged raw rows holding stray quotes.)
    quoted = delimiter != "\t"
    taken = _TakenLines(_record_lines(path) if quoted else _text_lines(path))
    reader = csv.DictReader(
        taken, delimiter=delimiter, quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE
    )
    row_start = row_end = 0  # the lines the last row read starts and ends on
    row_lines: list[str] = []
    try:
        names = reader.fieldnames or []
        row_end = reader.reader.line_num
        _check_header(path, names, delimiter)
        # Unnamed columns are no field (no flag could name them): each gets a key of its own,
        # so that _named_cells sees every one of them by its position.
        reader.fieldnames = [n if n.strip() else f"{_UNNAMED}{i}" for i, n in enumerate(names)]
        unnamed = any(not name.strip() for name in names)
        for number, row in enumerate(reader, start=1):
            if not quoted:
                _refuse_quoted_line_break(path, reader.reader.line_num, len(names), row)
            if None in row:  # DictReader files the cells beyond the header under the key None
                raise _extra_cells(path, number, reader.line_num, len(row[None]), delimiter)
            # (A quote that never closes cut the row short too: said after the last row.)
            if _cut_short(row) and not (quoted and _never_closes(taken.lines, delimiter)):
                raise _short_row(path, number, reader.line_num, row, delimiter)
            if unnamed:
                row = _named_cells(path, number, row)
            if not quoted:
                row = {key: _tsv_cell(value) for key, value in row.items()}
            row_start, row_end = row_end + 1, reader.reader.line_num
            row_lines, taken.lines = taken.lines, []
            if lines is not None:
                lines.append(row_end)
            yield row
    except csv.Error as exc:  # reader.reader: DictReader's own line_num lags a row behind
        raise _bad_csv(path, reader.reader.line_num, exc, delimiter) from exc
    if quoted and _never_closes(row_lines, delimiter):
        raise DataFormatError(
            f"{path}:{row_start}: a quoted field in the row starting at line {row_start} never "
            "closes (the file ends inside it, every later line read into it); close its quote, "
            'and write a quote inside a quoted field as two ("")'
        )


# The key an unnamed header column's cells are read under (its position follows).
_UNNAMED = "\x00unnamed:"


def _refuse_quoted_line_break(path: Path, line: int, width: int, row: dict[Any, Any]) -> None:
    """A row short of the header's cells whose last cell opens a quote: csv writers (Python's
    excel-tab, pandas' to_csv(sep="\\t")) quote a text holding a line break so, and read
    without quoting its rest would become rows of their own (one with a made-up id)."""
    cells = [value for key, value in row.items() if key is not None and value is not None]
    last = cells[-1] if cells else ""
    opens = isinstance(last, str) and last.startswith('"') and last.count('"') % 2 == 1
    if len(cells) < width and opens:
        raise DataFormatError(
            f"{path}:{line}: the row has fewer cells than the header and its last one opens a "
            f"quote ({last!r:.40}), as csv writers quote a text holding a line break; semrank "
            "reads TSV without quoting (a cell may start with a quote): save the file as CSV or "
            "JSONL"
        )


# A TSV cell as Python's excel-tab dialect and pandas' to_csv(sep="\t") write a text holding
# quotes: in quotes, each quote inside doubled. Only a cell with a doubled quote inside is
# read so: a cell that is merely a quotation ('"Fleas bite"') keeps its quotes.
_QUOTED_TSV_CELL = re.compile(r'"((?:[^"]|"")*""(?:[^"]|"")*)"', re.DOTALL)


def _tsv_cell(value: Any) -> Any:
    if not isinstance(value, str) or not value.startswith('"'):
        return value
    quoted = _QUOTED_TSV_CELL.fullmatch(value)
    return quoted.group(1).replace('""', '"') if quoted else value


def _record_lines(path: Path) -> Iterator[str]:
    """A CSV file's lines, a byte-order mark dropped where a line starts a record (files
    joined with `cat`, each saved as Excel's "CSV UTF-8") but kept inside a quoted value that
    spans lines (as written). A quoted value is open while a record's quotes are odd in
    number: a quote inside one is written twice."""
    inside = False
    for line in _text_lines(path, records_span_lines=True):
        if not inside:
            line = line.removeprefix("\ufeff")
        inside ^= line.count('"') % 2 == 1
        yield line


def _cut_short(row: dict[Any, Any]) -> bool:
    """Whether a named column has no cell in ``row`` (DictReader's None): the header's
    unnamed columns (a trailing comma) are no field, and rows may leave them out."""
    return any(value is None and not key.startswith(_UNNAMED) for key, value in row.items())


class _TakenLines:
    """The lines handed to a csv reader since ``lines`` was last emptied: the raw text of the
    row it read last."""

    def __init__(self, source: Iterator[str]) -> None:
        self._source = source
        self.lines: list[str] = []

    def __iter__(self) -> _TakenLines:
        return self

    def __next__(self) -> str:
        line = next(self._source)
        self.lines.append(line)
        return line


def _never_closes(row_lines: list[str], delimiter: str = ",") -> bool:
    """Whether a row spanning lines ends inside a quoted field: the csv module's lenient reader
    reads such a quote to the end of the file; its strict one says so (its other complaints,
    text after a closing quote, are read as the lenient reader reads them)."""
    if len(row_lines) < 2:
        return False
    try:
        list(csv.reader(row_lines, delimiter=delimiter, strict=True))
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def _separates(header: str, separator: str) -> bool:
    """Whether a one-column ``header`` reads as several names joined by ``separator``: always
    for ';' and tabs; for ',' and '|' only names without spaces ('id,title,text', not a TSV
    column called 'text, notes')."""
    parts = header.split(separator)
    if len(parts) < 2:
        return False
    return separator in ";\t" or all(part and not any(c.isspace() for c in part) for part in parts)


def _check_header(path: Path, names: Sequence[str], delimiter: str) -> None:
    """Column names a DictReader would lose or misread: a repeated name kept only its last
    column, and a header of one column holding another separator (a semicolon-separated file
    read as CSV) put every column into one text. Unnamed columns are left out (_csv_records)."""
    named = [name for name in names if name.strip()]  # unnamed: pandas' index, a trailing comma
    repeated = sorted(name for name, count in Counter(named).items() if count > 1)
    if repeated:
        raise DataFormatError(
            f"{path}:1: the header names {', '.join(map(repr, repeated))} more than once (only "
            "the last such column would be kept); give every column its own name"
        )
    others = [sep for sep in (";", "\t", ",", "|") if sep != delimiter]
    found = [sep for sep in others if len(names) == 1 and _separates(names[0], sep)]
    if found:
        shown = "a tab" if found[0] == "\t" else repr(found[0])
        raise DataFormatError(
            f"{path}:1: the header is one column ({names[0]!r:.60}) holding {shown}: the file "
            f"seems separated by {shown}, not {delimiter!r}; save it as CSV (commas) or TSV "
            "(tabs, with a .tsv name)"
        )


def _named_cells(path: Path, number: int, row: dict[str, Any]) -> dict[str, Any]:
    """``row`` without its unnamed cells. The first column unnamed is pandas' index, left out
    while it holds integers; text under it, or anything under a later unnamed column, is
    refused, naming the column: it would be lost."""
    for key, value in row.items():
        if not key.startswith(_UNNAMED):
            continue
        cell, position = str(value or "").strip(), int(key.removeprefix(_UNNAMED))
        if cell and (position > 0 or not cell.lstrip("+-").isdigit()):
            raise DataFormatError(
                f"{path}: row {number} has text ({cell!r:.40}) in column {position + 1}, which "
                "the header leaves unnamed; name the column in the header (or remove the text)"
            )
    return {key: value for key, value in row.items() if not key.startswith(_UNNAMED)}


def _bad_csv(path: Path, line: int, exc: csv.Error, delimiter: str) -> DataFormatError:
    """The csv module's error as one naming the file, the line and the fix. A carriage return
    outside quotes is refused rather than read as a line break: in a file whose lines end in
    LF it is a stray character inside a field, and splitting the row there would silently
    make the rest of the field a record of its own."""
    if "new-line character" not in str(exc):
        return DataFormatError(f"{path}:{line}: not readable as CSV ({exc})")
    quote = "" if delimiter == "\t" else ", or put the field that holds it in double quotes"
    return DataFormatError(
        f"{path}:{line}: a carriage return (\\r) outside quotes: if the file has old Mac line "
        "endings (CR only), convert them to LF (e.g. `tr '\\r' '\\n' < IN > OUT`); else remove "
        f"the stray \\r{quote}"
    )


def _short_row(
    path: Path, row: int, line: int, cells: dict[Any, Any], delimiter: str
) -> DataFormatError:
    """A row with fewer cells than the header (DictReader fills the missing ones with None):
    a raw line break inside a field splits one record in two, the first cut short and the
    rest of the field a record of its own with a made-up id. Csv writers write every cell."""
    named = [value for key, value in cells.items() if not key.startswith(_UNNAMED)]
    missing, width = sum(value is None for value in named), len(named)
    split = (
        "TSV cannot hold one: save the file as CSV (the field in double quotes) or JSONL"
        if delimiter == "\t"
        else "put the field that holds it in double quotes"
    )
    separator = {"\t": "tab", ",": "comma"}.get(delimiter, repr(delimiter))
    return DataFormatError(
        f"{path}:{line}: row {row} has {width - missing} field(s), fewer than the header's "
        f"{width}: a line break inside a field splits a row ({split}); or the row leaves out "
        f"its trailing empty fields: write them (one {separator} each)"
    )


def _extra_cells(path: Path, row: int, line: int, extra: int, delimiter: str) -> InvalidInputError:
    fix = (
        "remove the stray tabs or name the extra columns in the header (a tab inside a text "
        "quoted by a csv writer is one too: semrank reads TSV without quoting; save such a file "
        "as CSV or JSONL)"
        if delimiter == "\t"
        else 'quote the field that holds a comma ("a, b") or name the extra columns in the header'
    )
    return InvalidInputError(
        f"{path}: row {row} (line {line}) has {extra} more field(s) than the header; {fix}"
    )


def table_rows(path: Path) -> tuple[list[dict[str, Any]], list[int]] | None:
    """The rows of a .csv / .tsv file (optionally .gz) as objects named by its header, read as
    an ingest reads them, and the line each ends on; None for any other file."""
    name = path.name.lower().removesuffix(".gz")
    if not name.endswith((".csv", ".tsv")):
        return None
    lines: list[int] = []
    rows = list(_csv_records(path, "\t" if name.endswith(".tsv") else ",", lines))
    return rows, lines


def _records(path: Path, fmt: str) -> Iterator[dict[str, Any]]:
    if fmt == "jsonl":
        return _jsonl_records(path)
    if fmt == "json":
        return _json_records(path)
    return _csv_records(path, "\t" if fmt == "tsv" else ",")


def to_document(record: dict[str, Any], id_field: str | None, number: int) -> Document:
    """``record`` as a Document; ``number`` is its 1-based position (the id when none is named)."""
    if id_field is None:
        return Document(str(number), dict(record))
    key = field_key(record, id_field)
    if key is None:
        raise DataFormatError(
            f"record {number} has no {id_field!r} field; name the field that holds the ids "
            "(--id-field; id_field when the index is created over HTTP)"
        )
    value = record[key]
    problem = id_problem(value)
    if problem is not None:
        raise DataFormatError(f"record {number}: its id ({id_field!r}) {problem}")
    fields = {k: v for k, v in record.items() if k != key}
    return Document(str(value), fields)


def _beir_corpus_file(path: Path) -> Path | None:
    if path.is_dir():
        for name in ("corpus.jsonl", "corpus.jsonl.gz"):
            if (path / name).is_file():
                return path / name
        return None
    return path if path.name in ("corpus.jsonl", "corpus.jsonl.gz") else None


# Records read to find the text fields: one record alone lost a field that was null or
# missing there (a first row without a title indexed no title at all).
FIELD_SAMPLE = 1000


def _guess_id_field(record: dict[str, Any]) -> str | None:
    """The first of ID_FIELD_GUESSES ``record`` holds, in any case (an "ID" column made record
    numbers the ids and left the ids in the searched text)."""
    exact = next((g for g in ID_FIELD_GUESSES if g in record), None)
    if exact is not None:  # "id" beside "ID": the spelling semrank looks for first
        return exact
    by_lower = {key.lower(): key for key in reversed(list(record))}
    return next((by_lower[g] for g in ID_FIELD_GUESSES if g in by_lower), None)


def _text_fields_of(sample: Iterable[dict[str, Any]], id_field: str | None) -> tuple[str, ...]:
    """Every field holding a string in some record of ``sample`` (read as a stream, not kept),
    in the order the records name their fields: a title left null in the first record still
    comes before the text."""
    order: dict[str, None] = {}
    stringy: set[str] = set()
    count = 0
    for record in sample:
        count += 1
        for key, value in record.items():
            order.setdefault(key, None)
            if isinstance(value, str):
                stringy.add(key)
    ids = () if id_field is None else (id_field,)
    fields = tuple(key for key in order if key in stringy and field_key(ids, key) is None)
    if not fields:
        raise DataFormatError(
            f"the first {count:,} records hold no text fields (no field with a string); "
            "name them with --fields"
        )
    return fields


def _check_text_fields(file: Path, first: dict[str, Any], fields: Sequence[str]) -> None:
    if not any(field_key(first, name) is not None for name in fields):
        raise DataFormatError(
            f"the first record of {file} has none of the text fields {', '.join(fields)}; it "
            f"has: {', '.join(first)} (put the text in one of those fields; an index's text "
            "fields are named when it is created, with --fields)"
        )


def check_id_is_not_text(id_field: str | None, text_fields: Sequence[str]) -> None:
    if id_field is not None and field_key(text_fields, id_field) is not None:
        raise InvalidInputError(
            f"text field {id_field!r} is the id field: a document's id is kept apart from its "
            "searched text, so nothing would be found in it; name other text fields (--fields)"
        )


def read_corpus(
    path: str | Path,
    *,
    id_field: str | None = None,
    fields: Sequence[str] | None = None,
) -> Corpus:
    """Open ``path`` as a corpus, detecting BEIR layout, the id field and the text fields.

    BEIR (a folder with corpus.jsonl[.gz], or that file itself) means id ``_id`` and text fields
    ``title`` and ``text``. Otherwise ``id_field`` defaults to the first of ``_id``, ``id``,
    ``docid``, ``doc_id``, ``pid`` present in the first record (record numbers when none is), and
    ``fields`` to the fields holding strings in the first ``FIELD_SAMPLE`` records.
    """
    if not isinstance(path, str | Path):
        raise InvalidInputError(
            f"corpus path must be a str or pathlib.Path, got {type(path).__name__} ({path!r:.60})"
        )
    if isinstance(fields, str):  # one field, not one per letter
        fields = [fields]
    source = Path(path).expanduser()
    if not source.exists():
        raise DataFormatError(f"corpus {source} does not exist")
    beir = _beir_corpus_file(source)
    if source.is_dir() and beir is None:
        raise DataFormatError(f"{source} is a folder without corpus.jsonl[.gz]; pass a file")
    file = beir or source
    fmt = _format_of(file)
    first = next(iter(_records(file, fmt)), None)
    if first is None:
        raise DataFormatError(f"corpus {file} holds no records")
    if fields:
        _check_text_fields(file, first, fields)
    if beir is not None and id_field is None and "_id" in first:
        return Corpus(
            path=file,
            format=fmt,
            id_field="_id",
            text_fields=tuple(fields or BEIR_FIELDS),
            is_beir=True,
        )
    chosen_id = id_field or _guess_id_field(first)
    if id_field is not None and field_key(first, id_field) is None:
        raise DataFormatError(
            f"the first record of {file} has no id field {id_field!r}; it has: "
            f"{', '.join(first)} (name the id field with --id-field)"
        )
    text_fields = (
        tuple(fields)
        if fields
        else _text_fields_of(islice(_records(file, fmt), FIELD_SAMPLE), chosen_id)
    )
    check_id_is_not_text(chosen_id, text_fields)
    return Corpus(
        path=file,
        format=fmt,
        id_field=chosen_id,
        text_fields=text_fields,
        id_guessed=id_field is None and chosen_id is not None,
    )


def documents_from(
    records: Iterable[Document | dict[str, Any]], id_field: str = "id"
) -> Iterator[Document]:
    """Documents from Document objects or plain dicts carrying ``id_field``."""
    if isinstance(records, str | bytes | Mapping) or not isinstance(records, Iterable):
        raise InvalidInputError(
            f"documents must be a list (or iterable) of dicts or Documents, got "
            f"{type(records).__name__} ({records!r:.60}); wrap a single document in a list"
        )
    for number, item in enumerate(records, start=1):
        if isinstance(item, Document):
            yield _checked(item)
        elif isinstance(item, dict):
            yield _checked(to_document(item, id_field, number))
        else:
            raise DataFormatError(
                f"record {number} is a {type(item).__name__} ({item!r:.60}); each document "
                f"must be a dict with an {id_field!r} field, or a Document"
            )


def _checked(document: Document) -> Document:
    """``document`` if every store can write it: an id as records' ids are checked (made a
    string), string field names, valid Unicode throughout (checked here, before a batch is
    written, so no backend fails halfway with an encoder error)."""
    problem = id_problem(document.id)
    if problem is not None:  # a bytes id was written, then broke every search of the index
        raise InvalidInputError(f"a Document's id {problem}")
    if not isinstance(document.id, str):
        document = Document(str(document.id), document.fields)
    if not is_valid_unicode(document.id):
        raise InvalidInputError(
            f"document id {document.id!r} is not valid Unicode (it holds a lone surrogate); "
            "ids and text must be valid Unicode"
        )
    if not isinstance(document.fields, Mapping):
        raise InvalidInputError(
            f"document {document.id!r}: fields must be a dict of field name -> value, got "
            f"{type(document.fields).__name__} ({document.fields!r:.60})"
        )
    for name, value in document.fields.items():
        if not isinstance(name, str):
            raise InvalidInputError(
                f"document {document.id!r}: field name {name!r} is a {type(name).__name__}; "
                f"field names must be strings (use {str(name)!r})"
            )
        if has_non_finite_number(value):
            raise InvalidInputError(
                f"document {document.id!r}: field {name!r} holds {value!r}, which JSON cannot "
                "carry and no search can read; give a finite number, a string or null"
            )
        require_unicode(name, f"document {document.id!r}: a field name")
        require_unicode(value, f"document {document.id!r}: field {name!r}")
    return document
