"""`semrank index ...` (create, add, delete, info, drop, list) and `semrank search`."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shlex
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import typer

from semrank._checks import MAX_COUNT, field_key
from semrank._progress import progress
from semrank._words import count_of, for_terminal, json_for_stdout, stdout_is_utf8
from semrank.runtime.commands import BACKEND_HELP
from semrank.store._stdin import corpus_file, piped_format, stdin_mark

if TYPE_CHECKING:
    from rich.console import Console

    from semrank.pipeline import SearchResults
    from semrank.store import Corpus, Store, UpsertCounts

index_app = typer.Typer(
    help="Named, persistent search indexes.", no_args_is_help=True, rich_markup_mode=None
)


def folder_flag(value: str) -> Path:
    """A folder flag's value; blank (an unset shell variable: --home "$H") is refused, not read
    as the current folder, where cron would make indexes no later command finds."""
    if not value.strip():
        raise typer.BadParameter("is blank; give a folder, or leave the flag out for $SEMRANK_HOME")
    return Path(value)


HOME_OPTION = typer.Option(
    None,
    "--home",
    parser=folder_flag,
    help="Where indexes live (default: $SEMRANK_HOME, else $XDG_DATA_HOME/semrank or "
    "~/.local/share/semrank).",
)
ID_FIELD_OPTION = typer.Option(
    None, "--id-field", help="Field holding the document id (default: _id, id, docid, ...)."
)
FIELDS_OPTION = typer.Option(
    None,
    "--fields",
    help="Comma-separated text fields (default: BEIR title,text, else all strings).",
)
BATCH_OPTION = typer.Option(256, "--batch-size", min=1, help="Documents per committed batch.")
FORMAT_OPTION = typer.Option(
    None,
    "--format",
    help="What stdin (a corpus given as -) holds: jsonl, json, csv or tsv, plain or gzip (a "
    "file's name says its format).",
)


def home_beats_env_store(command: Any) -> Any:
    """A command's --home given on the command line wins over $SEMRANK_STORE from the
    environment (as `semrank serve --index-home` does): with the variable exported for the
    server, `index drop NAME --home DIR` dropped the PostgreSQL index of that name."""

    @functools.wraps(command)
    def chosen(*args: Any, **kwargs: Any) -> Any:
        kwargs["store"] = chosen_store(kwargs.get("home"), kwargs.get("store"))
        return command(*args, **kwargs)

    return chosen


def chosen_store(home: Path | None, store: str | None) -> str | None:
    """The store a command uses: its --store; else none when it names a --home; else
    $SEMRANK_STORE. (The options read no environment variables themselves, so a value here
    was typed; an unset --home falls back to $SEMRANK_HOME in the store's own lookup.)"""
    from semrank.errors import InvalidInputError

    if store is not None and home is not None and store != "local":
        raise InvalidInputError(
            "--home is the embedded store's folder and --store a PostgreSQL database; give one"
        )
    if store is not None or home is not None:
        return store
    value = os.environ.get(STORE_ENV) or None
    from semrank.store._dsn import is_postgres_dsn, redact_dsn

    if value is not None and value != "local" and not is_postgres_dsn(value):
        # Said as the variable's: the user typed no --store.
        raise InvalidInputError(
            f"${STORE_ENV} is {redact_dsn(value)!r}: use 'local' or a PostgreSQL DSN "
            "postgresql://user@host:port/db, or unset it (--store and --home win over it)"
        )
    return value


STORE_ENV = "SEMRANK_STORE"
STORE_OPTION = typer.Option(
    None,
    "--store",
    help="Where the index lives: 'local' (the default, under --home) or a PostgreSQL DSN "
    "postgresql://user@host:port/db (default: $SEMRANK_STORE, unless --home is given).",
)


def _split(fields: str | None) -> list[str] | None:
    """--fields as names; blank (an unset shell variable, ",,") is refused: it indexed every
    string field without a word."""
    if fields is None:
        return None
    names = [f.strip() for f in fields.split(",") if f.strip()]
    if not names:
        from semrank.errors import InvalidInputError

        raise InvalidInputError(
            f"--fields is blank ({fields!r}); name the text fields (e.g. title,text), or leave "
            "it out to index every string field"
        )
    return names


def _ingest(
    index: Store,
    corpus: Corpus,
    batch_size: int,
    total: int | None = None,
    *,
    new: bool = False,
    piped: bool = False,
) -> UpsertCounts:
    """Stream ``corpus`` into ``index`` with a progress bar, then build the derived indexes
    (``total``: the corpus's record count when the caller has it already; ``piped``: the
    corpus is a copy of stdin, said as "stdin" and marked by what it holds, not by the copy's
    path, gone at the end).

    The index is marked incomplete while the file goes in: killed or failed halfway, it keeps
    the batches committed so far, and ``index info`` / ``list`` / ``create`` say so and how to
    finish (``index add`` of the same file)."""
    shown = _corpus_name(corpus, piped)
    # The whole file is checked (ids, fields) before the index is marked: a file refused
    # before any write must not leave an "interrupted ingest" mark that no retry clears.
    if total is None:
        with _step(_stderr_console(), f"checking {shown}"):
            total = corpus.count(index.check_storable)
    source = stdin_mark(corpus.path) if piped else corpus.path.resolve()
    if index.has_vectors and not new:
        _ = index.embedder  # loaded (and checked against the index's vectors) before the mark
    # A new index is marked at once: one killed while its model loaded (seconds) was left
    # empty and unmarked, so `create` again said only that it exists.
    earlier = index.begin_ingest(source, id_field=corpus.id_field)
    if earlier is not None:
        typer.echo(
            f"warning: an earlier ingest of {source} (started {earlier.get('started', '?')}) was "
            "interrupted, and the file has changed since: the records of that earlier file that "
            f"did not go in are not in index {index.name!r} (add them again if you have them)",
            err=True,
        )
    console = _stderr_console()
    with progress(console, f"indexing {shown}", total) as advance:
        counts = index.upsert_counted(
            corpus,
            batch_size=batch_size,
            refresh=False,  # both stores take it
            progress=advance,
        )
    index.end_ingest(source)  # every record is in; the search files can be rebuilt anytime
    with _step(console, "building BM25 / vector indexes"):
        index.refresh()
    return counts


def _stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, markup=False, soft_wrap=True)


@contextlib.contextmanager
def _step(console: Console, label: str) -> Iterator[None]:
    """A spinner at a terminal, one line in a log."""
    if console.is_terminal:
        with console.status(label):
            yield
    else:
        console.print(f"{label} ...")
        yield


