"""``LocalStore``: an index in one directory (SQLite documents + derived BM25 / vector files)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from semrank._files import load_npy
from semrank._process import process_start_time
from semrank.errors import (
    DataFormatError,
    IndexNotFoundError,
    IndexVersionError,
    InvalidInputError,
    StorageError,
)
from semrank.retrieve import (
    BM25Index,
    DocTokens,
    ExactVectorIndex,
    Filter,
    FilterSpec,
    Hits,
    HNSWVectorIndex,
    TextEmbedder,
    VectorIndex,
    as_filter,
    matches,
    optional_filter,
    resolved,
    top_k,
    unit_query_vector,
)
from semrank.retrieve._aggs import ValueCounts, ValueKey, counted, value_key
from semrank.retrieve._dense import SERIAL_GRAPH
from semrank.retrieve._filter import Bool, Exists, Scalar
from semrank.retrieve._filter_rows import FieldTable, in_sorted
from semrank.retrieve._held import HeldValues

if TYPE_CHECKING:
    from semrank.retrieve._sort_columns import SortTable
from semrank.store import _snapshots as snap
from semrank.store._base import (
    ALL_TEXT_FIELDS,
    STDIN_SOURCE,
    BatchCounts,
    DocumentVersion,
    GivenVectorStore,
    IndexInfo,
    IndexSettings,
    PreparedArrays,
    ProgressCallback,
    UnchangedDeletes,
    VersionedChange,
    VersionedCounts,
    VersionedDocument,
    check_batch_size,
    check_fields_search,
    check_k,
    check_search,
    given_vectors,
    id_list,
    index_dir_size,
    ingest_running,
    is_stdin_source,
    unchanged_split,
    unit_rows,
    unpicklable,
    written_versions,
)
from semrank.store._corpus import Document
from semrank.store._sqlite import DB_NAME, SCHEMA_VERSION, DocumentDB, create_database_file

_log = logging.getLogger(__name__)

VECTORS = "vectors"
_INGESTS = "unfinished_ingests"  # meta key: {file: mark} of ingests begun and not ended
# A graph updated in place is built again once the rows removed from it since it was built
# pass this share of its live rows.
REBUILD_REMOVED_SHARE = 0.25
# A BM25 build slower than this is logged (at most once per index every SLOW_BUILD_EVERY_S): each
# write to an embedded index builds it again, and its searches wait meanwhile.
SLOW_BUILD_S = 5.0
SLOW_BUILD_EVERY_S = 600.0
# HNSW graph build rate, one thread (retrieve._dense.ADD_THREADS): 87 s for 30,000 vectors of
# 384 dimensions on the 2-core Xeon (RESULTS.md, session 19).
GRAPH_VECTORS_PER_S = 345


def _file_identity(source: Path) -> list[int] | None:
    """(size, modification time, inode): what tells the file at a path from another one."""
    try:
        facts = source.stat()
    except OSError:
        return None
    return [facts.st_size, facts.st_mtime_ns, facts.st_ino]


def _another_file(earlier: dict[str, Any], mark: dict[str, Any]) -> bool:
    """Whether an earlier mark was made for another file at the same path (marks made before
    files were told apart count as the same file, as they did then)."""
    return earlier.get("file") is not None and earlier.get("file") != mark["file"]


@dataclass(frozen=True)
class _Loaded:
    """A derived index in memory, valid for one generation of the documents."""

    generation: int
    ids: np.ndarray  # position -> document id
    index: Any  # BM25Index | VectorIndex
    # An HNSW graph is keyed by its rows' stable ``pk`` (so that a write updates the graph in
    # place rather than building it again): ``keys`` holds them, ascending, in ``ids``' order.
    # None: hits are positions.
    keys: np.ndarray | None = None

    def doc_ids(self, hit_ids: np.ndarray) -> np.ndarray:
        if self.keys is None:
            return self.ids[hit_ids]
        return self.ids[np.searchsorted(self.keys, hit_ids)]


def _doc_json(fields: dict[str, Any]) -> str:
    try:
        return json.dumps(fields, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise DataFormatError(f"document fields are not JSON-serialisable: {exc}") from exc


def _versioned(stored: tuple[str, int, int]) -> VersionedDocument:
    """A ``stored_versions`` row as the document it is."""
    doc, version, seq_no = stored
    return VersionedDocument(
        fields=json.loads(doc), version=DocumentVersion(version=version, seq_no=seq_no)
    )


def _unchanged(stored: tuple[str, int, int] | None, doc: str, version: int | None) -> bool:
    """Whether a row of ``doc`` (JSON) is stored as it is, in ``version`` (None: any; the same
    fields written in another version is a write)."""
    return stored is not None and stored[0] == doc and version in (None, stored[1])


def _db_identity(path: Path) -> int:
    """The database file's inode: a dropped-and-recreated index gets a new one (-1: gone)."""
    try:
        return (path / DB_NAME).stat().st_ino
    except OSError:
        return -1


PROBE_KEY = "embedding_probe"  # the meta key of the index's embedding probe (see Store)


def _noting_rows(rows: Iterable[tuple[Any, ...]], *noted: list[Any]) -> Iterator[str]:
    """The last column of each of ``rows``, appending its other columns to ``noted`` (one list
    each) as it goes: a row's key and id are kept while its text is analysed and let go."""
    for *columns, text in rows:
        for kept, value in zip(noted, columns, strict=True):
            kept.append(value)
        yield text