@index_app.command("create")
@home_beats_env_store
def create(
    name: str = typer.Argument(..., help="Index name."),
    source: str | None = typer.Option(
        None, "--from", help="Corpus to ingest right away; - reads it from stdin (with --format)."
    ),
    data_format: str | None = FORMAT_OPTION,
    id_field: str | None = ID_FIELD_OPTION,
    fields: str | None = FIELDS_OPTION,
    dense: bool = typer.Option(True, "--dense/--no-dense", help="Store embeddings for knn."),
    embedding_model: str = typer.Option("default", "--embedding-model", help="Embedding model."),
    embedding_max_length: int | None = typer.Option(
        None, "--embedding-max-length", min=8, help="Truncate documents to N tokens when embedding."
    ),
    bm25_method: str = typer.Option("lucene", "--bm25-method", help="bm25s scoring variant."),
    k1: float = typer.Option(0.9, "--k1", help="BM25 k1 (Anserini: 0.9)."),
    b: float = typer.Option(0.4, "--b", help="BM25 b (Anserini: 0.4)."),
    ann_threshold: int | None = typer.Option(
        None, "--ann-threshold", min=1, help="Use HNSW from this many vectors on (default 20000)."
    ),
    batch_size: int = BATCH_OPTION,
    prepare: bool = typer.Option(
        False,
        "--prepare",
        help="Also embed every document's re-ranking windows now (as `semrank index prepare`), "
        "so that searches with --rerank only embed the query.",
    ),
    home: Path | None = HOME_OPTION,
    store: str | None = STORE_OPTION,
) -> None:
    """Create an index, optionally filled from a corpus (BEIR folder, corpus.jsonl[.gz], JSONL,
    JSON or CSV)."""
    from semrank.retrieve import DEFAULT_ANN_THRESHOLD, BM25Params
    from semrank.store import create_index, read_corpus
    from semrank.store._registry import check_can_create, storable_check

    _check_create_flags(
        dense=dense, embedding_model=embedding_model,
        embedding_max_length=embedding_max_length, ann_threshold=ann_threshold, prepare=prepare,
        store=store,
    )  # fmt: skip
    stdin_format = piped_format(source, data_format, usage="index create NAME --from -")
    bm25 = BM25Params(method=bm25_method, k1=k1, b=b)
    check_can_create(name, home=home, store=store, bm25=bm25)  # before reading the file through
    reading = contextlib.nullcontext() if source is None else corpus_file(source, stdin_format)
    with reading as file:
        corpus = (
            None if file is None else read_corpus(file, id_field=id_field, fields=_split(fields))
        )
        # A full pass over the file before anything is created: a bad byte or row deep in the
        # file then fails here, rather than after the index exists, half filled.
        total, used = 0, set[str]()
        if corpus is not None:  # a step shown: a large file takes a while (16 s for 123 MB)
            with _step(_stderr_console(), f"checking {_corpus_name(corpus, stdin_format)}"):
                total, used = corpus.survey(storable_check(store))
        if corpus is not None and fields:
            _check_fields_used(corpus.text_fields, used, "stdin" if stdin_format else str(file))
        index = create_index(
            name,
            home=home,
            fields=corpus.text_fields if corpus else (_split(fields) or ["title", "text"]),
            id_field=corpus.id_field if corpus else (id_field or "id"),
            embedding_model=embedding_model if dense else None,
            embedding_max_length=embedding_max_length,
            bm25=bm25,
            ann_threshold=DEFAULT_ANN_THRESHOLD if ann_threshold is None else ann_threshold,
            store=store,
        )
        with index:
            if corpus is not None:
                _describe_corpus(corpus, stdin_format)
                _ingest_into_new_index(
                    index, corpus, batch_size, total, name=name, where=_where_flags(home, store),
                    stdin_format=stdin_format,
                )  # fmt: skip
            location = index.info().location
            typer.echo(f"index {name!r}: {count_of(len(index), 'document')} at {location}")
            if prepare:
                _prepare(index, model=None, field="*")


def _corpus_name(corpus: Corpus, piped: object) -> str:
    """The corpus as messages name it: "stdin" where it is a copy of stdin (``piped``), not
    the copy's name."""
    return "stdin" if piped else corpus.path.name


def _describe_corpus(corpus: Corpus, piped: str | None) -> None:
    """Say what the corpus of a new index holds (``piped``: the format of stdin, which the
    corpus is a copy of)."""
    kind = "BEIR corpus" if corpus.is_beir else f"{corpus.format} file"
    typer.echo(
        f"{kind}: id field {corpus.id_field or '(record number)'}, "
        f"text fields {', '.join(corpus.text_fields)}"
    )
    if corpus.id_field is None and not corpus.is_beir:
        from semrank.store._corpus import ID_FIELD_GUESSES

        guesses = ", ".join(ID_FIELD_GUESSES)
        typer.echo(
            f"warning: {_corpus_name(corpus, piped)} has no id field ({guesses}): its documents "
            "get the ids 1, 2, ..., so no later `index add` can update or delete them by their "
            "own ids; name the id field with --id-field",
            err=True,
        )


def _check_fields_used(named: Sequence[str], used: set[str], source: str) -> None:
    """A --fields name that no record of the file holds is a typo (or a nested path, which
    fields are not): refused before the index exists, naming what the records hold."""
    from semrank.errors import InvalidInputError

    unused = [name for name in named if name not in used]
    if unused:
        them = "it" if len(unused) == 1 else "them"
        raise InvalidInputError(
            f"--fields {', '.join(unused)}: no record of {source} has {them} (of the fields "
            f"named, these hold text: {', '.join(sorted(used)) or 'none'}); name top-level "
            "fields the records have (`head -1 FILE` shows them)"
        )


def _check_create_flags(
    *,
    dense: bool,
    embedding_model: str,
    embedding_max_length: int | None,
    ann_threshold: int | None,
    prepare: bool,
    store: str | None,
) -> None:
    """Flags the index would silently ignore are refused before anything is read or created."""
    from semrank.errors import InvalidInputError

    embedding_flags = {
        "--embedding-model": None if embedding_model == "default" else embedding_model,
        "--embedding-max-length": embedding_max_length,
        "--ann-threshold": ann_threshold,  # the vectors' search graph: no vectors, no graph
    }
    given = [f"{flag} {value!r}" for flag, value in embedding_flags.items() if value is not None]
    if not dense and given:
        raise InvalidInputError(
            f"{given[0]} with --no-dense: an index without embeddings has no embedding model "
            "and no vector search graph; drop one of the two"
        )
    if prepare and store and store != "local":
        raise InvalidInputError(
            "--prepare: prepared windows are kept by the embedded (local) store only; drop "
            "--prepare or --store"
        )


def _where_flags(home: Path | None, store: str | None) -> str:
    """The flags that reach this index again in a command we suggest: one printed without
    them acted on another store (the local default instead of PostgreSQL)."""
    from semrank.store import redact_dsn

    if store and store != "local":
        return f" --store {shlex.quote(redact_dsn(store))}"
    return f" --home {shlex.quote(str(home))}" if home is not None else ""


def _ingest_into_new_index(
    index: Store,
    corpus: Corpus,
    batch_size: int,
    total: int,
    *,
    name: str,
    where: str,
    stdin_format: str | None = None,
) -> None:
    """Ingest, and on bad input (or a full disk) say that the index exists now and how to go
    on (from stdin: the documents are to be piped in again)."""
    from semrank.errors import SemrankError, StorageError

    try:
        _ingest(index, corpus, batch_size, total, new=True, piped=stdin_format is not None)
    except SemrankError as exc:
        again = (
            f"piping the same documents into `semrank index add {name} - --format "
            f"{stdin_format}{where}`"
            if stdin_format
            else f"`semrank index add {name} {shlex.quote(str(corpus.path))}{where}`"
        )
        go_on = (
            f"{again} goes on (unchanged documents are skipped), or "
            if corpus.id_field is not None
            else ""  # record-number ids: adding would renumber, so only starting over is safe
        )
        # A full disk (or a folder this user may not write) is no fault of the input.
        fix = (
            "free space (or fix what the error names)"
            if isinstance(exc, StorageError)
            else "fix the input"
        )
        raise type(exc)(
            f"{exc}\nindex {name!r} was created and keeps the {len(index)} documents ingested "
            f"so far: {fix}, then {go_on}`semrank index drop {name}{where}` starts over"
        ) from exc


@index_app.command("add")
@home_beats_env_store
def add(
    name: str = typer.Argument(..., help="Index name."),
    source: str = typer.Argument(
        ..., help="Corpus file or BEIR folder; - reads the documents from stdin (with --format)."
    ),
    data_format: str | None = FORMAT_OPTION,
    id_field: str | None = ID_FIELD_OPTION,
    batch_size: int = BATCH_OPTION,
    home: Path | None = HOME_OPTION,
    store: str | None = STORE_OPTION,
) -> None:
    """Add or replace (upsert by id) documents; unchanged ones are skipped, so re-running an
    interrupted ingest only does the rest."""
    from semrank.store import open_index, read_corpus

    stdin_format = piped_format(source, data_format)  # before the index opens or stdin is read
    with (
        open_index(name, home=home, store=store) as index,
        corpus_file(source, stdin_format) as file,
    ):
        settings = index.settings
        corpus = read_corpus(
            file, id_field=id_field or settings.id_field, fields=settings.text_fields
        )
        _check_has_ids(corpus, name)
        shown = _corpus_name(corpus, stdin_format)
        counts = _ingest(index, corpus, batch_size, piped=stdin_format is not None)
        skipped = counts.documents - counts.written
        typer.echo(
            f"upserted {count_of(counts.written, 'document')}"
            + (f" ({skipped:,} already stored as given, skipped)" if skipped else "")
            + f"; index {_called(index, name)} holds {len(index)}"
        )
        _warn_unread_fields(index, counts, shown=shown)
        if index.prepared():
            _keep_prepared(index, name, [document.id for document in corpus])


def _warn_unread_fields(index: Store, counts: UpsertCounts, *, shown: str) -> None:
    """Text the index keeps but does not search: said, since a search for it finds nothing
    (once: the store names only fields new to the index). ``shown``: the corpus's name."""
    from semrank.store._base import unread_fields_warning

    if counts.unread_fields:
        said = unread_fields_warning(
            index, counts.unread_fields, records=f"{shown}'s records", search="--field NAME",
            create="--fields",
        )  # fmt: skip
        typer.echo(f"warning: {said}", err=True)


def _check_has_ids(corpus: Corpus, name: str) -> None:
    """Record numbers are ids only for a new index: added records would reuse 1, 2, ... and
    replace the documents that hold them."""
    from semrank.errors import InvalidInputError
    from semrank.store._corpus import ID_FIELD_GUESSES

    if corpus.id_field is None:
        raise InvalidInputError(
            f"{corpus.path} has no id field ({', '.join(ID_FIELD_GUESSES)}): its records would "
            f"get the ids 1, 2, ... and replace the documents of index {name!r} that have "
            "them; give each record an id (and name its field with --id-field)"
        )


def _keep_prepared(index: Store, name: str, ids: list[str]) -> None:
    """Extend the tables of each model and field the index was prepared for with the windows
    of documents ``ids``. A model that no longer loads leaves the documents added (they are)
    and says how to go on."""
    from semrank.errors import SemrankError

    wanted = {
        (table.meta.get("model"), table.meta.get("field", "*"))
        for table in index.prepared()
        if "bi_encoder" in table.meta
    }
    for model, field in sorted(wanted, key=str):
        try:
            _prepare(index, model=model, field=field, ids=ids)
        except SemrankError as exc:
            typer.echo(
                f"warning: the documents were added, but the windows prepared with "
                f"{model or 'the default model'} were not brought up to date: {exc}\n"
                f"searches embed the new documents' windows as before; run `semrank index "
                f"prepare {_prepare_args(name, model, field)}` to prepare them",
                err=True,
            )


@index_app.command("prepare")
@home_beats_env_store
def prepare(
    name: str = typer.Argument(..., help="Index name."),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Re-ranking model searches will use (default: the default)."
    ),
    field: str = typer.Option(
        "*", "--field", help="Field searches re-rank on (default: all text fields)."
    ),
    home: Path | None = HOME_OPTION,
    store: str | None = STORE_OPTION,
) -> None:
    """Embed every document's re-ranking windows once and keep them with the index: a search
    with --rerank then runs the model's bi-encoder on the query only (the cross-encoder still
    reads every pair). Run again after adding documents; only new windows are embedded."""
    from semrank.store import open_index

    with open_index(name, home=home, store=store) as index:
        _prepare(index, model=model, field=field)


def _prepare_args(name: str, model: str | None, field: str) -> str:
    """The `semrank index prepare` arguments that redo one table."""
    args = name + (f" --model {model}" if model else "")
    return args + (f" --field {field!r}" if field != "*" else "")


def _prepare(index: Store, *, model: str | None, field: str, ids: list[str] | None = None) -> None:
    from semrank.pipeline import prepare_index

    total = len(index) if ids is None else len(set(ids))
    with progress(_stderr_console(), "embedding re-ranking windows", total) as advance:
        done = prepare_index(index, model=model, field=field, ids=ids, progress=advance)
    if ids is not None and not done:
        typer.echo(
            f"note: no windows prepared with {model or 'the default model'} on field {field!r} "
            "at this precision to extend; `semrank index prepare "
            f"{_prepare_args(index.name, model, field)}` prepares them all",
            err=True,
        )
    for table in done:
        what = (
            f"added the windows of {table.documents} documents: {table.windows} prepared"
            if table.extended
            else f"prepared {table.windows} windows of {table.documents} documents"
        )
        typer.echo(f"{what} with {table.model} for re-ranking on field {field!r}")


def _read_ids(ids_file: Path) -> list[str]:
    """One id per line, exactly as written: ids may begin or end with spaces (an ingest keeps
    them), so only the line break (LF or CRLF) is taken off. Blank lines are skipped: no
    document can have a blank id."""
    from semrank._files import bad_byte
    from semrank.errors import InvalidInputError

    data = _ids_file_bytes(ids_file)
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark is not part of the first id
    except UnicodeDecodeError as exc:
        at = bad_byte(data, exc)
        line = data.count(b"\n", 0, at) + 1
        raise InvalidInputError(
            f"--ids-file {ids_file}:{line}: not valid UTF-8 (byte 0x{data[at]:02x}); save "
            "the file as UTF-8"
        ) from exc
    # A mark starting a later line (files joined with cat) is not part of that id either.
    lines = (line.removesuffix("\r").removeprefix("\ufeff") for line in text.split("\n"))
    return [line for line in lines if line.strip()]


def _ids_file_bytes(ids_file: Path) -> bytes:
    """The file's bytes; - is stdin, and a pipe (`<(jq ...)`, /dev/stdin) is read as a file is:
    both were refused as "no such file" / "not a file", so ids could not be piped in."""
    from semrank._files import file_problem, stdin_bytes
    from semrank.errors import InvalidInputError

    if str(ids_file) == "-":
        return stdin_bytes(
            "--ids-file",
            "the ids",
            "jq -r '.hits[].id' hits.json | semrank index delete NAME --ids-file -",
        )
    problem = file_problem(ids_file)
    if problem is not None:
        raise InvalidInputError(
            f"--ids-file {ids_file}: {problem}; pass a file with one id per line"
        )
    return ids_file.read_bytes()


@index_app.command("delete")
@home_beats_env_store
def delete(
    name: str = typer.Argument(..., help="Index name."),
    ids: list[str] = typer.Argument(None, help="Document ids to delete."),
    ids_file: Path | None = typer.Option(
        None, "--ids-file", help="File with one id per line; - reads them from stdin."
    ),
    filter_json: str | None = typer.Option(
        None,
        "--filter",
        help='Delete every document passing this Elasticsearch filter JSON, e.g. \'{"term": '
        '{"tenant": "acme"}}\' (instead of ids; one that passes every document is refused).',
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Say how many documents would go (and the first ids); delete none."
    ),
    home: Path | None = HOME_OPTION,
    store: str | None = STORE_OPTION,
) -> None:
    """Delete documents by id, or every document passing --filter."""
    from semrank.errors import InvalidInputError
    from semrank.store import open_index

    if filter_json is not None:
        if ids or ids_file is not None:
            raise InvalidInputError(
                "give the documents to delete by ids (arguments or --ids-file) or by --filter, "
                "not both"
            )
        with open_index(name, home=home, store=store) as index:
            _delete_by_filter(index, filter_json, dry_run=dry_run)
        return
    wanted = list(ids or []) + (_read_ids(ids_file) if ids_file is not None else [])
    if not wanted:
        raise InvalidInputError("name the ids to delete (arguments, --ids-file or --filter)")
    with open_index(name, home=home, store=store) as index:
        if dry_run:  # an id given twice is deleted once
            unique = list(dict.fromkeys(wanted))
            found = [i for i, doc in zip(unique, index.get(unique), strict=True) if doc is not None]
            _say_dry_run(index, found, f"of the {len(wanted)} ids given")
            return
        removed = index.delete(wanted)
        index.refresh()
        typer.echo(
            f"deleted {removed} of {len(wanted)} ids; index {_called(index, name)} holds "
            f"{len(index)}"
        )
    if removed < len(wanted) and any(i != i.strip() for i in wanted):
        typer.echo(
            "note: ids are matched exactly, so the spaces at the start or end of some of the "
            "ids given are part of them",
            err=True,
        )


def _called(index: Store, name: str) -> str:
    """The index written, as a count after a write names it: ``'docs-v1'``, or ``'docs-v1'
    (alias 'live')`` where the command named an alias."""
    return repr(index.name) if index.name == name else f"{index.name!r} (alias {name!r})"


# A dry run lists this many of the ids it would delete.
DRY_RUN_IDS_SHOWN = 10