def _parsed(rows: Iterable[tuple[int, str]]) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(pk, document)`` of rows ``(pk, doc JSON)``, one parsed at a time."""
    return ((pk, json.loads(doc)) for pk, doc in rows)


# Filters' field tables (see LocalStore._field_table): the documents are read in pages of
# at most _FILTER_PAGE documents and about _FILTER_PAGE_BYTES; while writes land meanwhile,
# again (the rows written since), at most _FILTER_READS times, the last in one read
# transaction.
_FILTER_PAGE = 1000
_FILTER_PAGE_BYTES = 1 << 19
_FILTER_READS = 3
_FieldState = tuple[tuple[int, str], FieldTable]  # (generation, commit) -> its table
_NO_TABLE = FieldTable([])


def _ids_array(ids: list[str]) -> np.ndarray:
    array = np.empty(len(ids), dtype=object)
    array[:] = ids
    return array


class LocalStore(GivenVectorStore):
    """A persistent index in a directory. Safe against crashes; one writer at a time."""

    backend = "local"
    keeps_prepared = True

    def __init__(self, path: Path, *, embedder: TextEmbedder | None = None) -> None:
        if not (path / DB_NAME).is_file():
            raise IndexNotFoundError(f"no index at {path} (missing {DB_NAME})")
        self.path = path
        self.db: DocumentDB = DocumentDB(path / DB_NAME)
        self._identity = _db_identity(path)
        self._closed = False
        stored = self.db.get_meta("settings")
        if stored is None:
            self.db.close()
            raise IndexNotFoundError(f"{path} holds no index settings; drop and recreate it")
        try:
            self.settings: IndexSettings = IndexSettings.from_dict(stored)
        except IndexVersionError:
            self.db.close()
            raise
        self._embedder = embedder
        self._cache: dict[str, _Loaded] = {}
        self._prepared_cache: dict[str, tuple[str, PreparedArrays]] = {}  # kind -> (dir, table)
        self._build_lock = threading.Lock()
        # Filters: the values of the fields they read, for one state of the documents (its
        # generation and commit), and where each derived index's positions are in that table.
        self._filter_lock = threading.Lock()  # held to look or publish, never to read
        self._filter_build_lock = threading.Lock()  # held to read documents into a table
        self._filter_table: _FieldState | None = None
        self._filter_rows: dict[str, tuple[int, list[str], np.ndarray]] = {}
        self._slow_build_noted: float | None = None  # time.monotonic() of the last warning
        snap.clean_temporaries(path)

    @classmethod
    def initialize(
        cls, path: Path, settings: IndexSettings, *, embedder: TextEmbedder | None = None
    ) -> LocalStore:
        """Create the index files in (new, empty) directory ``path``."""
        path.mkdir(parents=True, exist_ok=True)
        create_database_file(path / DB_NAME)
        db = DocumentDB(path / DB_NAME)
        with db.transaction() as conn:
            db.set_meta(conn, "settings", settings.to_dict())
            db.set_meta(conn, "schema_version", SCHEMA_VERSION)
            db.set_meta(conn, "generation", 0)
        db.close()
        (path / "index.json").write_text(json.dumps(settings.to_dict(), indent=2), "utf-8")
        return cls(path, embedder=embedder)

    def close(self) -> None:
        self._closed = True
        self._cache.clear()
        self._filter_table = None
        self._filter_rows.clear()
        self._prepared_cache.clear()  # mapped files: a drop could not free (or rename) them
        self.db.close()

    def _require_live(self) -> None:
        """Fail on a closed handle, or one whose index was dropped (or dropped and recreated)."""
        if self._closed:
            raise InvalidInputError(
                f"index {self.name!r} is closed; open it again with open_index({self.name!r})"
            )
        if self.was_dropped():
            raise IndexNotFoundError(
                f"index {self.name!r} was dropped since it was opened (its files at {self.path} "
                f"are gone or belong to a new index); run the command again (Python: open it "
                f"again with open_index({self.name!r})); what it had not written is not in the "
                "index",
                client_message=f"index {self.name!r} was dropped by another request while this "
                "one used it; retry (a new index of that name is used if there is one), or "
                "create it again with POST /v1/indexes",
            )

    def was_dropped(self) -> bool:
        """Whether its index was dropped (or dropped and created again) since it was opened."""
        return _db_identity(self.path) != self._identity

    def __repr__(self) -> str:
        return f"LocalStore({self.name!r}, path={str(self.path)!r})"

    def __getstate__(self) -> None:
        home = str(self.path.parent)
        raise unpicklable(self, f"open_index({self.name!r}, home={home!r})")

    # --- writing (``upsert`` is the base class's: one transaction per batch) ----------------
    def _write_batch_given(
        self,
        batch: list[Document],
        progress: ProgressCallback | None,
        vectors: Mapping[str, np.ndarray],
    ) -> BatchCounts:
        self._require_live()
        latest = {doc.id: doc for doc in batch}  # a repeated id in one batch: the last wins
        rows = {
            doc_id: (_doc_json(d.fields), self.text_of(d.fields)) for doc_id, d in latest.items()
        }
        stored = self.db.stored_docs(list(rows))
        # Unchanged documents are skipped, so re-running an interrupted ingest is cheap.
        changed = [doc_id for doc_id, (doc, _) in rows.items() if stored.get(doc_id) != doc]
        blobs, embedded, given = self._blobs_of(changed, [rows[i][1] for i in changed], vectors)
        if changed:
            new_fields = {key for d in latest.values() for key in d.fields}
            with self.db.transaction() as conn:
                generation = self.db.bump_generation(conn)
                self.db.write_rows(
                    conn,
                    [
                        (i, rows[i][0], rows[i][1], blob)
                        for i, blob in zip(changed, blobs, strict=True)
                    ],
                    generation,
                )
                self._record_fields(conn, new_fields)
        if progress is not None:
            progress(len(batch))
        return BatchCounts(len(latest), len(changed), embedded, given)

    def _blobs_of(
        self, ids: list[str], texts: list[str], vectors: Mapping[str, np.ndarray]
    ) -> tuple[list[bytes | None], int, int]:
        """The vector blobs of ``ids`` (whose ``texts`` are these): ``vectors``' where given,
        else embedded; with how many were embedded, and how many given."""
        if not self.has_vectors or not ids:
            return [None] * len(ids), 0, 0
        given = [n for n, doc_id in enumerate(ids) if doc_id in vectors]
        missing = [n for n, doc_id in enumerate(ids) if doc_id not in vectors]
        blobs: list[bytes | None] = [None] * len(ids)
        if missing:
            made = self._embed_blobs([texts[n] for n in missing])
            for n, blob in zip(missing, made, strict=True):
                blobs[n] = blob
        if given:
            matrix = given_vectors([ids[n] for n in given], vectors)
            self._check_dim(matrix.shape[1])
            for n, row in zip(given, matrix, strict=True):
                blobs[n] = row.tobytes()
        return blobs, len(missing), len(given)

    def stored_vectors(self, ids: Sequence[str]) -> dict[str, tuple[str, np.ndarray]]:
        wanted = id_list(ids)
        self._require_live()
        rows = self.db.embedded_rows(wanted)
        return {
            i: (text, np.frombuffer(blob, dtype=np.float32)) for i, (text, blob) in rows.items()
        }

    def update_versioned(self, ids: Sequence[str], change: VersionedChange) -> VersionedCounts:
        """Read, changed and written in one write transaction (``BEGIN IMMEDIATE``: another
        process's writes wait for its commit), conditions checked by ``change`` inside it. The
        texts are embedded before it, as a first read's change has them: a text another write
        changed meanwhile is stored without its vector, and embedded by the refresh after (as
        a row a process without the model wrote), so no lock is held while a model runs."""
        self._require_live()
        wanted = list(dict.fromkeys(id_list(ids)))
        seen = set(self.fields_seen)
        first = self._changes(dict(zip(wanted, self.get_versioned(wanted), strict=True)), change)
        texts = list(dict.fromkeys(self.text_of(d.fields) for d in first.documents))
        blobs = dict(zip(texts, self._embed_blobs(texts), strict=True)) if texts else {}
        with self.db.transaction() as conn:
            stored = self.db.stored_versions(wanted, conn)
            found = {i: _versioned(stored[i]) if i in stored else None for i in wanted}
            changes = self._changes(found, change)
            rows = [(d.id, _doc_json(d.fields), self.text_of(d.fields)) for d in changes.documents]
            given = changes.versions
            rows = [r for r in rows if not _unchanged(stored.get(r[0]), r[1], given.get(r[0]))]
            versions = written_versions(
                found, changes, [row[0] for row in rows], self.db.take_seq_nos(conn, 0)
            )
            if rows or changes.gone:
                generation = self.db.bump_generation(conn)
                written = [(*row, blobs.get(row[2])) for row in rows]
                self.db.write_rows(
                    conn, written, generation, [versions[row[0]].version for row in rows]
                )
                self.db.delete_ids(conn, changes.gone)
                self._record_fields(conn, {key for d in changes.documents for key in d.fields})
        self.refresh()
        counts = self._update_counts(changes, len(rows), seen)
        return VersionedCounts(counts=counts, versions=versions, deleted=len(changes.gone))

    def _record_fields(self, conn: Any, names: set[str]) -> None:
        seen = set(self.db.get_meta("fields_seen", [], conn))
        if not names <= seen:
            self.db.set_meta(conn, "fields_seen", sorted(seen | names))

    def _embed_blobs(self, texts: list[str]) -> list[bytes | None]:
        if not self.has_vectors:
            return [None] * len(texts)
        vectors = np.asarray(self.embedder.embed(texts), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise DataFormatError(f"embedder returned shape {vectors.shape} for {len(texts)} texts")
        self._check_dim(vectors.shape[1])
        vectors = unit_rows(vectors)
        self._keep_embedding_probe()
        return [row.tobytes() for row in vectors]

    def _stored_probe(self) -> list[float] | None:
        stored: list[float] | None = self.db.get_meta(PROBE_KEY)
        return stored

    def _store_probe(self, probe: list[float]) -> None:
        with self.db.transaction() as conn:
            self.db.set_meta(conn, PROBE_KEY, probe)

    def _check_dim(self, dim: int) -> None:
        known = self.db.get_meta("embedding_dim")
        if known is None:
            with self.db.transaction() as conn:
                self.db.set_meta(conn, "embedding_dim", dim)
        elif int(known) != dim:
            raise DataFormatError(
                f"embedder returns {dim}-d vectors but index {self.name!r} stores {known}-d ones"
            )

    def delete(self, ids: Iterable[str]) -> int:
        unique = list(dict.fromkeys(id_list(ids)))
        self._require_live()
        if not unique:
            return 0
        with self.db.transaction() as conn:
            removed = self.db.delete_ids(conn, unique)
            if removed:
                self.db.bump_generation(conn)
        return removed

    def delete_unchanged(self, seen: Mapping[str, int]) -> UnchangedDeletes:
        """Read and deleted in one write transaction (``BEGIN IMMEDIATE``), as ``delete``:
        no refresh (the next search rebuilds once, not once per batch of a delete)."""
        self._require_live()
        wanted = list(seen)
        with self.db.transaction() as conn:
            stored = self.db.stored_versions(wanted, conn)
            now = {i: DocumentVersion(version=row[1], seq_no=row[2]) for i, row in stored.items()}
            gone, conflicts = unchanged_split(now, seen)
            removed = self.db.delete_ids(conn, gone)
            if removed:
                self.db.bump_generation(conn)
        return UnchangedDeletes(deleted=removed, conflicts=conflicts)

    def _delete_matching(self, flt: Filter) -> int:
        self._require_live()
        # Found and deleted under the write lock (BEGIN IMMEDIATE): no write lands in between.
        with self.db.transaction() as conn:
            removed = self.db.delete_ids(conn, self._passing(conn, flt))
            if removed:
                self.db.bump_generation(conn)
        return removed

    def ids_matching(self, filter: FilterSpec) -> list[str]:
        flt = as_filter(filter, "filter")
        self._require_live()
        with self.db.snapshot() as conn:
            return self._passing(conn, flt)

    def count_matching(self, filter: FilterSpec) -> int:
        flt = as_filter(filter, "filter")
        self._require_live()
        # The searches' table of the fields' values (a row per document): no document parsed
        # once it is read, and a count's read serves the filtered searches after it.
        return int(np.count_nonzero(self._field_table(flt).mask(flt)))

    def value_counts(self, field: str, within: Filter) -> ValueCounts:
        self._require_live()
        # The filter's table with the field read too: a should clause with no minimum to
        # meet names a field to read and passes every row.
        reading = Bool(must=(within,), should=(Exists(field=field),))
        table = self._field_table(reading)
        return counted(*table.value_counts(field, table.mask(within)))

    def value_sets(self, field: str, within: Filter) -> list[tuple[ValueKey, ...]]:
        self._require_live()
        reading = Bool(must=(within,), should=(Exists(field=field),))  # as value_counts reads
        table = self._field_table(reading)
        return [tuple(held) for held in table.value_sets(field, table.mask(within), value_key)]

    def held_values(self, fields: Sequence[str], within: Filter) -> HeldValues:
        table, passing = self._rows_passing(within, fields)
        return table.held_values(fields, passing)

    def sort_values(
        self, filter: FilterSpec, fields: Sequence[str]
    ) -> list[tuple[str, list[list[Scalar]]]]:
        table, passing = self._rows_passing(filter, fields)
        held = [table.row_values(name, passing) for name in fields]
        return [
            (table.ids[row], [values.get(row, []) for values in held])
            for row in np.flatnonzero(passing).tolist()
        ]

    def sort_columns(self, filter: FilterSpec, fields: Sequence[str]) -> SortTable:
        from semrank.retrieve._sort_columns import SortTable  # imports the store's

        table, passing = self._rows_passing(filter, fields)
        ids = [table.ids[row] for row in np.flatnonzero(passing).tolist()]
        columns = {name: table.sort_column(name, passing) for name in fields}
        return SortTable(ids, np.ones(len(ids)), columns)

    def _rows_passing(
        self, filter: FilterSpec, fields: Sequence[str]
    ) -> tuple[FieldTable, np.ndarray]:
        """The filter table with ``fields`` read too (as ``value_counts`` reads its own), and
        the rows passing ``filter``: what sorts and sub-aggregations read."""
        flt = as_filter(filter, "filter")
        self._require_live()
        reading = Bool(must=(flt,), should=tuple(Exists(field=name) for name in fields))
        table = self._field_table(reading)
        return table, table.mask(flt)

    def first_matching(self, filter: FilterSpec, k: int) -> list[str]:
        flt = as_filter(filter, "filter")
        self._require_live()
        table = self._field_table(flt)  # rows in pk order: the order iter_documents reads
        return [table.ids[row] for row in np.flatnonzero(table.mask(flt))[:k]]

    def matching_id_pages(self, filter: FilterSpec, page_size: int = 10_000) -> Iterator[list[str]]:
        check_batch_size(page_size)  # now, not at the first page
        flt = as_filter(filter, "filter")
        self._require_live()
        table = self._field_table(flt)  # rows in pk order, as first_matching reads them
        rows = np.flatnonzero(table.mask(flt))
        return (
            [table.ids[row] for row in rows[start : start + page_size]]
            for start in range(0, len(rows), page_size)
        )

    def _passing(self, conn: Any, flt: Filter) -> list[str]:
        """The ids of the rows passing ``flt`` (in ``pk`` order), each document read once."""
        rows = self.db.iter_rows(conn, "id, doc")
        flt = resolved(flt)  # one present for every row
        return [doc_id for doc_id, doc in rows if matches(flt, doc_id, json.loads(doc))]

    # --- unfinished ingests: marks in the meta table (see ``Store.begin_ingest``) ----------
    def begin_ingest(self, source: Path, *, id_field: str | None) -> dict[str, Any] | None:
        pid = os.getpid()
        mark = {
            "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),  # hosts may differ
            "pid": pid,
            "process_started": process_start_time(pid),
            "host": socket.gethostname(),
            "id_field": id_field,
            "file": _file_identity(source),
        }
        replaced: list[dict[str, Any]] = []

        def change(marks: dict[str, Any]) -> dict[str, Any]:
            earlier = marks.get(str(source))
            if earlier is not None and _another_file(earlier, mark) and not ingest_running(earlier):
                replaced.append(earlier)
            return {**marks, str(source): mark}

        self._change_ingests(change)
        return replaced[0] if replaced else None

    def end_ingest(self, source: Path) -> None:
        ended = {str(source)}
        if is_stdin_source(str(source)):  # a mark "-" alone: every stdin ingest ended it then
            ended.add(STDIN_SOURCE)
        self._change_ingests(lambda marks: {f: m for f, m in marks.items() if f not in ended})

    def _change_ingests(self, change: Any) -> None:
        self._require_live()
        with self.db.transaction() as conn:  # read and write in one: concurrent ingests
            self.db.set_meta(conn, _INGESTS, change(self.db.get_meta(_INGESTS, {}, conn)))

    def unfinished_ingests(self) -> dict[str, dict[str, Any]]:
        self._require_live()
        marks = self.db.get_meta(_INGESTS, {})
        return {f: {**m, "running": ingest_running(m)} for f, m in marks.items()}

    # --- reading ---------------------------------------------------------------------------
    def get(self, ids: Sequence[str]) -> list[dict[str, Any] | None]:
        wanted = id_list(ids)
        self._require_live()
        found = self.db.docs_by_id(wanted)
        return [found.get(i) for i in wanted]

    def get_versioned(self, ids: Sequence[str]) -> list[VersionedDocument | None]:
        wanted = id_list(ids)
        self._require_live()
        stored = self.db.stored_versions(wanted)
        return [_versioned(stored[i]) if i in stored else None for i in wanted]

    def iter_documents(
        self, *, batch_size: int = 1000, filter: FilterSpec | None = None
    ) -> Iterator[Document]:
        check_batch_size(batch_size)  # now, not at the first document
        flt = optional_filter(filter)
        # Resolved once: one present for the export, not a date bound parsed per document.
        return self._documents_in_pages(batch_size, None if flt is None else resolved(flt))

    def _documents_in_pages(self, batch_size: int, flt: Filter | None) -> Iterator[Document]:
        """Pages by ``pk`` (the order documents were first written; an upsert keeps a row's
        pk): each page a short read, so no lock or read transaction is held between them.
        ``flt`` is tested on each document as read (the reference, as ``ids_matching`` does),
        not by the search's field table: every document is parsed here anyway, and the table
        is of one state of the index, where a page may be of a later one (and its first read
        would read every document an extra time, to be kept for searches an export never
        makes)."""
        after: int | None = None
        while True:
            self._require_live()
            rows = self.db.documents_after(after, batch_size)
            for _pk, doc_id, doc in rows:
                fields = json.loads(doc)
                if flt is None or matches(flt, doc_id, fields):
                    yield Document(doc_id, fields)
            if len(rows) < batch_size:
                return
            after = rows[-1][0]

    def written_since(self, ids: Sequence[str], generation: int) -> set[str]:
        self._require_live()
        return self.db.ids_written_since(id_list(ids), generation)

    def __len__(self) -> int:
        self._require_live()
        return self.db.count()

    @property
    def generation(self) -> int:
        return self.db.generation()

    @property
    def fields_seen(self) -> tuple[str, ...]:
        return tuple(self.db.get_meta("fields_seen", []))

    def info(self) -> IndexInfo:
        count, dim = len(self), self.db.get_meta("embedding_dim")
        derived: dict[str, int | None] = {}
        with self.db.snapshot() as conn:
            for kind in [snap.field_key(ALL_TEXT_FIELDS), VECTORS]:
                # The one searches build on: not a newer one a restored backup left behind.
                found = self._saved_in_history(conn, kind)
                derived[kind] = None if found is None else found[0]
        for kind, (generation, _) in snap.latest_by_kind(self.path, snap.PREPARED_PREFIX).items():
            derived[kind] = generation
        return IndexInfo(
            name=self.name,
            backend=self.backend,
            location=str(self.path),
            documents=count,
            generation=self.generation,
            settings=self.settings,
            embedding_dim=dim,
            vector_search=(
                None
                if not self.has_vectors
                else "hnsw"
                if count >= self.settings.ann_threshold
                else "exact"
            ),
            fields_seen=self.fields_seen,
            size_bytes=index_dir_size(self.path),
            derived=derived,
            unfinished_ingests=self.unfinished_ingests(),
        )

    # --- embeddings (``embedder`` / ``embed_queries`` are the base class's) ---------------
    def _catch_up_embeddings(self, batch_size: int = 256) -> None:
        """Embed rows stored without a vector (e.g. written by a process without the model)."""
        while rows := self.db.missing_embeddings(batch_size):
            blobs = self._embed_blobs([text for _, text in rows])
            vectors = np.stack([np.frombuffer(b or b"", dtype=np.float32) for b in blobs])
            with self.db.transaction() as conn:
                generation = self.db.bump_generation(conn)
                self.db.set_embeddings(conn, rows, vectors, generation)

    # --- prepared re-ranking tables --------------------------------------------------------
    def document_ids(self) -> list[str]:
        self._require_live()
        with self.db.snapshot() as conn:
            return [str(row[0]) for row in self.db.iter_rows(conn, "id")]

    def save_prepared(self, name: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        self._require_live()
        kind = snap.prepared_key(name)
        previous = snap.latest(self.path, kind)
        # Its own counter, not the documents' generation: preparing twice must publish twice.
        number = 0 if previous is None else previous[0] + 1

        def write(tmp: Path) -> dict[str, Any]:
            for key, array in arrays.items():
                np.save(tmp / f"{key}.npy", array)
            return {
                "name": name,
                "arrays": sorted(arrays),
                "documents_generation": self.generation,
                **meta,
            }

        try:
            snap.publish(self.path, kind, number, write)
        except OSError as error:  # a full disk, a read-only folder, a file named derived
            raise StorageError(
                f"index {self.name!r}: its prepared windows could not be saved under "
                f"{self.path / snap.DERIVED} ({error}); check that the disk has space and that "
                "this user may write there, then prepare it again (searches embed the windows "
                "meanwhile)"
            ) from error

    def prepared(self) -> list[PreparedArrays]:
        self._require_live()
        tables = []
        for kind, (_, directory) in sorted(
            snap.latest_by_kind(self.path, snap.PREPARED_PREFIX).items()
        ):
            held = self._prepared_cache.get(kind)
            if held is None or held[0] != directory.name:
                try:
                    held = (directory.name, self._load_prepared(directory))
                except (OSError, ValueError, KeyError, TypeError):
                    # Unreadable (damaged, or pruned by a concurrent prepare): searches embed
                    # those windows as before, and preparing again replaces it.
                    continue
                self._prepared_cache[kind] = held
            tables.append(held[1])
        return tables

    def _load_prepared(self, directory: Path) -> PreparedArrays:
        meta = snap.read_meta(directory)
        # Names this folder's own files: one from a copied index's snapshot.json such as
        # "../../x" was read from outside it.
        if not all(isinstance(n, str) and n.isidentifier() for n in meta["arrays"]):
            raise ValueError(f"{directory}: snapshot.json names arrays that are not its own")
        arrays = {
            name: np.load(directory / f"{name}.npy", mmap_mode="r") for name in meta["arrays"]
        }
        # The creation time too: a dropped and recreated index starts its numbers again.
        version = f"{directory.name}@{meta.get('created')}"
        return PreparedArrays(name=str(meta["name"]), version=version, arrays=arrays, meta=meta)

    # --- derived indexes -------------------------------------------------------------------
    def refresh(self) -> None:
        """Rebuild every derived index whose generation is behind the documents."""
        self._bm25_for(ALL_TEXT_FIELDS)
        for field in list(self._cache):
            if field.startswith("bm25:") and field != f"bm25:{ALL_TEXT_FIELDS}":
                self._bm25_for(field.removeprefix("bm25:"))
        if self.has_vectors:
            self._vectors()

    def _current(self, key: str, kind: str, load: Any, build: Any) -> _Loaded:
        """The cached, on-disk, or freshly built derived index for the current generation."""
        self._require_live()
        with self._build_lock:
            generation, commit = self.db.state()
            cached = self._cache.get(key)
            if cached is not None and cached.generation == generation:
                return cached
            # The snapshot of exactly this generation: a newer one left by another history of
            # the database (a restored backup) must not hide it.
            directory = snap.at(self.path, kind, generation)
            loaded = None
            if directory is not None:
                loaded = self._load_saved(directory, generation, commit, load)
            if loaded is None:
                loaded = build()
            self._cache[key] = loaded
            return loaded

    def _load_saved(
        self, directory: Path, generation: int, commit: str, load: Any
    ) -> _Loaded | None:
        """A saved snapshot, or None where it must be built again: it was built from another
        history of the database (a restored backup written to again), or its files are damaged
        or were pruned by another writer meanwhile. The documents are the source of truth."""
        try:
            if snap.read_meta(directory).get("commit", "") == commit:
                return load(directory, generation)
        except (OSError, ValueError, KeyError, RuntimeError, EOFError):
            if not directory.is_dir():
                return None  # pruned by a writer that published a newer one: nothing to clear
        shutil.rmtree(directory, ignore_errors=True)  # so the rebuilt one can take its place
        return None

    def _publish(self, kind: str, generation: int, write: Any) -> None:
        """Save a snapshot for the next search; where the folder cannot be written (read-only
        copy, full disk) the index answers from memory this time instead of failing."""
        try:
            snap.publish(self.path, kind, generation, write)
        except OSError as error:
            _log.warning(
                "index %r: could not save its %s search files (%s); searching from memory",
                self.name,
                kind,
                error,
            )
            return
        self._prune_other_histories(kind, generation)

    def _prune_other_histories(self, kind: str, published: int) -> None:
        """Remove the snapshots a restored backup's lost history left newer than the one just
        published (else kept on disk until this history's numbers passed them). The history is
        read afresh, not from the build's snapshot: a write another process committed and saved
        since belongs to this history and is kept."""

        def state() -> tuple[int, dict[int, str]]:
            with self.db.snapshot() as conn:
                return self.db.generation(conn), self.db.commit_history(conn)

        with contextlib.suppress(OSError, StorageError):  # best effort, as pruning older ones is
            snap.prune_other_histories(self.path, kind, keep=published, state=state)

    def _bm25_for(self, field: str) -> _Loaded:
        self.check_field(field)
        kind = snap.field_key(field)
        return self._current(
            f"bm25:{field}", kind, self._load_bm25, lambda: self._build_bm25(field, kind)
        )

    def _bm25_as_saved(self) -> dict[str, Any]:
        """The BM25 settings as a snapshot's JSON holds them (tuples read back as lists)."""
        return dict(json.loads(json.dumps(self.settings.bm25.to_dict())))

    def _load_bm25(self, directory: Path, generation: int) -> _Loaded:
        meta = snap.read_meta(directory)
        if meta.get("bm25") != self._bm25_as_saved():
            # Saved by a semrank that analyses otherwise (an earlier one wrote to this index):
            # its terms are not what this one makes of a query.
            raise ValueError("BM25 files of another analysis: build them again")
        ids = json.loads((directory / "ids.json").read_text("utf-8"))
        index = BM25Index.load(directory, self.settings.bm25, len(ids))
        return _Loaded(int(meta["generation"]), _ids_array(ids), index)

    def _build_bm25(self, field: str, kind: str) -> _Loaded:
        started = time.monotonic()
        with self.db.snapshot() as conn:
            generation, commit = self.db.generation(conn), self.db.commit_token(conn)
            keys, ids, tokens = self._bm25_tokens(conn, field, kind)
        index = BM25Index.from_tokens(tokens, self.settings.bm25)
        self._note_slow_build(time.monotonic() - started, len(ids))

        def write(tmp: Path) -> dict[str, Any]:
            index.save(tmp)
            snap.write_json(tmp / "ids.json", ids)
            np.save(tmp / "keys.npy", keys)
            tokens.save(tmp)
            bm25 = self.settings.bm25.to_dict()
            return {"field": field, "count": len(ids), "bm25": bm25, "commit": commit}

        self._publish(kind, generation, write)
        return self._saved_copy(kind, generation) or _Loaded(generation, _ids_array(ids), index)

    def _saved_copy(self, kind: str, generation: int) -> _Loaded | None:
        """The BM25 index just saved, read back memory-mapped (as an index opened later is): the
        one built held its arrays in memory for as long as the handle stayed open (130 MB at
        200,000 documents, in a server after each write)."""
        directory = snap.at(self.path, kind, generation)
        if directory is None:  # not saved (a read-only folder): the built one serves
            return None
        try:
            return self._load_bm25(directory, generation)
        except (OSError, ValueError, KeyError, RuntimeError, EOFError):
            return None  # pruned by a newer writer meanwhile, or unreadable: the same

    def _note_slow_build(self, seconds: float, documents: int) -> None:
        noted = self._slow_build_noted
        if seconds < SLOW_BUILD_S or (noted and time.monotonic() < noted + SLOW_BUILD_EVERY_S):
            return
        self._slow_build_noted = time.monotonic()
        _log.warning(
            "index %r: building its BM25 search files took %.1f s (%s documents); an embedded "
            "index builds them again after every write, and its searches wait meanwhile: write "
            "in batches, or keep an index this large that is written to often in PostgreSQL "
            "(--store)",
            self.name,
            seconds,
            f"{documents:,}",
        )

    def _bm25_tokens(
        self, conn: Any, field: str, kind: str
    ) -> tuple[np.ndarray, list[str], DocTokens]:
        """``(pks, ids, analysed terms)`` of every row in pk order. The terms of rows not
        written since the last saved index of this history are taken from its files: only
        the rows a write touched are analysed again."""
        saved = self._saved_tokens(conn, kind)
        if saved is not None:
            rows = list(self.db.iter_rows(conn, "pk, id"))
            keys = np.array([pk for pk, _ in rows], dtype=np.int64)
            try:
                tokens = self._updated_tokens(conn, field, keys, saved)
                return keys, [doc_id for _, doc_id in rows], tokens
            except (KeyError, IndexError, ValueError, TypeError):
                pass  # saved files that do not agree with each other: analyse every row
        pks: list[int] = []
        ids: list[str] = []
        every_row = self.db.iter_rows(conn, f"pk, id, {self._bm25_column(field)}")
        tokens = self._analyse(_noting_rows(every_row, pks, ids), field)
        return np.array(pks, dtype=np.int64), ids, tokens

    @staticmethod
    def _bm25_column(field: str) -> str:
        return "text" if field == ALL_TEXT_FIELDS else "doc"

    def _analyse(self, stored: Iterable[str], field: str) -> DocTokens:
        """Terms of rows' stored ``text`` (the joined fields) or ``doc`` (one field of it),
        read as the analysis takes them: the whole corpus's texts are never held at once
        (holding them, a build of 200,000 documents peaked at 589 MB rather than 460 MB)."""
        texts = (
            t if field == ALL_TEXT_FIELDS else self.text_of(json.loads(t), field) for t in stored
        )
        return DocTokens.analyse(texts, self.settings.bm25)

    def _updated_tokens(
        self, conn: Any, field: str, keys: np.ndarray, saved: tuple[int, np.ndarray, DocTokens]
    ) -> DocTokens:
        """The saved terms with the rows written since analysed again, in ``keys`` order."""
        generation, old_keys, old_tokens = saved
        if old_keys.ndim != 1 or len(old_keys) != len(old_tokens):
            raise ValueError("saved keys and terms disagree")
        column = self._bm25_column(field)
        fresh_keys: list[int] = []
        fresh = self.db.iter_rows(conn, f"pk, {column}", written_after=generation)
        analysed = self._analyse(_noting_rows(fresh, fresh_keys), field)
        new_at = {pk: n for n, pk in enumerate(fresh_keys)}
        old_at = {int(pk): n for n, pk in enumerate(old_keys.tolist())}
        sources = [(pk in new_at, new_at.get(pk, old_at.get(pk))) for pk in keys.tolist()]
        if any(at is None for _, at in sources):  # a row the saved index should hold does not
            raise KeyError("saved index misses an unwritten row")
        return DocTokens.combine(old_tokens, analysed, sources)  # type: ignore[arg-type]

    def _saved_tokens(self, conn: Any, kind: str) -> tuple[int, np.ndarray, DocTokens] | None:
        """``(generation, pks, terms)`` of the last saved BM25 index of ``kind`` if these
        documents can bring it up to date: saved with its terms and today's analysis."""
        saved = self._saved_in_history(conn, kind)
        analysis = self._bm25_as_saved()
        if saved is None or saved[2].get("bm25") != analysis:
            return None
        generation, directory, _ = saved
        try:
            return generation, load_npy(directory / "keys.npy"), DocTokens.load(directory)
        except (OSError, ValueError, EOFError):
            return None  # saved before terms were kept, damaged, or pruned meanwhile

    def _saved_in_history(self, conn: Any, kind: str) -> tuple[int, Path, dict[str, Any]] | None:
        """``(generation, folder, meta)`` of the newest saved ``kind`` built from an earlier
        state of this very database (not another history of it: a restored backup written to
        again), so that the rows written since bring it up to date; None where there is none."""
        history = self.db.commit_history(conn)
        # The newest of this history, not simply the newest: after a restore, the lost
        # history's newer ones hid it and every write built the files from scratch.
        for generation, directory in snap.published(self.path, kind):
            if generation not in history:
                continue
            try:
                meta = snap.read_meta(directory)
            except (OSError, ValueError):
                continue
            if history[generation] == meta.get("commit"):
                return generation, directory, meta
        return None

    def _vectors(self) -> _Loaded:
        if not self.has_vectors:
            raise InvalidInputError(f"index {self.name!r} has no embeddings")
        return self._current(VECTORS, VECTORS, self._load_vectors, self._build_vectors)

    def _load_vectors(self, directory: Path, generation: int) -> _Loaded:
        meta = snap.read_meta(directory)
        ids = _ids_array(json.loads((directory / "ids.json").read_text("utf-8")))
        if meta.get("search") != "hnsw":
            matrix = np.load(directory / "vectors.npy", mmap_mode="r")
            return _Loaded(int(meta["generation"]), ids, ExactVectorIndex(matrix))
        if meta.get("graph") != SERIAL_GRAPH:
            _log.warning(
                "index %r: its vector graph was saved by an earlier semrank, whose concurrent "
                "inserts could leave documents unreachable; building it again from %d vectors "
                "(once; about a minute per 20,000 on 2 cores)",
                self.name,
                len(ids),
            )
            raise ValueError("a graph built by concurrent adds: build it again")
        graph = HNSWVectorIndex.load(directory / "hnsw.usearch", int(meta["dim"]), len(ids))
        # Graphs saved before keys were row pks are keyed by position.
        keys = load_npy(directory / "keys.npy") if meta.get("keys") == "pk" else None
        return _Loaded(int(meta["generation"]), ids, graph, keys)

    def _build_vectors(self) -> _Loaded:
        self._catch_up_embeddings()
        dim = int(self.db.get_meta("embedding_dim") or 0)
        threshold = max(self.settings.ann_threshold, 1)
        with self.db.snapshot() as conn:
            generation, commit = self.db.generation(conn), self.db.commit_token(conn)
            updated = self._updated_graph(conn, dim, threshold)
            if updated is None:  # one read of every row, vectors included
                keys, ids, matrix, _ = self._live_rows(conn, dim, with_vectors=True)
        index: VectorIndex
        if updated is not None:
            index, removed, keys, ids = updated
        elif len(ids) >= threshold:
            self._note_graph_build(len(ids))
            index, removed = HNSWVectorIndex.build(matrix, keys=keys), 0
        else:
            index, removed = ExactVectorIndex(matrix), 0

        def write(tmp: Path) -> dict[str, Any]:
            snap.write_json(tmp / "ids.json", ids)
            if isinstance(index, HNSWVectorIndex):
                index.save(tmp / "hnsw.usearch")
                np.save(tmp / "keys.npy", keys)
            else:
                np.save(tmp / "vectors.npy", matrix)
            return {
                "count": len(ids),
                "dim": dim,
                "search": index.kind,
                "keys": "pk",
                "removed": removed,  # rows removed from the graph since it was built
                "graph": SERIAL_GRAPH,
                "model": self.settings.embedding_model,
                "commit": commit,
            }

        self._publish(VECTORS, generation, write)
        return _Loaded(
            generation, _ids_array(ids), index, keys if isinstance(index, HNSWVectorIndex) else None
        )

    def _note_graph_build(self, vectors: int) -> None:
        """Say what a graph build costs before it runs: minutes, with one line on the screen."""
        if vectors < GRAPH_VECTORS_PER_S * 30:  # half a minute or less: nothing to say
            return
        _log.warning(
            "index %r: building its vector search graph from %s vectors, about %s min on one "
            "core (searches of the index wait meanwhile); later writes update it in place",
            self.name,
            f"{vectors:,}",
            f"{max(1, round(vectors / GRAPH_VECTORS_PER_S / 60)):,}",
        )

    def _live_rows(
        self, conn: Any, dim: int, *, with_vectors: bool = False, written_after: int | None = None
    ) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
        """``(pks, ids, vectors, pks of every row read)`` of the rows searched by vector, in pk
        order (vectors only ``with_vectors``; only rows written after ``written_after`` if
        given). Documents without text are kept (get, BM25: they match nothing) but not
        searched by vector: the embedding of nothing is close to every query, and outranked
        documents that hold the words."""
        columns = "pk, id, text" + (", embedding" if with_vectors else "")
        read = list(self.db.iter_rows(conn, columns, written_after=written_after))
        rows = [row for row in read if row[2].strip()]
        matrix = np.frombuffer(b"".join(row[3] for row in rows if with_vectors), np.float32)
        matrix = matrix.reshape(-1, dim) if dim else np.zeros((0, 0), np.float32)
        keys = np.array([row[0] for row in rows], dtype=np.int64)
        every = np.array([row[0] for row in read], dtype=np.int64)
        return keys, [row[1] for row in rows], matrix, every

    def _saved_graph(self, conn: Any, dim: int) -> tuple[int, Path, dict[str, Any]] | None:
        """``(generation, folder, meta)`` of the last saved graph if these documents can bring
        it up to date: keyed by pk, of this dimension, from this history of the database."""
        saved = self._saved_in_history(conn, VECTORS)
        if saved is None:
            return None
        meta = saved[2]
        usable = (
            meta.get("search") == "hnsw"
            and meta.get("keys") == "pk"
            and meta.get("dim") == dim
            and meta.get("graph") == SERIAL_GRAPH
        )
        return saved if usable else None

    def _updated_graph(
        self, conn: Any, dim: int, threshold: int
    ) -> tuple[HNSWVectorIndex, int, np.ndarray, list[str]] | None:
        """The last saved graph brought up to the documents of ``conn``'s snapshot by the rows
        written since: ``(graph, rows removed since it was built, pks, ids)``; or None where it
        must be built again: none saved or usable (``_saved_graph``), unreadable, too few rows
        for a graph now, or too many removed from it."""
        saved = self._saved_graph(conn, dim)
        if saved is None:
            return None
        base_generation, directory, meta = saved
        keys, ids, _, _ = self._live_rows(conn, dim)
        if len(keys) < threshold:
            return None
        try:
            old_keys = load_npy(directory / "keys.npy")
            graph = HNSWVectorIndex.load(directory / "hnsw.usearch", dim, len(old_keys), view=False)
        except (OSError, ValueError, RuntimeError, EOFError):
            return None  # pruned by a writer meanwhile, or damaged: build from the documents
        added, _, vectors, rewritten = self._live_rows(
            conn, dim, with_vectors=True, written_after=base_generation
        )
        stale = old_keys[np.isin(old_keys, rewritten) | ~np.isin(old_keys, keys)]
        removed = int(meta.get("removed", 0)) + len(stale)
        # Removed rows stay in the graph as detours: past a share of them, build it again.
        if removed > REBUILD_REMOVED_SHARE * len(keys):
            return None
        graph.update(stale, added, vectors)
        return (graph, removed, keys, ids) if len(graph) == len(keys) else None

    # --- retrieval -------------------------------------------------------------------------
    def search_bm25(
        self, query: str, *, k: int, field: str = ALL_TEXT_FIELDS, filter: FilterSpec | None = None
    ) -> Hits:
        check_search(query, k)
        flt = optional_filter(filter)
        loaded = self._bm25_for(field)
        allowed = self._allowed(flt, f"bm25:{field}", loaded)
        if allowed is None:
            hits = loaded.index.search(query, k)
        else:  # every document's score, then the top k of those passing
            hits = top_k(np.where(allowed, loaded.index.scores(query), 0.0), k, positive_only=True)
        return Hits(loaded.ids[hits.ids], hits.scores)

    def search_bm25_fields(
        self,
        query: str,
        *,
        k: int,
        fields: Sequence[tuple[str, float]],
        mode: str = "best_fields",
        filter: FilterSpec | None = None,
    ) -> Hits:
        """Exact multi-field BM25: every field's full score vector, combined per document."""
        check_fields_search(query, k, fields, mode)
        flt = optional_filter(filter)
        scored = self._combined_scores(query, fields, mode, flt)
        if scored is None:  # a writer raced
            return super().search_bm25_fields(query, k=k, fields=fields, mode=mode, filter=flt)
        hits = top_k(scored[1], k, positive_only=True)
        return Hits(scored[0].ids[hits.ids], hits.scores)

    def count_bm25(
        self,
        query: str,
        *,
        fields: Sequence[tuple[str, float]] = ((ALL_TEXT_FIELDS, 1.0),),
        mode: str = "best_fields",
        filter: FilterSpec | None = None,
    ) -> int:
        check_fields_search(query, 1, fields, mode)
        flt = optional_filter(filter)
        scored = self._combined_scores(query, fields, mode, flt)
        if scored is None:  # a writer raced
            return super().count_bm25(query, fields=fields, mode=mode, filter=flt)
        return int(np.count_nonzero(scored[1] > 0))

    def ids_bm25(
        self,
        query: str,
        *,
        fields: Sequence[tuple[str, float]] = ((ALL_TEXT_FIELDS, 1.0),),
        mode: str = "best_fields",
        filter: FilterSpec | None = None,
    ) -> list[str]:
        check_fields_search(query, 1, fields, mode)
        flt = optional_filter(filter)
        scored = self._combined_scores(query, fields, mode, flt)
        if scored is None:  # a writer raced
            return super().ids_bm25(query, fields=fields, mode=mode, filter=flt)
        return [str(i) for i in scored[0].ids[np.flatnonzero(scored[1] > 0)].tolist()]

    def _combined_scores(
        self, query: str, fields: Sequence[tuple[str, float]], mode: str, flt: Filter | None
    ) -> tuple[_Loaded, np.ndarray] | None:
        """Every document's BM25 score over ``fields`` (0 where ``flt`` fails it), by the
        positions of the first field's index; None where a write landed between the fields'."""
        loaded = [(self._bm25_for(name), boost) for name, boost in fields]
        if any(a.generation != loaded[0][0].generation for a, _ in loaded):
            return None
        columns = np.stack([boost * item.index.scores(query) for item, boost in loaded])
        total = columns.max(axis=0) if mode == "best_fields" else columns.sum(axis=0)
        allowed = self._allowed(flt, f"bm25:{fields[0][0]}", loaded[0][0])
        if allowed is not None:
            total = np.where(allowed, total, 0.0)
        return loaded[0][0], total

    def search_vector(
        self,
        vector: np.ndarray,
        *,
        k: int,
        num_candidates: int | None = None,
        filter: FilterSpec | None = None,
    ) -> Hits:
        check_k(k)
        flt = optional_filter(filter)
        dim = self.db.get_meta("embedding_dim")
        if dim:  # an empty exact index knows no dimension: a wrong one was answered with []
            unit_query_vector(vector, int(dim))
        loaded = self._vectors()
        allowed = self._allowed(flt, VECTORS, loaded)
        if allowed is None:
            hits = loaded.index.search(vector, k, num_candidates)
        else:
            # The ids its hits carry: graph keys (row pks), or positions.
            positions = np.flatnonzero(allowed)
            keys = positions if loaded.keys is None else loaded.keys[positions]
            if isinstance(loaded.index, HNSWVectorIndex):
                # Below the ANN threshold, exact search is fast enough: so for the rows allowed.
                threshold = max(self.settings.ann_threshold, 1)
                hits = loaded.index.search(vector, k, num_candidates, keys, exact_up_to=threshold)
            else:
                hits = loaded.index.search(vector, k, num_candidates, keys)
        return Hits(loaded.doc_ids(hits.ids), hits.scores)

    # --- filters -----------------------------------------------------------------------------
    def _allowed(self, flt: Filter | None, key: str, loaded: _Loaded) -> np.ndarray | None:
        """Whether each position of ``loaded`` passes ``flt`` (None: no filter). A document
        the table does not hold (deleted since ``loaded`` was built) does not."""
        if flt is None:
            return None
        table = self._field_table(flt)
        with self._filter_lock:
            held = self._filter_rows.get(key)
            # By the table's rows, shared by the tables of one state with more fields read.
            if held is None or held[0] != loaded.generation or held[1] is not table.ids:
                held = (loaded.generation, table.ids, table.rows_of(loaded.ids.tolist()))
                self._filter_rows[key] = held
        rows = held[2]
        passing = table.mask(flt)
        return (rows >= 0) & passing[np.maximum(rows, 0)]

    def _field_table(self, flt: Filter) -> FieldTable:
        """The values of the fields ``flt`` reads, of every document in the index's current
        state: each document is read once per state (and field), not at every search; after
        a write, only the rows written since are."""
        found = self._current_table(flt)
        if found is not None:
            return found
        # One read at a time: a second search needing a field waits for the first to read it
        # rather than read it too (parsing is CPU-bound under the GIL: two reads at once take
        # as long as one after the other, with twice the memory), then finds it read.
        with self._filter_build_lock:
            found = self._current_table(flt)
            if found is not None:
                return found
            with self._filter_lock:
                held = self._filter_table
            read = self._read_until_stable(flt, held)
            with self._filter_lock:
                self._filter_table = read
            return read[1]

    def _read_until_stable(self, flt: Filter, held: _FieldState | None) -> _FieldState:
        """``_read_fields`` in short pages until no write landed while it read, each read
        after the first taking only the rows written since; the last of _FILTER_READS reads
        holds one read transaction, so that constant writes cannot keep the table unread."""
        read = held
        for _ in range(_FILTER_READS - 1):
            read = self._read_fields(flt, read, consistent=False)
            if read[0] == self.db.state():  # no write while it read: complete
                return read
        return self._read_fields(flt, read, consistent=True)

    def _current_table(self, flt: Filter) -> FieldTable | None:
        """The table read last if it is of the documents' state now and holds ``flt``'s
        fields. The lock is held only to look: a search never waits for another's read."""
        state = self.db.state()
        with self._filter_lock:
            held = self._filter_table
        if held is not None and held[0] == state and not held[1].missing(flt):
            return held[1]
        return None

    def _read_fields(
        self, flt: Filter, held: _FieldState | None, *, consistent: bool
    ) -> _FieldState:
        """``held``'s table brought to the documents' state now, with ``flt``'s fields read:
        where ``held`` is of an earlier state of this very database, only the rows written
        since are read for its fields. ``consistent``: every document read in one read
        transaction, which holds the read connection (every other read waits) throughout.
        Else in short pages, between which other reads go: rows written meanwhile are not
        read, and the table lacks them unless the state is the same after (the caller's
        check; an earlier state's table still serves to read only the rows written since)."""
        with self.db.snapshot() as conn:
            state = (self.db.generation(conn), self.db.commit_token(conn))
            base, since = _NO_TABLE, -1  # no table of an earlier state: every row read
            if held is not None and self.db.commit_history(conn).get(held[0][0]) == held[0][1]:
                base, since = held[1], held[0][0]
            rows = self._rows_since(conn, base, since) if since >= 0 else self._row_keys(conn)
            paths = base.missing(flt)
            after = -1 if paths else since  # a new field: every row read
            if consistent:
                written = self.db.iter_rows(conn, "pk, doc", written_after=after)
                return state, base.updated(rows, _parsed(written), paths)
        return state, base.updated(rows, _parsed(self._pages((after, state[0]))), paths)

    def _row_keys(self, conn: Any) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Every row's id and ``pk``, in ``pk`` order, each marked fresh (for a table read
        whole)."""
        pks: list[int] = []
        ids = list(_noting_rows(self.db.iter_rows(conn, "pk, id"), pks))
        return ids, np.array(pks, dtype=np.int64), np.ones(len(ids), dtype=bool)

    def _rows_since(
        self, conn: Any, base: FieldTable, since: int
    ) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The rows now (ids, ``pk``s, whether written after ``since``) of ``base``, the table
        of generation ``since``, from the rows written since (by the index on gen): none is
        deleted where the count of rows says so, else every ``pk`` is listed (from an index:
        no document read)."""
        written = self.db.rows_written_after(conn, since)
        keys = np.array([key for key, _ in written], dtype=np.int64)
        added = len(written) - np.count_nonzero(in_sorted(keys, base.keys))
        if self.db.count_rows(conn) == len(base) + added:
            return base.rows_after(written)
        return base.rows_after(written, self.db.row_keys(conn))

    def _pages(self, written: tuple[int, int]) -> Iterator[tuple[int, str]]:
        """``(pk, doc JSON)`` of the rows last written in generations ``written`` (after,
        up to], in ``pk`` order, a short read a page: of about _FILTER_PAGE_BYTES, so that
        large documents are not held a thousand at a time."""
        after: int | None = None
        limit = 32  # until the documents' size is known
        while True:
            self._require_live()
            rows = self.db.documents_after(after, limit, written=written)
            yield from ((pk, doc) for pk, _, doc in rows)
            if len(rows) < limit:
                return
            after = rows[-1][0]
            size = sum(len(doc) for _, _, doc in rows)
            limit = max(1, min(_FILTER_PAGE, limit * _FILTER_PAGE_BYTES // max(size, 1)))