def _delete_by_filter(index: Store, filter_json: str, *, dry_run: bool) -> None:
    from semrank.store._base import deletion_filter

    flt = deletion_filter(filter_option(filter_json), "--filter", given=filter_json.strip())
    if dry_run:
        _say_dry_run(index, index.ids_matching(flt), "passing --filter")
        return
    removed = index.delete_matching(flt)
    index.refresh()
    typer.echo(
        f"deleted {count_of(removed, 'document')} passing --filter; index {index.name!r} "
        f"holds {len(index)}"
    )


def _say_dry_run(index: Store, found: list[str], which: str) -> None:
    shown = ", ".join(repr(i) for i in found[:DRY_RUN_IDS_SHOWN])
    more = (
        f", ... ({len(found) - DRY_RUN_IDS_SHOWN} more)" if len(found) > DRY_RUN_IDS_SHOWN else ""
    )
    typer.echo(
        f"dry run: would delete {count_of(len(found), 'document')} {which} from index "
        f"{index.name!r} (of {len(index)}){': ' + shown + more if found else ''}; nothing deleted"
    )


@index_app.command("reindex")
@home_beats_env_store
def reindex_command(
    source: str = typer.Argument(..., help="Index (or alias) to copy from."),
    dest: str = typer.Argument(
        ..., help="Index to copy into (created with SOURCE's settings when missing)."
    ),
    filter_json: str | None = typer.Option(
        None,
        "--filter",
        help='Copy only the documents passing this Elasticsearch filter JSON, e.g. \'{"term": '
        '{"tenant": "acme"}}\'.',
    ),
    create_only: bool = typer.Option(
        False,
        "--create-only",
        help="Leave the ids DEST holds as they are (op_type create), and say which.",
    ),
    max_docs: int | None = typer.Option(None, "--max-docs", min=1, help="Copy at most this many."),
    batch_size: int = BATCH_OPTION,
    dest_store: str | None = typer.Option(
        None,
        "--dest-store",
        help="Where DEST lives when elsewhere than SOURCE: 'local' (under --home) or a "
        "PostgreSQL DSN (default: SOURCE's store).",
    ),
    home: Path | None = HOME_OPTION,
    store: str | None = STORE_OPTION,
) -> None:
    """Copy SOURCE's documents (those passing --filter) into DEST, batch by batch: DEST
    analyses them with its own settings, and takes SOURCE's stored vectors where both embed
    the same text with the same model (else embeds them, and says why). Then move an alias
    to DEST with `semrank index alias ALIAS DEST`. SOURCE is only read: a copy stopped part
    way is finished by running it again."""
    from semrank.errors import IndexNotFoundError
    from semrank.store import create_index_like, open_index, reindex
    from semrank.store._reindex import vectors_note

    flt = None if filter_json is None else filter_option(filter_json)
    to_store = store if dest_store is None else (None if dest_store == "local" else dest_store)
    with open_index(source, home=home, store=store) as source_index:
        opened: Store
        try:  # an alias as DEST: the index it names, as the server's _reindex writes
            opened, created = open_index(dest, home=home, store=to_store), False
        except IndexNotFoundError:
            opened = create_index_like(source_index, dest, home=home, store=to_store)
            created = True
        total = len(source_index) if flt is None else source_index.count_matching(flt)
        total = total if max_docs is None else min(total, max_docs)
        bar = progress(_stderr_console(), f"copying into {dest!r}", total)
        with opened as dest_index, bar as advance:
            counts = reindex(
                source_index,
                dest_index,
                filter=flt,
                op_type="create" if create_only else "index",
                conflicts="proceed",
                max_docs=max_docs,
                batch_size=batch_size,
                progress=advance,
            )
            made = "new index" if created else "index"
            typer.echo(
                f"copied {count_of(counts.created + counts.updated, 'document')} of index "
                f"{source_index.name!r} into {made} {dest_index.name!r} ({counts.created} new, "
                f"{counts.updated} replaced); it holds {len(dest_index)}"
            )
            note = vectors_note(counts, source_index.name, dest_index.name)
            if note is not None:
                typer.echo(note)
    if counts.conflicts:
        shown = ", ".join(repr(i) for i in counts.conflicts[:DRY_RUN_IDS_SHOWN])
        typer.echo(
            f"left {count_of(len(counts.conflicts), 'document')} that {dest!r} holds already "
            f"as they were (--create-only): {shown}",
            err=True,
        )


@index_app.command("info")
@home_beats_env_store
def info(
    name: str = typer.Argument(..., help="Index name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    home: Path | None = HOME_OPTION,
    store: str | None = STORE_OPTION,
) -> None:
    """Documents, fields, models and files of an index."""
    from semrank.store import open_index

    with open_index(name, home=home, store=store) as index:
        summary = index.info()
        data = summary.to_dict()
        note = index.unfinished_note(summary.unfinished_ingests, where=_where_flags(home, store))
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    settings = data.pop("settings")
    data.pop("unfinished_ingests")  # said in words below
    for key, value in {**data, **{f"settings.{k}": v for k, v in settings.items()}}.items():
        typer.echo(f"{key:>30}: {value}")
    if note:
        typer.echo(f"{'incomplete':>30}: {note}")


@index_app.command("export")
@home_beats_env_store
def export(
    name: str = typer.Argument(..., help="Index name."),
    output: str | None = typer.Option(
        None,
        "--output",
        "-o",
        help="File to write (- or left out: stdout); it appears once every document is in it.",
    ),
    batch_size: int = typer.Option(1000, "--batch-size", min=1, help="Documents read per query."),
    filter_json: str | None = typer.Option(
        None,
        "--filter",
        help='Export only the documents passing this Elasticsearch filter JSON, e.g. \'{"term": '
        '{"tenant": "acme"}}\'.',
    ),
    home: Path | None = HOME_OPTION,
    store: str | None = STORE_OPTION,
) -> None:
    """Every stored document (or those passing --filter) as JSONL, one object per line: its id
    under the index's id field, then its fields as stored (embedded store: in the order first
    written; PostgreSQL: by id). `semrank index create NAME --from - --format jsonl` reads it
    back; the flags that give the new index this one's settings are printed on stderr."""
    from semrank.store import open_index

    flt = None if filter_json is None else filter_option(filter_json)  # before any file
    target = None if output is None or output == "-" else _export_target(Path(output))
    with open_index(name, home=home, store=store) as index:
        if target is None:
            ascii_only = not stdout_is_utf8()
            count = _write_jsonl(index, sys.stdout, batch_size, flt, ascii_only=ascii_only)
        else:
            count = _export_to_file(index, target, batch_size, flt)
        passing = "" if flt is None else " passing --filter"
        typer.echo(
            f"exported {count_of(count, 'document')}{passing} of index {name!r}; to create it "
            "elsewhere "
            f"(add --store DSN or --home DIR): {_create_command(index.settings)}",
            err=True,
        )
        incomplete = index.unfinished_note(where=_where_flags(home, store))
        warnings = [f"index {name!r} is incomplete: {incomplete}" if incomplete else None]
        for warning in filter(None, [*warnings, _not_carried(index)]):
            typer.echo(f"warning: {warning}", err=True)


def _write_jsonl(index: Store, stream: Any, batch_size: int, flt: Any, *, ascii_only: bool) -> int:
    """Write the documents of ``index`` (those passing ``flt``: all if None) to ``stream`` a
    page at a time; returns how many. ``ascii_only``: Unicode as \\uXXXX escapes (a stdout
    that is not UTF-8 would replace it)."""
    id_field, count, lines = index.settings.id_field or "id", 0, list[str]()
    # Passed on only when given: a store of a user's own may not take filters.
    filtered = {} if flt is None else {"filter": flt}
    for document in index.iter_documents(batch_size=batch_size, **filtered):
        lines.append(_export_line(document, id_field, ascii_only=ascii_only))
        count += 1
        if len(lines) >= batch_size:
            stream.write("".join(lines))
            lines = []
    stream.write("".join(lines))
    stream.flush()
    return count


def _export_line(document: Any, id_field: str, *, ascii_only: bool) -> str:
    """One JSONL line: ``{id_field: id, **fields}``, as `index create --from` reads it back."""
    if field_key(document.fields, id_field) is not None:  # stored through the library only
        from semrank.errors import DataFormatError

        raise DataFormatError(
            f"document {document.id!r} holds a field {id_field!r} beside its id, and a JSONL "
            f"line cannot hold both under {id_field!r}: upsert it again without that field (or "
            "under another name), then export again"
        )
    return json.dumps({id_field: document.id, **document.fields}, ensure_ascii=ascii_only) + "\n"


def _export_target(output: Path) -> Path:
    """``--output``, refused before the index is read where no file can be written there."""
    from semrank.errors import InvalidInputError

    if output.is_dir():
        raise InvalidInputError(f"--output {output} is a folder; name a file (e.g. docs.jsonl)")
    if not output.parent.is_dir():
        raise InvalidInputError(
            f"--output {output}: the folder {output.parent} does not exist; create it first"
        )
    return output


def _export_to_file(index: Store, output: Path, batch_size: int, flt: Any) -> int:
    """Written whole (``written_whole``): an export stopped halfway must not leave a file that
    reads as a whole index, nor (SIGTERM, SIGHUP) a hidden one as large, named by a process
    that is gone."""
    from semrank._files import written_whole

    # The stream closes before written_whole renames the file into place.
    with written_whole(output) as partial, partial.open("w", encoding="utf-8", newline="\n") as out:
        return _write_jsonl(index, out, batch_size, flt, ascii_only=False)


def _not_carried(index: Store) -> str | None:
    """The BM25 settings of ``index`` that no `index create` flag sets (an index made by an
    earlier semrank's analysis, or through the library), said: the new index differs there."""
    from semrank.retrieve import BM25Params

    bm25 = index.settings.bm25
    new = BM25Params(method=bm25.method, k1=bm25.k1, b=bm25.b)
    differ = [
        f"{key} {value!r}" for key, value in bm25.to_dict().items() if value != new.to_dict()[key]
    ]
    if not differ:
        return None
    return (
        f"index {index.name!r}'s BM25 {', '.join(differ)} differ from what `index create` gives "
        "a new index, and no flag sets them: the new index analyses and scores as new indexes "
        "do (create it with semrank.store.create_index(..., bm25=...) to keep them)"
    )


def _create_command(settings: Any) -> str:
    """`semrank index create` of an index with ``settings``, reading an export from stdin."""
    args = ["semrank", "index", "create", settings.name, "--from", "-", "--format", "jsonl"]
    args += ["--id-field", settings.id_field or "id", "--fields", ",".join(settings.text_fields)]
    if settings.embedding_model is None:
        args.append("--no-dense")
    else:
        args += ["--embedding-model", settings.embedding_model]
        if settings.embedding_max_length is not None:
            args += ["--embedding-max-length", str(settings.embedding_max_length)]
        args += ["--ann-threshold", str(settings.ann_threshold)]
    bm25 = settings.bm25
    args += ["--bm25-method", bm25.method, "--k1", str(bm25.k1), "--b", str(bm25.b)]
    return shlex.join(args)


@index_app.command("drop")
@home_beats_env_store
def drop(
    name: str = typer.Argument(..., help="Index name."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    home: Path | None = HOME_OPTION,
    store: str | None = STORE_OPTION,
) -> None:
    """Delete an index and its files."""
    from semrank.store import drop_index, index_path

    if not yes and _exists(name, home, store):  # else drop_index says not found
        from semrank.store import redact_dsn as redact

        where = redact(store) if store and store != "local" else index_path(name, home)
        if not _confirmed(f"drop index {name!r} at {where}?"):
            typer.echo("not dropped", err=True)
            return  # the answer asked for: nothing went wrong (exit status 0)
    linked = _linked_folder(name, home, store)
    drop_index(name, home=home, store=store)
    if linked is None:
        typer.echo(f"dropped {name!r}")
        return
    link, folder = linked
    typer.echo(
        f"dropped {name!r}: removed {link}, a link; the index's files at {folder} are kept "
        "(remove that folder to free its space)"
    )


def _linked_folder(name: str, home: Path | None, store: str | None) -> tuple[Path, Path] | None:
    """(link, the folder it leads to) where the embedded index's folder is a link, which a drop
    removes without deleting what it leads to (None: a folder, or another store)."""
    from semrank.store import index_path

    if store and store != "local":
        return None
    link = index_path(name, home)
    return (link, link.resolve()) if link.is_symlink() else None


def _exists(name: str, home: Path | None, store: str | None) -> bool:
    """Whether drop would find the index: by its folder, as drop_index finds it (a name
    compared with the listed ones differs in case on a case-insensitive disk, and the drop went
    ahead unasked)."""
    from semrank.store import index_path, list_indexes

    if store and store != "local":
        return name in list_indexes(store=store)
    return index_path(name, home).exists()


def _confirmed(question: str) -> bool:
    """The user's yes or no; no answer at all (stdin closed, as in a script) is bad input that
    names --yes, not click's "Aborted!" with exit status 1."""
    from semrank.errors import InvalidInputError

    no_answer = InvalidInputError(
        "no answer to the confirmation (stdin is closed); pass --yes to drop without asking"
    )
    if sys.stdin is None:  # started with stdin closed (`<&-`): input() raised RuntimeError
        raise no_answer
    try:
        return typer.confirm(question)
    except typer.Abort:
        if sys.stdin.isatty():  # Ctrl-C at the prompt: 130, as a shell reports it (click: 1)
            typer.echo(err=True)
            raise typer.Exit(130) from None
        raise no_answer from None


@index_app.command("list")
@home_beats_env_store
def list_(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    home: Path | None = HOME_OPTION,
    store: str | None = STORE_OPTION,
) -> None:
    """The indexes under the home directory (or in --store)."""
    from semrank.store import list_indexes, resolve_home
    from semrank.store._dsn import redact_dsn

    aliases = _aliases_by_index(home, store)
    rows = [
        {**_list_row(name, home, store), "aliases": aliases.get(name, [])}
        for name in list_indexes(home, store=store)
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        where = redact_dsn(store) if store and store != "local" else resolve_home(home)
        typer.echo(f"no indexes in {where}")
    for row in rows:
        named = f"\taliases: {', '.join(row['aliases'])}" if row["aliases"] else ""
        if "error" in row:
            typer.echo(f"{row['name']}\tunreadable: {row['error']}{named}")
            continue
        incomplete = f"\tincomplete: {row['incomplete']}" if row["incomplete"] else ""
        typer.echo(
            f"{row['name']}\t{count_of(row['documents'], 'document')}\t"
            f"{row['embedding_model'] or 'bm25 only'}" + incomplete + named
        )


def _aliases_by_index(home: Path | None, store: str | None) -> dict[str, list[str]]:
    """Each index's aliases, sorted."""
    from semrank.store import list_aliases

    named: dict[str, list[str]] = {}
    for alias, index in list_aliases(home, store=store).items():
        named.setdefault(index, []).append(alias)
    return named


@index_app.command("alias")
@home_beats_env_store
def alias(
    alias: str = typer.Argument(..., help="The alias: the name searches and writes use."),
    index: str | None = typer.Argument(
        None, help="The index it names from now on (moved from the one it named, at once)."
    ),
    remove: bool = typer.Option(False, "--remove", help="Remove the alias (give no INDEX)."),
    home: Path | None = HOME_OPTION,
    store: str | None = STORE_OPTION,
) -> None:
    """Point ALIAS at INDEX: added, or moved there from the index it names in one step (a
    search through it meanwhile finds one index or the other, never none); --remove removes
    it. `index list` shows each index's aliases."""
    from semrank.errors import InvalidInputError
    from semrank.store import list_aliases, update_aliases

    if remove == (index is not None):
        raise InvalidInputError(
            f"give the INDEX alias {alias!r} is to name (semrank index alias {alias} INDEX), or "
            f"--remove to remove it{', not both' if remove else ''}"
        )
    held = list_aliases(home, store=store).get(alias)
    if index is None:
        update_aliases([{"remove": {"index": "*", "alias": alias}}], home=home, store=store)
        typer.echo(f"removed alias {alias!r} (of index {held!r})")
        return
    # Whichever index it names when the change is applied (another process may move it first).
    moved = {"remove": {"index": "*", "alias": alias, "must_exist": False}}
    update_aliases([moved, {"add": {"index": index, "alias": alias}}], home=home, store=store)
    was = f" (was {held!r})" if held and held != index else ""
    typer.echo(f"alias {alias!r} -> index {index!r}{was}")


def _list_row(name: str, home: Path | None, store: str | None) -> dict[str, Any]:
    """One index's row; an unreadable index is marked, with why, instead of failing the list."""
    from semrank.errors import SemrankError
    from semrank.store import open_index

    try:
        with open_index(name, home=home, store=store) as index:
            return {
                "name": name,
                "documents": len(index),
                "embedding_model": index.settings.embedding_model,
                # None: complete
                "incomplete": index.unfinished_note(where=_where_flags(home, store)),
            }
    except SemrankError as exc:
        return {
            "name": name,
            "documents": None,
            "embedding_model": None,
            "incomplete": None,
            "error": str(exc),
        }


def _snippet(
    document: dict[str, Any] | None, width: int = 90, text_fields: Sequence[str] = ()
) -> str:
    if not document:
        return ""
    # The index's text fields first: PostgreSQL's jsonb gives the fields back sorted by length
    # (a tagline came before the overview), not in the order they were written.
    named = [key for key in (field_key(document, f) for f in text_fields) if key is not None]
    keys = named + [k for k in document if k not in named]
    values = (document[k] for k in keys)
    text = " | ".join(str(v) for v in values if isinstance(v, str) and v)
    return text if len(text) <= width else text[: width - 1] + "…"


def _fragments(highlight: dict[str, list[str]]) -> str:
    """A hit's highlights in one cell: each field's fragments, "…" between them."""
    return "\n".join(f"{name}: {' … '.join(parts)}" for name, parts in highlight.items())


def print_results(results: SearchResults, title: str, text_fields: Sequence[str] = ()) -> None:
    """A table: final rank, first-stage rank, id, scores, text (``text_fields`` first; a
    search that highlighted: each hit's fragments instead)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=for_terminal(title))
    # A search of several indexes: which one holds each hit (one id may be in two).
    several = len({hit.index for hit in results.hits}) > 1
    sorted_by = any(hit.sort is not None for hit in results.hits)  # a sort by fields: its values
    columns = ("rank", "1st-stage rank", *(("index",) if several else ()), "id", "score")
    columns += ("sort",) if sorted_by else ()
    for column in (*columns, "1st-stage score", "text"):
        # An id cut short read like another hit's ("https://exam…" for every URL id).
        table.add_column(column, overflow="fold" if column in ("id", "text") else "ellipsis")
    for hit in results.hits:
        moved = hit.first_stage_rank - hit.rank
        arrow = f" (↑{moved})" if moved > 0 else f" (↓{-moved})" if moved < 0 else ""
        held = (for_terminal(str(hit.index)),) if several else ()
        table.add_row(
            str(hit.rank),
            f"{hit.first_stage_rank}{arrow}",
            *held,
            for_terminal(hit.id),
            f"{hit.score:.4f}",
            *((for_terminal(json.dumps(hit.sort, ensure_ascii=False)),) if sorted_by else ()),
            f"{hit.first_stage_score:.4f}",
            for_terminal(
                _fragments(hit.highlight)
                if hit.highlight is not None
                else _snippet(hit.document, text_fields=text_fields)
            ),
        )
    Console(markup=False).print(table)  # documents, ids and queries are shown as written


@home_beats_env_store
def search_command(
    index: str = typer.Argument(
        ...,
        help="Index name, or several searched as one: a,b, a pattern such as logs-*, or _all "
        "(each hit names its index).",
    ),
    query: str = typer.Argument(
        None,
        help="Query text: fills {{query}} in --retriever (a tree without that placeholder reads "
        "it in place of its own texts).",
    ),
    retriever: str | None = typer.Option(
        None,
        "--retriever",
        help="Elasticsearch retriever JSON: a file or pipe (or a _search body, whose size caps "
        "the hits), inline {...} or - for stdin; or a shorthand: bm25, dense, hybrid or linear, "
        "+rerank to re-rank (then --window, --model, --min-score and --field apply as with "
        "the flags).",
    ),
    bm25: bool = typer.Option(False, "--bm25", help="BM25 first stage (the default)."),
    dense: bool = typer.Option(False, "--dense", help="Dense (embedding) first stage."),
    hybrid: bool = typer.Option(False, "--hybrid", help="RRF of BM25 and dense."),
    rerank: bool = typer.Option(False, "--rerank", help="Re-rank the first stage's window."),
    model: str | None = typer.Option(None, "--model", help="Re-ranking model (default: bundled)."),
    window: int | None = typer.Option(
        None,
        "--window",
        min=1,
        help="How many first-stage hits to re-rank (default: 100, or --top-n when larger).",
    ),
    top_n: int | None = typer.Option(
        None,
        "--top-n",
        min=1,
        help="How many hits to return (default: a _search body's size, else 10 or the top "
        "rank_window_size when smaller).",
    ),
    offset: int = typer.Option(
        0,
        "--offset",
        min=0,
        help="Hits to skip first (Elasticsearch's from): --offset 10 --top-n 10 is page 2, "
        "ranked 11 to 20. A compound retriever pages over its rank_window_size.",
    ),
    min_score: float | None = typer.Option(None, "--min-score", help="Drop re-ranked hits below."),
    field: str = typer.Option("*", "--field", help="Field to search and re-rank ('*': all text)."),
    filter_json: str | None = typer.Option(
        None,
        "--filter",
        help='Only documents passing this Elasticsearch filter JSON, e.g. \'{"term": '
        '{"lang": "en"}}\' (term, terms, range, exists, ids, bool; a list: all of them).',
    ),
    backend: str | None = typer.Option(
        None, "--backend", help=BACKEND_HELP + " For the re-ranking models."
    ),
    feedback: bool = typer.Option(
        True,
        "--feedback/--no-feedback",
        help="The re-ranker's pseudo-relevance feedback (on where the model has it).",
    ),
    highlight: list[str] | None = typer.Option(
        None,
        "--highlight",
        help="Show each hit's fragments of this field with the query's words marked <em>...</em> "
        "(repeatable; * wildcards; a _search body's highlight object sets other options).",
    ),
    aggs_json: str | None = typer.Option(
        None,
        "--aggs",
        help="Elasticsearch aggregations (facets) JSON over every document the search matches, "
        'e.g. \'{"sources": {"terms": {"field": "source"}}}\' (terms, min, max, avg, sum, '
        "value_count, cardinality, range).",
    ),
    sort: list[str] | None = typer.Option(
        None,
        "--sort",
        help="Order hits by a document field instead of score: FIELD, FIELD:asc or FIELD:desc "
        "(repeatable: ties go to the next; _score, _doc). A filter search sorts every passing "
        "document, a match or knn search its retrieved hits.",
    ),
    search_after: str | None = typer.Option(
        None,
        "--search-after",
        help="The last hit's sort values as JSON (shown with --json): the page after it.",
    ),
    as_json: bool = typer.Option(False, "--json", help='Print {"hits": [...]} as JSON.'),
    home: Path | None = HOME_OPTION,
    store: str | None = STORE_OPTION,
) -> None:
    """Search an index: BM25 / dense / hybrid first stage, optionally re-ranked."""
    from semrank.pipeline import check_page, reranking_nodes

    if top_n is not None and top_n > MAX_COUNT:  # the flag named (the store said "k")
        from semrank.errors import InvalidInputError

        raise InvalidInputError(f"--top-n {top_n} must be at most {MAX_COUNT:,}")
    flt = None if filter_json is None else filter_option(filter_json)
    aggs = None if aggs_json is None else aggs_option(aggs_json)
    if retriever is not None:
        retriever = piped_retriever(retriever, "search NAME QUERY")
    stage_flags = (bm25, dense, hybrid, rerank)
    shorthand = _shorthand(retriever, any(stage_flags))
    if retriever is not None and shorthand is None:
        given: dict[str, object] = {
            "--model": model,
            "--min-score": min_score,
            "--window": window,
            "--field": None if field == "*" else field,
        }
        planned = _search_of_retriever(
            retriever, offset, top_n, highlight, stage_flags_given=any(stage_flags), given=given
        )
    else:
        planned = _search_of_flags(
            shorthand, stage_flags, offset, top_n, highlight,
            reranker={"model": model, "window": window, "min_score": min_score}, field=field,
        )  # fmt: skip
    check_page(planned.offset, planned.top_n, ("--offset", "--top-n"))
    check_reranking_flags_used(
        backend,
        feedback,
        reranks=bool(reranking_nodes(planned.tree)),
        nothing="this search re-ranks nothing; add --rerank (or a text_similarity_reranker to "
        "the retriever)",
    )
    asked = {
        "retriever": with_rerankers(planned.tree, backend=backend, feedback=feedback),
        "k": planned.top_n, "with_documents": planned.with_documents, "filter": flt,
        "highlight": planned.marks, "aggs": aggs, "offset": planned.offset,
        **_sort_flags(sort, search_after, planned.sort),
    }  # fmt: skip
    results, text_fields = _run_search(index, query, asked, home=home, store=store)
    _show_results(results, f"{index}: {query or '(query from retriever)'}", text_fields, as_json)


class _PlannedSearch(NamedTuple):
    """What `semrank search`'s flags or --retriever ask: the tree, the page, and what hits show."""

    tree: Any
    offset: int
    top_n: int
    with_documents: bool  # a _search body's "_source": false leaves them out
    marks: Any  # what to highlight, or None
    sort: Any = None  # a _search body's sort by fields (a SortRequest), or None


def _search_of_retriever(
    retriever: str,
    offset: int,
    top_n: int | None,
    highlight: list[str] | None,
    *,
    stage_flags_given: bool,
    given: dict[str, object],
) -> _PlannedSearch:
    """The search a --retriever file or inline JSON holds (``given``: the tree-building flags,
    refused beside it), its page read with the body's from and size."""
    from semrank.pipeline import hits_asked, page_start

    _check_tree_flags(stages_or_rerank=stage_flags_given, given=given)
    body = _tree_from(retriever, offset)
    marks = _highlight_of(highlight or None, body.highlight)
    offset = page_start(offset, body.offset, "--offset ")
    top_n = hits_asked(retriever, body, top_n, "--top-n")
    return _PlannedSearch(
        body.tree, offset, top_n, with_documents=body.source, marks=marks, sort=body.sort
    )


def _search_of_flags(
    shorthand: Any,
    stage_flags: tuple[bool, bool, bool, bool],
    offset: int,
    top_n: int | None,
    highlight: list[str] | None,
    *,
    reranker: dict[str, Any],
    field: str,
) -> _PlannedSearch:
    """The search --bm25 / --dense / --hybrid / --rerank (or a --retriever shorthand, as the
    flags it stands for) build; ``reranker``: --model, --window and --min-score."""
    from semrank.pipeline import build_retriever, rerank_window_for

    bm25, dense, hybrid, rerank = stage_flags
    model, window, min_score = reranker["model"], reranker["window"], reranker["min_score"]
    _check_search_flags(
        stages=(bm25, dense, hybrid), rerank=rerank, model=model, min_score=min_score,
        window=window, shorthand=shorthand,
    )  # fmt: skip
    stage = "dense" if dense else "hybrid" if hybrid else "bm25"
    top_n = DEFAULT_TOP_N if top_n is None else top_n
    if shorthand is not None:  # as the flags it stands for
        stage, rerank = shorthand.first_stage, shorthand.rerank
    # As shorthands: the re-ranker reads every hit down to the page's last.
    window = rerank_window_for(offset + top_n) if window is None else window
    _check_window_and_field(
        rerank=rerank, window=window, top_n=top_n, dense_only=stage == "dense" and not rerank,
        field=field,
    )  # fmt: skip
    if rerank and model is not None:  # named now: a first stage that found nothing hid a typo
        _check_model_exists(model)
    tree = build_retriever(
        stage, rerank=rerank, model=model, window=window, min_score=min_score, field=field
    )
    return _PlannedSearch(tree, offset, top_n, with_documents=True, marks=highlight or None)


def _sort_flags(flags: list[str] | None, after: str | None, body_sort: Any) -> dict[str, Any]:
    """``search``'s sort from --sort (``FIELD[:asc|desc]`` each) and --search-after (JSON),
    or the --retriever body's own sort."""
    from semrank.errors import InvalidInputError

    if flags and body_sort is not None:
        raise InvalidInputError(
            "--sort and the search body's sort both say how to order hits; give one of them"
        )
    keys: list[Any] = []
    for flag in flags or []:
        field, _, order = flag.rpartition(":")
        keys.append({field: order} if field and order in ("asc", "desc") else flag)
    found: dict[str, Any] = {"sort": keys or body_sort}
    if after is not None:
        found["search_after"] = _json_flag(
            "--search-after", after, "the last hit's sort values, e.g. '[1709280000000, \"d9\"]'"
        )
    return found


def _check_model_exists(model: str) -> None:
    """--model resolved (a typo is an error naming the known models), unless it names the
    default (Elasticsearch's default ids are the default)."""
    from semrank.models import resolve
    from semrank.pipeline._context import default_model_name

    named = default_model_name(model)
    if named is not None:
        resolve(named)


def _run_search(
    index: str, query: str | None, asked: dict[str, Any], *, home: Path | None, store: str | None
) -> tuple[Any, Sequence[str]]:
    """The search's results, and the text fields a hit's snippet shows first; an embedded
    index that is still being filled is said on stderr."""
    from semrank.pipeline import search
    from semrank.store._targets import is_multi_target

    several = is_multi_target(index)
    if store and store != "local" and not several:
        from semrank.store import open_index

        with open_index(index, store=store) as opened:
            return search(opened, query, **asked), opened.settings.text_fields
    results = search(index, query, home=home, store=store, **asked)
    if not store or store == "local":
        for name in [index] if not several else sorted({str(h.index) for h in results}):
            _warn_if_incomplete(name, home)
    return results, ()  # the embedded store keeps the fields in the order written


def _show_results(results: Any, title: str, text_fields: Sequence[str], as_json: bool) -> None:
    """Warnings on stderr, then the results on stdout: JSON, or a table and the aggregations."""
    for warning in results.warnings:  # stderr: stdout stays the results
        typer.echo(f"warning: {warning}", err=True)
    if as_json:
        typer.echo(json_for_stdout(results.to_dict()))
        return
    print_results(results, title, text_fields)
    if results.aggregations is not None:
        print_aggregations(results.aggregations, results.matched)


def print_aggregations(aggregations: dict[str, Any], matched: int | None) -> None:
    """One line an aggregation: buckets as ``key (documents)``, a metric as its value, a
    ``stats`` as its values by name."""
    typer.echo(f"aggregations over {matched} matching documents:")
    for name, answer in aggregations.items():
        if "buckets" in answer:
            said = _buckets_said(answer)
        elif "value" in answer:
            said = _metric_said(answer["value"])
        else:  # stats: several metrics in one answer
            said = ", ".join(f"{key} {_metric_said(value)}" for key, value in answer.items())
        typer.echo(for_terminal(f"  {name}: {said}"))


def _buckets_said(answer: dict[str, Any]) -> str:
    """A bucket aggregation's buckets as ``key (documents)``."""
    from semrank.retrieve._aggs import buckets_of

    shown = [
        f"{bucket.get('key_as_string', bucket['key'])} ({bucket['doc_count']})"
        for bucket in buckets_of(answer)
    ]
    other = answer.get("sum_other_doc_count", 0)
    shown += [f"other ({other})"] if other else []
    return ", ".join(shown) or "(no buckets)"


def _metric_said(value: Any) -> str:
    return "-" if value is None else f"{value:g}"


def aggs_option(text: str) -> Any:
    """``--aggs``' JSON, parsed (errors name the flag)."""
    from semrank.retrieve._aggs import parse_aggs

    example = 'aggregations such as \'{"sources": {"terms": {"field": "source"}}}\''
    return parse_aggs(_json_flag("--aggs", text, example), "--aggs")


DEFAULT_TOP_N = 10


def _highlight_of(flags: list[str] | None, body: Any) -> Any:
    """--highlight's fields, or the highlight of the _search body given as --retriever."""
    if flags and body is not None:
        from semrank.errors import InvalidInputError

        raise InvalidInputError(
            "--highlight and the search body's highlight both say what to highlight; give one "
            "of them"
        )
    return flags or body


def with_rerankers(tree: Any, *, backend: str | None, feedback: bool) -> Any:
    """The tree's re-ranking models loaded with ``backend`` and ``feedback`` (one load per
    model), as --backend and --no-feedback ask; the tree as it is when neither is asked for.
    `semrank search` and `semrank eval` (a retriever file's re-rankers) both load them here."""
    if backend is None and feedback:
        return tree
    from semrank import Reranker
    from semrank.pipeline import bind_rerankers

    loaded: dict[str | None, Reranker] = {}

    def load(name: str | None) -> Reranker:
        if name not in loaded:
            loaded[name] = Reranker(name, backend=backend, feedback=feedback)
        return loaded[name]

    return bind_rerankers(tree, load)


def check_reranking_flags_used(
    backend: str | None, feedback: bool, *, reranks: bool, nothing: str
) -> None:
    """--backend and --no-feedback where nothing is re-ranked would do nothing, and are refused
    (as --model without --rerank); ``nothing`` says that nothing is, and how to re-rank."""
    if reranks or (backend is None and feedback):
        return
    from semrank.errors import InvalidInputError

    flag = (
        f"--backend {backend!r} sets how the re-ranking models run"
        if backend is not None
        else "--no-feedback switches off the re-ranker's pseudo-relevance feedback"
    )
    raise InvalidInputError(f"{flag}, and {nothing}")


def _warn_if_incomplete(name: str, home: Path | None) -> None:
    """A search of an index whose ingest has not finished answers from the documents it
    holds; one line on stderr says so (stdout stays the results)."""
    from semrank.errors import SemrankError
    from semrank.pipeline import open_cached

    try:
        # the handle the search just used
        note = open_cached(name, home).unfinished_note(where=_where_flags(home, None))
    except SemrankError:
        return  # the search read it; what went wrong here is no concern of the results
    if note:
        typer.echo(f"warning: index {name!r} is incomplete: {note}", err=True)


def _shorthand(retriever: str | None, stage_flags: bool) -> Any:
    """``--retriever``'s shorthand (bm25, dense, hybrid, linear, +rerank), or None for a file
    or inline JSON. A file of that name wins: it was read as a file before shorthands were."""
    from semrank.errors import InvalidInputError
    from semrank.pipeline import parse_shorthand

    if retriever is None or retriever.lstrip().startswith("{") or _names_a_file(retriever):
        return None
    shorthand = parse_shorthand(retriever)
    if shorthand is not None and stage_flags:
        raise InvalidInputError(
            f"--retriever {retriever} replaces --bm25/--dense/--hybrid/--rerank; give one or "
            "the other"
        )
    return shorthand


def _names_a_file(text: str) -> bool:
    """Whether ``text`` is the path of a file: a text longer than a file name may be (inline
    JSON of 256 bytes and more) is not, where the check itself raised ENAMETOOLONG."""
    try:
        return Path(text).expanduser().is_file()
    except OSError:
        return False


def filter_option(text: str) -> Any:
    """``--filter``'s JSON, parsed (errors name the flag)."""
    from semrank.retrieve import parse_filter

    example = 'a filter such as \'{"term": {"lang": "en"}}\''
    return parse_filter(_json_flag("--filter", text, example), "--filter")


def _json_flag(flag: str, text: str, example: str) -> Any:
    """A flag's inline JSON, decoded; an error names the flag and ``example``, what to give."""
    from semrank._checks import UnreadableJSONError, loads_json
    from semrank.errors import InvalidInputError

    try:
        return loads_json(text)
    except UnreadableJSONError as exc:
        raise InvalidInputError(f"{flag} JSON {exc.msg}") from None
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"{flag} is not valid JSON ({exc.msg}): {text!r:.60}; give {example}"
        ) from None


def piped_retriever(retriever: str, usage: str) -> str:
    """``--retriever`` as given; for - (stdin) and a pipe (`<(jq ...)`, /dev/stdin) the JSON
    they hold, as inline JSON: both were refused as "no such file", and a pipe can be read only
    once where a tree is read more than once (checked, then searched). ``usage``: the command
    that reads it, as the example for a closed stdin shows it."""
    from semrank._files import stdin_bytes
    from semrank.errors import InvalidInputError

    if retriever == "-":
        example = f"jq .retriever search.json | semrank {usage} --retriever -"
        data = stdin_bytes("--retriever", "the retriever JSON", example)
    elif _names_a_pipe(retriever):
        data = Path(retriever).expanduser().read_bytes()
    else:
        return retriever
    try:
        text = data.decode("utf-8-sig")  # utf-8-sig: a Windows editor's byte order mark
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"--retriever {retriever}: not valid UTF-8 (byte {exc.start}); give UTF-8 JSON"
        ) from None
    if not text.lstrip().startswith("{"):
        raise InvalidInputError(
            f"--retriever {retriever}: expected retriever JSON ({{...}}), got {text.strip()!r:.60}"
        )
    return text


def _names_a_pipe(text: str) -> bool:
    if text.lstrip().startswith("{"):  # inline JSON, which may be longer than a file name
        return False
    try:
        return Path(text).expanduser().is_fifo()
    except OSError:
        return False


def _tree_from(retriever: str, offset: int) -> Any:
    """The tree of a JSON file or inline JSON, and its body's ``_source`` (false: hits without
    documents), its page starting ``offset`` hits in where the body gives no ``from``; anything
    else is named with what it may be."""
    from semrank.errors import InvalidInputError
    from semrank.pipeline import parse_search_body

    if not retriever.lstrip().startswith("{") and not _names_a_file(retriever):
        raise InvalidInputError(
            f"--retriever {retriever!r}: no such file, and not a shorthand (bm25, dense, hybrid "
            "or linear, with +rerank to re-rank) or inline JSON ({...})"
        )
    return parse_search_body(retriever, offset=offset)


def _check_search_flags(
    *,
    stages: tuple[bool, ...],
    rerank: bool,
    model: str | None,
    min_score: float | None,
    window: int | None,
    shorthand: Any = None,
) -> None:
    """Flags that contradict each other, or that would be silently ignored, are refused."""
    from semrank.errors import InvalidInputError

    if sum(stages) > 1:
        raise InvalidInputError("choose one of --bm25, --dense, --hybrid")
    rerank = rerank or bool(shorthand and shorthand.rerank)
    if min_score is not None and not rerank:
        raise InvalidInputError("--min-score filters re-ranked scores; add --rerank")
    if model is not None and not rerank:
        raise InvalidInputError("--model names the re-ranking model; add --rerank")
    if window is not None and not rerank:
        raise InvalidInputError("--window sets how many hits --rerank reads; add --rerank")


# Where a --retriever file holds what each search flag would set.
_TREE_KEYS = {
    "--model": "inference_id",
    "--min-score": "min_score",
    "--window": "rank_window_size",
    "--field": "field",
}


def _check_tree_flags(*, stages_or_rerank: bool, given: dict[str, object]) -> None:
    """A --retriever file is the whole search: flags that build a tree would be ignored."""
    from semrank.errors import InvalidInputError

    if stages_or_rerank:
        raise InvalidInputError("--retriever replaces --bm25/--dense/--hybrid/--rerank; use one")
    for flag, value in given.items():
        if value is not None:
            raise InvalidInputError(
                f"{flag} {value!r} with --retriever: the file holds the whole search, so the "
                f"flag would be ignored; set {_TREE_KEYS[flag]!r} in the file's retriever instead"
            )


def _check_window_and_field(
    *, rerank: bool, window: int, top_n: int, dense_only: bool, field: str
) -> None:
    """A window below --top-n would quietly return fewer hits; --field on a dense search
    without re-ranking would be read by nothing."""
    from semrank.errors import InvalidInputError

    if rerank and window < top_n:
        raise InvalidInputError(
            f"--window {window} is below --top-n {top_n}: the re-ranker returns at most the "
            f"{window} hits it reads; raise --window to at least {top_n} or lower --top-n"
        )
    if dense_only and field != "*":
        raise InvalidInputError(
            f"--field {field!r} picks the BM25 field and the re-ranked field, and --dense alone "
            "uses neither; drop --field, or add --rerank to re-rank on it"
        )


def register(app: typer.Typer) -> None:
    """Add `semrank index ...` and `semrank search`."""
    app.add_typer(index_app, name="index")
    app.command("search")(search_command)
