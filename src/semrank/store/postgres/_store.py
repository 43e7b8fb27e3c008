"""``PostgresStore``: an index in PostgreSQL (documents, english full text, pgvector)."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from decimal import Decimal
from typing import Any

import numpy as np

from semrank._checks import is_valid_unicode
from semrank.errors import (
    BackendUnavailableError,
    DataFormatError,
    IndexExistsError,
    IndexNotFoundError,
    IndexVersionError,
    InvalidInputError,
)
from semrank.retrieve import (
    BM25Params,
    Filter,
    FilterSpec,
    Hits,
    TextEmbedder,
    as_filter,
    optional_filter,
    resolved,
    unit_query_vector,
)
from semrank.retrieve._aggs import ValueCounts, ValueKey, counted, value_key
from semrank.retrieve._filter import Bool, Ids, Scalar
from semrank.retrieve._held import HeldValues, held_field
from semrank.retrieve._sort import Sort, search_after_cursor
from semrank.retrieve._sort_columns import SortTable
from semrank.store._base import (
    ALL_TEXT_FIELDS,
    MAX_VERSION,
    BatchCounts,
    DocumentVersion,
    GivenVectorStore,
    IndexInfo,
    IndexSettings,
    ProgressCallback,
    UnchangedDeletes,
    VersionedChange,
    VersionedCounts,
    VersionedDocument,
    check_batch_size,
    check_fields_search,
    check_k,
    check_search,
    combine_field_hits,
    given_vectors,
    id_list,
    unchanged_split,
    unit_rows,
    unpicklable,
    version_overflow,
    written_versions,
)
from semrank.store._corpus import Document
from semrank.store.postgres import _queries as q
from semrank.store.postgres._filters import ID_TABLES, FilterSQL, filter_condition
from semrank.store.postgres._pool import (
    NOT_PERMITTED,
    acquire_pool,
    pooled_connection,
    redact,
    release_pool,
    write_turn,
)
from semrank.store.postgres._schema import VECTOR_DIM, ensure_migrated
from semrank.store.postgres._sorting import (
    candidates_table,
    int4s,
    numbered_values_query,
    ordered_query,
    pushable,
    single_numbers_query,
    sort_columns_query,
    sort_table,
)

HNSW_EF_SEARCH_MAX = 1000  # pgvector's limit for hnsw.ef_search
HNSW_MAX_SCAN_TUPLES = 20_000  # pgvector's default bound of an iterative scan
_HNSW_LOCK = 0x73686E77  # "shnw": advisory locks serialising a partition's HNSW build
OLDER_ROWS_BATCH = 500  # rows given per-field terms per transaction (_analyse_older_fields)
STALE_STATISTICS_SHARE = 0.1  # ANALYZE once this share of the rows was written since the last
PROBE_KEY = "embedding_probe"  # the settings key of the index's embedding probe (see Store)
_log = logging.getLogger(__name__)
# ``count_and_aggregate``'s store and connection, which its statements run on (this thread's).
_HELD: ContextVar[tuple[Any, Any] | None] = ContextVar("semrank_pg_held", default=None)
_ID_TABLE_ABOVE = 1000  # ids in a list sent into a temporary table, not with each statement
# Indexes whose HNSW build was left to the tables' owner, said once per process.
_GRAPHS_LEFT: set[tuple[str, str]] = set()


def partition_name(index_name: str) -> str:
    """The partition of ``semrank.documents`` holding one index (a safe, stable identifier)."""
    return "documents_" + hashlib.sha256(index_name.encode()).hexdigest()[:16]


def _json_fields(doc_id: str, fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` as they read back from jsonb (so unchanged documents compare equal), or an
    error naming the document when PostgreSQL cannot hold them (the embedded store can: an
    index moved from it would otherwise fail mid-batch with psycopg's words)."""
    try:
        text = json.dumps(fields, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise DataFormatError(
            f"document {doc_id!r}: its fields are not JSON PostgreSQL can store ({exc}); give "
            "text, finite numbers, lists or objects"
        ) from exc
    if _has_nul(doc_id) or _has_nul(fields):
        raise DataFormatError(
            f"document {doc_id!r} holds a NUL character (\\u0000), which PostgreSQL text "
            "cannot store; remove it"
        )
    loaded: dict[str, Any] = json.loads(text, parse_float=_as_jsonb_reads_it)
    return loaded


def _as_jsonb_reads_it(literal: str) -> float | int:
    """A JSON number as it comes back from jsonb: ``numeric`` drops the exponent, so 1e+20 is
    read back as the integer 100000000000000000000; compared as the float, a document holding
    it (or 1.2345678901234568e+29, which no float equals once written out) was rewritten on
    every ingest."""
    if "e" in literal.lower():
        exact = Decimal(literal)
        if exact == exact.to_integral_value():
            return int(exact)
    return float(literal)


def check_postgres_storable(document: Document) -> None:
    """What PostgreSQL cannot store of one document (a NUL character, an id over 2,000 bytes,
    fields that are not JSON), said before any write: found in the batch that met it, the
    batches before were in already."""
    _check_id_lengths([document.id])
    _json_fields(document.id, document.fields)


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_has_nul(item) for item in value)
    return False


# The roles granted semrank.documents (PUBLIC as grantee 0), other than its owner.
_DOCUMENTS_GRANTS = """
SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END,
       string_agg(a.privilege_type, ', ')
FROM pg_class c, aclexplode(c.relacl) AS a
WHERE c.oid = 'semrank.documents'::regclass AND a.grantee <> c.relowner
GROUP BY a.grantee
"""


def _grant_as_documents(conn: Any, part: str) -> None:
    """Give a new partition the grants of ``semrank.documents``: the store reads and writes
    partitions by name, and PostgreSQL checks a partition's own grants then, so a role granted
    the tables could not search an index created after its GRANT."""
    from psycopg import sql

    for grantee, privileges in conn.execute(_DOCUMENTS_GRANTS).fetchall():
        role = sql.SQL("PUBLIC") if grantee == "PUBLIC" else sql.SQL(grantee)
        conn.execute(
            sql.SQL("GRANT {} ON {} TO {}").format(
                sql.SQL(privileges), sql.Identifier("semrank", part), role
            )
        )


def _id_lists(flt: Filter) -> Iterator[frozenset[str]]:
    """The id lists of ``flt``'s ``ids`` clauses."""
    if isinstance(flt, Ids):
        yield flt.values
    elif isinstance(flt, Bool):
        for clause in (*flt.must, *flt.should, *flt.must_not):
            yield from _id_lists(clause)


def _storable(ids: Iterable[str]) -> list[str]:
    """The ids PostgreSQL text can hold: one with a NUL (or a lone surrogate) was refused at
    ingest, so it is in no index, and querying for it was a driver error (an HTTP 500)."""
    return [i for i in ids if "\x00" not in i and is_valid_unicode(i)]


# A stored row as writes read it: (doc, has a vector, version, seq_no).
Stored = tuple[Any, bool, int, int]


def _versioned(stored: Stored) -> VersionedDocument:
    return VersionedDocument(
        fields=stored[0], version=DocumentVersion(version=stored[2], seq_no=stored[3])
    )


def _hits(rows: list[tuple[str, float]]) -> Hits:
    ids = np.empty(len(rows), dtype=object)
    ids[:] = [row[0] for row in rows]
    return Hits(ids, np.array([row[1] for row in rows], dtype=np.float32))


class PostgresStore(GivenVectorStore):
    """A named index in a PostgreSQL database (``semrank`` schema; see ``docs/postgresql.md``).

    Several processes may read and write at once: writes to one index are serialised by a row
    lock on its ``semrank.indexes`` row, each batch commits on its own.
    """

    backend = "postgresql"

    def check_storable(self, document: Document) -> None:
        check_postgres_storable(document)

    def __init__(self, dsn: str, name: str, *, embedder: TextEmbedder | None = None) -> None:
        self.dsn = dsn
        self._pool = acquire_pool(dsn)
        try:
            ensure_migrated(self._pool, dsn)
            row = self._one("SELECT settings, partition FROM semrank.indexes WHERE name = %s", name)
        except BaseException:
            release_pool(dsn)
            raise
        if row is None:
            known = ", ".join(list_postgres_indexes(dsn)) or "none"
            release_pool(dsn)
            raise IndexNotFoundError(
                f"index {name!r} not found in {redact(dsn)} (indexes there: {known}); create it "
                f"with `semrank index create {name} --store {redact(dsn)} --from PATH`",
                # What an HTTP client can do about it (the server's database and CLI are not its).
                client_message=f"index {name!r} not found (indexes: {known}); create it with "
                "POST /v1/indexes",
            )
        from psycopg import sql

        stored = {key: value for key, value in row[0].items() if key != PROBE_KEY}
        try:
            self.settings: IndexSettings = IndexSettings.from_dict(stored)
        except IndexVersionError:
            release_pool(dsn)
            raise
        self._part = sql.Identifier("semrank", row[1])
        self._part_name = f"semrank.{row[1]}"  # as regclass reads it
        self._embedder = embedder
        self._closed = False
        self._fields_analysed = False  # every row has its per-field terms (see below)

    @classmethod
    def create(
        cls, dsn: str, settings: IndexSettings, *, embedder: TextEmbedder | None = None
    ) -> PostgresStore:
        """Register a new, empty index (its own partition of ``semrank.documents``)."""
        from psycopg import sql
        from psycopg.types.json import Jsonb

        _check_bm25_method(settings.bm25)  # before anything is written: no search could read it
        pool = acquire_pool(dsn)
        try:
            ensure_migrated(pool, dsn)
            part = partition_name(settings.name)
            with pooled_connection(pool, dsn) as conn, conn.transaction():
                _refuse_an_alias_name(conn, settings.name)
                created = conn.execute(
                    "INSERT INTO semrank.indexes (name, partition, settings) VALUES (%s, %s, %s) "
                    "ON CONFLICT (name) DO NOTHING RETURNING name",
                    (settings.name, part, Jsonb(settings.to_dict())),
                ).fetchone()
                if created is None:
                    raise _exists(settings.name, dsn)
                conn.execute(
                    sql.SQL(
                        "CREATE TABLE {} PARTITION OF semrank.documents FOR VALUES IN ({})"
                    ).format(sql.Identifier("semrank", part), sql.Literal(settings.name))
                )
                _grant_as_documents(conn, part)
        finally:
            release_pool(dsn)
        return cls(dsn, settings.name, embedder=embedder)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            release_pool(self.dsn, self._pool)

    def __repr__(self) -> str:
        return f"PostgresStore({self.name!r}, dsn={redact(self.dsn)!r})"

    def __getstate__(self) -> None:
        raise unpicklable(self, f"open_index({self.name!r}, store=DSN)")

    # --- small helpers ---------------------------------------------------------------------
    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """A pooled connection (the one ``count_and_aggregate`` holds, inside it); a query on
        this index's dropped table names the drop."""
        from psycopg import errors

        held = _HELD.get()
        if held is not None and held[0] is self:
            yield held[1]
            return
        with pooled_connection(self._pool, self.dsn) as conn:
            try:
                yield conn
            except errors.UndefinedTable as exc:
                raise self._dropped() from exc

    def _write_turn(self) -> Any:
        return write_turn(self.dsn, self.name)

    def _dropped(self) -> IndexNotFoundError:
        return IndexNotFoundError(
            f"index {self.name!r} was dropped from {redact(self.dsn)}; open it again with "
            f"open_index({self.name!r}, store=...) after creating it"
        )

    def _one(self, query: Any, *params: Any) -> Any:
        with self._connection() as conn:
            return conn.execute(query, params).fetchone()

    def _all(self, query: Any, params: Any) -> list[Any]:
        with self._connection() as conn:
            return conn.execute(query, params).fetchall()

    # --- writing (``upsert`` is the base class's: one transaction per batch) ----------------
    def _stored(self, ids: list[str]) -> dict[str, Stored]:
        """(doc, has a vector, version, seq_no) of each stored id."""
        with self._connection() as conn:
            return self._stored_in(conn, ids)

    def _stored_in(self, conn: Any, ids: list[str]) -> dict[str, Stored]:
        from psycopg import sql

        query = sql.SQL(
            "SELECT id, doc, embedding IS NOT NULL, version, seq_no FROM {} WHERE id = ANY(%s)"
        ).format(self._part)
        rows = conn.execute(query, (ids,)).fetchall()
        return {row[0]: (row[1], row[2], int(row[3]), int(row[4])) for row in rows}

    def _write_batch_given(
        self,
        batch: list[Document],
        progress: ProgressCallback | None,
        given: Mapping[str, np.ndarray],
    ) -> BatchCounts:
        latest = {doc.id: doc for doc in batch}  # a repeated id in one batch: the last wins
        _check_id_lengths(latest)
        rows = {i: (_json_fields(i, d.fields), self.text_of(d.fields)) for i, d in latest.items()}
        stored = self._stored(list(rows))
        # Unchanged documents are skipped, so re-running an interrupted ingest is cheap.
        changed = [
            i for i, (doc, text) in rows.items() if not self._unchanged(stored.get(i), doc, text)
        ]
        texts = [rows[i][1] for i in changed]
        vectors, embedded, copied = self._literals_of(changed, texts, given)
        if changed:
            terms = q.analyse(texts, self.settings.bm25)
            fields = sorted({key for i in changed for key in rows[i][0]})
            written = [
                (i, rows[i][0], rows[i][1], t, v)
                for i, t, v in zip(changed, terms, vectors, strict=True)
            ]
            self._write_rows_named(written, fields)
        if progress is not None:
            progress(len(batch))
        return BatchCounts(len(latest), len(changed), embedded, copied)

    def _literals_of(
        self, ids: list[str], texts: list[str], given: Mapping[str, np.ndarray]
    ) -> tuple[list[str | None], int, int]:
        """The vectors of ``ids`` (whose ``texts`` are these) in pgvector's text form: those
        ``given`` as they are, the others embedded (a text with no words gets none, as
        ``_embed`` says); with how many were embedded, and how many given."""
        if not self.has_vectors:
            return [None] * len(ids), 0, 0
        wordy = [n for n, text in enumerate(texts) if text.strip()]
        copied = [n for n in wordy if ids[n] in given]
        missing = [n for n in wordy if ids[n] not in given]
        literals: list[str | None] = [None] * len(ids)
        if missing:
            for n, row in zip(missing, self._vectors([texts[n] for n in missing]), strict=True):
                literals[n] = q.vector_literal(row)
        if copied:
            matrix = given_vectors([ids[n] for n in copied], given)
            self._check_dimension(matrix.shape[1])
            for n, row in zip(copied, matrix, strict=True):
                literals[n] = q.vector_literal(row)
        return literals, len(missing), len(copied)

    def stored_vectors(self, ids: Sequence[str]) -> dict[str, tuple[str, np.ndarray]]:
        from psycopg import sql

        wanted = _storable(id_list(ids))
        query = sql.SQL(
            "SELECT id, body, embedding::text FROM {} WHERE id = ANY(%s) AND embedding IS NOT NULL"
        ).format(self._part)
        rows = self._all(query, (wanted,)) if wanted else []
        return {i: (body, np.array(json.loads(vec), dtype=np.float32)) for i, body, vec in rows}

    def update_versioned(self, ids: Sequence[str], change: VersionedChange) -> VersionedCounts:
        """Read, changed and written in one transaction that first locks the index's row
        (``FOR UPDATE``, as every write of it does): another process's or host's write waits
        for the commit, and reads after it, so ``change``'s conditions hold for what it
        writes. The texts are embedded and analysed before, as a first read's change has them:
        a text another write changed meanwhile is analysed under the lock and stored without
        its vector, embedded by the refresh after (no lock is held while a model runs)."""
        wanted = list(dict.fromkeys(id_list(ids)))
        seen = set(self.fields_seen)
        first = self._changes(dict(zip(wanted, self.get_versioned(wanted), strict=True)), change)
        prepared = self._prepared([self.text_of(d.fields) for d in first.documents], embed=True)
        with self._write_turn(), self._connection() as conn, conn.transaction():
            generation = self._lock(conn)  # before the read: it sees the last writer's commit
            stored = self._stored_in(conn, _storable(wanted))
            found = {i: _versioned(stored[i]) if i in stored else None for i in wanted}
            changes = self._changes(found, change)
            rows = self._changed_rows(changes.documents, stored, prepared, changes.versions)
            written = [row[0] for row in rows]
            versions = written_versions(found, changes, written, self._take_seq_nos(conn, 0))
            if rows:
                fields = sorted({key for row in rows for key in row[1]})
                given = [versions[i].version for i in written]
                self._put_rows(conn, generation, rows, fields, given)
            if changes.gone:
                self._delete_in(conn, generation, changes.gone)
        self.refresh()
        counts = self._update_counts(changes, len(rows), seen)
        return VersionedCounts(counts=counts, versions=versions, deleted=len(changes.gone))

    def _prepared(self, texts: list[str], *, embed: bool) -> dict[str, tuple[list[str], Any]]:
        """Each of ``texts``' BM25 terms and (``embed``: else None) vector."""
        unique = list(dict.fromkeys(texts))
        vectors = self._embed(unique) if embed else [None] * len(unique)
        terms = q.analyse(unique, self.settings.bm25) if unique else []
        return dict(zip(unique, zip(terms, vectors, strict=True), strict=True))

    def _changed_rows(
        self,
        documents: list[Document],
        stored: dict[str, Stored],
        prepared: dict[str, tuple[list[str], Any]],
        versions: dict[str, int | None],
    ) -> list[tuple[str, Any, str, list[str], str | None]]:
        """The rows of ``documents`` not ``stored`` as they are (in the version ``versions``
        gives, if any); a text not ``prepared`` is analysed now, and gets no vector (the
        refresh after embeds it)."""
        rows = {d.id: (_json_fields(d.id, d.fields), self.text_of(d.fields)) for d in documents}
        changed = [
            i
            for i, (doc, text) in rows.items()
            if not self._unchanged(stored.get(i), doc, text)
            or versions.get(i) not in (None, stored[i][2])
        ]
        late = [rows[i][1] for i in changed if rows[i][1] not in prepared]
        prepared = {**prepared, **self._prepared(late, embed=False)}
        return [(i, *rows[i], *prepared[rows[i][1]]) for i in changed]

    def _write_rows_named(
        self, rows: list[tuple[str, Any, str, list[str], str | None]], fields: list[str]
    ) -> None:
        """Insert or replace ``(id, doc, body, terms, vector)`` rows in one transaction."""
        with self._write_turn(), self._connection() as conn, conn.transaction():
            self._put_rows(conn, self._lock(conn), rows, fields)

    def _put_rows(
        self,
        conn: Any,
        generation: int,
        rows: list[tuple[str, Any, str, list[str], str | None]],
        fields: list[str],
        versions: list[int] | None = None,
    ) -> None:
        """``rows`` written in the caller's transaction, holding the index's lock, in
        ``versions`` (None: each stored version + 1)."""
        import psycopg

        try:
            self._insert_rows(conn, generation, rows, fields, versions)
        except psycopg.errors.ProgramLimitExceeded as exc:
            # e.g. "string is too long for tsvector": name the batch's longest document.
            longest = max(rows, key=lambda row: len(row[2]))[0]
            raise DataFormatError(
                f"PostgreSQL cannot index a document of this batch, likely {longest!r} (the "
                f"longest): {' '.join(str(exc).split())[:200]}; split it into smaller documents"
            ) from exc

    def _unchanged(self, stored: Stored | None, doc: dict[str, Any], text: str) -> bool:
        # A blank document keeps no vector (see _embed): unchanged all the same. Blank as
        # Python's strip() says (PostgreSQL's [[:space:]] misses U+00A0 and \x1c: such a
        # document was rewritten on every ingest).
        embedded = stored is not None and (stored[1] or not self.has_vectors or not text.strip())
        return stored is not None and _same_json(stored[0], doc) and embedded

    def _embed(self, texts: list[str]) -> list[str | None]:
        """Vectors of ``texts`` in pgvector's text form; a text with no words gets none (NULL),
        so vector search never returns it (its embedding is close to every query), as in the
        embedded store."""
        return self._literals_of([""] * len(texts), texts, {})[0]  # no ids: none given

    def _vectors(self, texts: list[str]) -> np.ndarray:
        vectors = np.asarray(self.embedder.embed(texts), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(texts):
            raise DataFormatError(f"embedder returned shape {vectors.shape} for {len(texts)} texts")
        self._check_dimension(vectors.shape[1])
        vectors = unit_rows(vectors)  # stored as the embedded store stores them
        self._keep_embedding_probe()
        return vectors

    def _check_dimension(self, dim: int) -> None:
        if dim != VECTOR_DIM:
            raise DataFormatError(
                f"the PostgreSQL store keeps vector({VECTOR_DIM}) embeddings, but "
                f"{self.settings.embedding_model!r} returns {dim}-d vectors; use a "
                f"{VECTOR_DIM}-d embedding model (the default all-MiniLM-L6-v2 is one)"
            )

    # The probe lives in the index's settings (jsonb, keys IndexSettings does not read): no
    # schema migration, which a role with table grants only could not apply.
    def _stored_probe(self) -> list[float] | None:
        probe: list[float] | None = self._index_row("settings").get(PROBE_KEY)
        return probe

    def _store_probe(self, probe: list[float]) -> None:
        from psycopg.types.json import Jsonb

        with self._connection() as conn, conn.transaction():
            conn.execute(
                "UPDATE semrank.indexes SET settings = settings || %s WHERE name = %s "
                "AND NOT settings ? %s",
                (Jsonb({PROBE_KEY: probe}), self.name, PROBE_KEY),
            )

    def _lock(self, conn: Any) -> int:
        """Lock this index's row (serialising writers); returns the next generation."""
        row = conn.execute(
            "SELECT generation FROM semrank.indexes WHERE name = %s FOR UPDATE", (self.name,)
        ).fetchone()
        if row is None:
            raise self._dropped()
        return int(row[0]) + 1

    def _take_seq_nos(self, conn: Any, count: int) -> int:
        """The first of ``count`` new sequence numbers of the index's writes, in the caller's
        transaction holding the index's lock (``_lock``)."""
        row = conn.execute(
            "UPDATE semrank.indexes SET seq_no = seq_no + %s WHERE name = %s RETURNING seq_no",
            (count, self.name),
        ).fetchone()
        if row is None:
            raise self._dropped()
        return int(row[0]) - count + 1

    def _sizes(self, conn: Any, ids: list[str]) -> tuple[int, int]:
        from psycopg import sql

        query = sql.SQL(
            "SELECT count(*), coalesce(sum(terms_length), 0) FROM {} WHERE id = ANY(%s)"
        ).format(self._part)
        count, length = conn.execute(query, (ids,)).fetchone()
        return int(count), int(length)

    def _insert_rows(
        self,
        conn: Any,
        generation: int,
        rows: list[tuple[str, Any, str, list[str], str | None]],
        fields: list[str],
        versions: list[int] | None = None,
    ) -> None:
        from psycopg import sql
        from psycopg.types.json import Jsonb

        insert = sql.SQL(
            "INSERT INTO {} AS d (index_name, id, doc, body, terms, terms_length, field_terms, "
            "field_lengths, embedding, generation, seq_no, version) VALUES (%s, %s, %s, %s, %s, "
            "%s, %s, %s, %s::vector, %s, %s, coalesce(%s::bigint, 1)) ON CONFLICT (index_name, id) "
            "DO UPDATE SET doc = EXCLUDED.doc, body = EXCLUDED.body, terms = EXCLUDED.terms, "
            "terms_length = EXCLUDED.terms_length, field_terms = EXCLUDED.field_terms, "
            "field_lengths = EXCLUDED.field_lengths, embedding = EXCLUDED.embedding, "
            "generation = EXCLUDED.generation, seq_no = EXCLUDED.seq_no, "
            "version = coalesce(%s::bigint, d.version + 1) "
            # one at the highest version is left as it is, and refused below (+ 1 would fail
            # the statement as "bigint out of range")
            f"WHERE %s::bigint IS NOT NULL OR d.version < {MAX_VERSION}"
        ).format(self._part)
        ids = [row[0] for row in rows]
        before = self._sizes(conn, ids)
        given = [None] * len(rows) if versions is None else versions
        per_field = q.analyse_fields([row[1] for row in rows], self.settings.bm25)
        first = self._take_seq_nos(conn, len(rows))
        with conn.cursor() as cur:
            cur.executemany(
                insert,
                [
                    (
                        self.name,
                        i,
                        Jsonb(doc),
                        body,
                        Jsonb(q.term_frequencies(terms)),
                        len(terms),
                        Jsonb(field_terms),
                        Jsonb(field_lengths),
                        vec,
                        generation,
                        first + n,
                        version,
                        version,
                        version,
                    )
                    for n, ((i, doc, body, terms, vec), version, (field_terms, field_lengths)) in (
                        enumerate(zip(rows, given, per_field, strict=True))
                    )
                ],
            )
            if cur.rowcount < len(rows):
                self._refuse_past_max_version(conn, ids)
        after = self._sizes(conn, ids)
        self._update_stats(conn, generation, before, after, fields)

    def _refuse_past_max_version(self, conn: Any, ids: list[str]) -> None:
        from psycopg import sql

        query = sql.SQL("SELECT id FROM {} WHERE id = ANY(%s) AND version >= %s LIMIT 1")
        row = conn.execute(query.format(self._part), (ids, MAX_VERSION)).fetchone()
        if row is not None:
            raise version_overflow(row[0])

    def _update_stats(
        self,
        conn: Any,
        generation: int,
        before: tuple[int, int],
        after: tuple[int, int],
        fields: list[str],
    ) -> None:
        conn.execute(
            "UPDATE semrank.indexes SET generation = %s, doc_count = doc_count + %s, "
            "total_length = total_length + %s, fields_seen = ARRAY(SELECT DISTINCT f FROM "
            "unnest(fields_seen || %s::text[]) AS f ORDER BY f), "
            "embedding_dim = CASE WHEN %s THEN %s ELSE embedding_dim END WHERE name = %s",
            (
                generation,
                after[0] - before[0],
                after[1] - before[1],
                fields,
                self.has_vectors,
                VECTOR_DIM,
                self.name,
            ),
        )

    def delete(self, ids: Iterable[str]) -> int:
        unique = _storable(dict.fromkeys(id_list(ids)))
        if not unique:
            return 0
        with self._write_turn(), self._connection() as conn, conn.transaction():
            return self._delete_in(conn, self._lock(conn), unique)

    def delete_unchanged(self, seen: Mapping[str, int]) -> UnchangedDeletes:
        """Read and deleted in one transaction holding the index's lock (``_lock``), as
        ``delete``: another writer's commit is seen, and none lands in between."""
        with self._write_turn(), self._connection() as conn, conn.transaction():
            generation = self._lock(conn)
            stored = self._stored_in(conn, _storable(list(seen)))
            now = {i: DocumentVersion(version=row[2], seq_no=row[3]) for i, row in stored.items()}
            gone, conflicts = unchanged_split(now, seen)
            deleted = self._delete_in(conn, generation, gone) if gone else 0
        return UnchangedDeletes(deleted=deleted, conflicts=conflicts)

    def _delete_in(self, conn: Any, generation: int, ids: list[str]) -> int:
        """``ids`` deleted in the caller's transaction, holding the index's lock."""
        from psycopg import sql

        before = self._sizes(conn, ids)
        conn.execute(sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(self._part), (ids,))
        if before[0]:
            self._update_stats(conn, generation, before, (0, 0), [])
            self._take_seq_nos(conn, before[0])  # each delete is a write of the index
        return int(before[0])

    def _delete_matching(self, flt: Filter) -> int:
        from psycopg import sql

        keep, args = filter_condition(flt)  # a filter it cannot run is refused before a write
        delete = sql.SQL("DELETE FROM {} AS d WHERE {} RETURNING d.terms_length").format(
            self._part, keep
        )
        with self._write_turn(), self._connection() as conn, conn.transaction():
            generation = self._lock(conn)  # writers wait: none lands between finding and deleting
            lengths = [int(row[0] or 0) for row in conn.execute(delete, args).fetchall()]
            if lengths:  # the index's statistics, as delete(ids) keeps them
                self._update_stats(conn, generation, (len(lengths), sum(lengths)), (0, 0), [])
                self._take_seq_nos(conn, len(lengths))
        return len(lengths)

    def ids_matching(self, filter: FilterSpec) -> list[str]:
        from psycopg import sql

        keep, args = filter_condition(as_filter(filter, "filter"))
        query = sql.SQL("SELECT d.id FROM {} AS d WHERE {} ORDER BY d.id").format(self._part, keep)
        return [row[0] for row in self._all(query, args)]

    def count_matching(self, filter: FilterSpec) -> int:
        from psycopg import sql

        keep, args = filter_condition(as_filter(filter, "filter"))
        query = sql.SQL("SELECT count(*) FROM {} AS d WHERE {}").format(self._part, keep)
        return int(self._all(query, args)[0][0])

    def sort_values(
        self, filter: FilterSpec, fields: Sequence[str]
    ) -> list[tuple[str, list[list[Scalar]]]]:
        """One query: each passing document's id and, per field, the array of its values
        there (``field_values``, as aggregations read them): no document leaves the server."""
        from psycopg import sql

        builder = FilterSQL()
        keep = builder.condition(resolved(as_filter(filter, "filter")))
        each = [
            sql.SQL("(SELECT coalesce(jsonb_agg(f.v), '[]'::jsonb) FROM ({}) AS f)").format(
                builder.field_values(name)
            )
            for name in fields
        ]
        query = sql.SQL("SELECT {} FROM {} AS d WHERE {}").format(
            sql.SQL(", ").join([sql.SQL("d.id"), *each]), self._part, keep
        )
        return [(row[0], list(row[1:])) for row in self._all(query, builder.params)]

    def sort_columns(self, filter: FilterSpec, fields: Sequence[str]) -> SortTable:
        """One grouped query: the passing documents' ids, and each sort field's distinct
        values with the numbers of the documents holding them (``_sorting``)."""
        flt = resolved(as_filter(filter, "filter"))
        query, params = sort_columns_query(self._part, flt, fields)
        return sort_table(fields, self._all(query, params))

    def sort_candidates(
        self, filter: FilterSpec, sort: Sort, *, after: Sequence[Any] | None, limit: int
    ) -> SortTable:
        """Where each sort field holds at most one number in every passing document (one
        query says), the first ``limit`` after ``after`` ordered in SQL; else every passing
        document's values (``sort_columns``)."""
        flt = resolved(as_filter(filter, "filter"))
        fields = sort.fields
        if not pushable(sort):
            return self.sort_columns(flt, fields)
        with self._connection() as conn:
            query, params = single_numbers_query(self._part, flt, fields)
            if not conn.execute(query, params).fetchone()[0]:
                return self.sort_columns(flt, fields)
            kinds: dict[str, str | None] = dict.fromkeys(fields, "number")
            cursor = None if after is None else search_after_cursor(after, sort, kinds, keyed=False)
            query, params = ordered_query(self._part, flt, sort, cursor, limit)
            return candidates_table(fields, conn.execute(query, params).fetchall())

    def value_counts(self, field: str, within: Filter) -> ValueCounts:
        """One grouped query: each value at ``field`` of a document passing ``within``, the
        documents holding it and its occurrences (a rollup row, value NULL, counts the
        documents holding any)."""
        rows = self._field_values_grouped(
            "SELECT f.v, count(DISTINCT d.id), count(*) FROM {} AS d CROSS JOIN LATERAL ({}) "
            "AS f WHERE {} GROUP BY ROLLUP (f.v)",
            field,
            within,
        )
        documents = next((int(n) for value, n, _ in rows if value is None), 0)
        return counted((row for row in rows if row[0] is not None), documents)

    def value_sets(self, field: str, within: Filter) -> list[tuple[ValueKey, ...]]:
        """One grouped query: the distinct values at ``field`` of each document passing
        ``within`` that holds two or more (jsonb's distinct: 1 is 1.0, as ``value_counts``
        groups them)."""
        rows = self._field_values_grouped(
            "SELECT array_agg(DISTINCT f.v) FROM {} AS d CROSS JOIN LATERAL ({}) AS f "
            "WHERE {} GROUP BY d.id HAVING count(DISTINCT f.v) > 1",
            field,
            within,
        )
        return [tuple(value_key(v) for v in values) for (values,) in rows]

    def held_values(self, fields: Sequence[str], within: Filter) -> HeldValues:
        """One grouped query: how many documents pass ``within`` (numbered in a
        materialized CTE), and for each field each distinct value with the numbers of the
        documents holding it (a number again each time one repeats it), as packed int4s:
        a row per value, not per document (what sub-aggregations read)."""
        query, params = numbered_values_query(
            self._part,
            resolved(within),
            fields,
            kept="d.doc",
            first="SELECT count(*) FROM m",
            per_field="SELECT {}, f.v, string_agg(int4send(d.r::int4), ''::bytea), 0 FROM m AS d "
            "CROSS JOIN LATERAL ({}) AS f GROUP BY f.v",
        )
        return _held_of(fields, self._all(query, params))

    def _field_values_grouped(self, template: str, field: str, within: Filter) -> list[Any]:
        """The rows of ``template`` (placeholders: the partition, the values at ``field`` of
        a document, the condition of ``within``), the query ``value_counts`` and
        ``value_sets`` group differently."""
        from psycopg import sql

        builder = FilterSQL()
        keep = builder.condition(resolved(within))
        query = sql.SQL(template).format(self._part, builder.field_values(field), keep)
        return self._all(query, builder.params)

    def count_and_aggregate(
        self, within: Filter, aggs: Any | None
    ) -> tuple[int, dict[str, Any] | None]:
        """The count and each aggregation's statements in one transaction, where ``within``
        holds a long id list (a match query's matched documents): sent once, into a temporary
        table the statements read, not again as a parameter of each."""
        lists = [values for values in _id_lists(within) if len(values) > _ID_TABLE_ABOVE]
        if not lists:
            return super().count_and_aggregate(within, aggs)
        with self._connection() as conn, conn.transaction():
            tables = {id(values): self._id_table(conn, n, values) for n, values in enumerate(lists)}
            held, sent = _HELD.set((self, conn)), ID_TABLES.set(tables)
            try:
                return super().count_and_aggregate(within, aggs)
            finally:
                ID_TABLES.reset(sent)
                _HELD.reset(held)

    def _id_table(self, conn: Any, n: int, ids: frozenset[str]) -> str:
        """A temporary table (dropped at commit) holding ``ids``, copied in, analysed."""
        from psycopg import sql

        name = f"semrank_matched_{n}"
        table = sql.Identifier(name)
        conn.execute(
            sql.SQL("CREATE TEMP TABLE {} (id text PRIMARY KEY) ON COMMIT DROP").format(table)
        )
        with conn.cursor().copy(sql.SQL("COPY {} (id) FROM STDIN").format(table)) as copy:
            for doc_id in _storable(ids):  # others were refused at ingest: in no document
                copy.write_row((doc_id,))
        conn.execute(sql.SQL("ANALYZE {}").format(table))
        return name

    # --- reading ---------------------------------------------------------------------------
    def get(self, ids: Sequence[str]) -> list[dict[str, Any] | None]:
        from psycopg import sql

        wanted = id_list(ids)
        query = sql.SQL("SELECT id, doc FROM {} WHERE id = ANY(%s)").format(self._part)
        storable = _storable(wanted)
        found = dict(self._all(query, (storable,))) if storable else {}
        return [found.get(i) for i in wanted]

    def get_versioned(self, ids: Sequence[str]) -> list[VersionedDocument | None]:
        wanted = id_list(ids)
        storable = _storable(wanted)
        stored = self._stored(storable) if storable else {}
        return [_versioned(stored[i]) if i in stored else None for i in wanted]

    def iter_documents(
        self, *, batch_size: int = 1000, filter: FilterSpec | None = None
    ) -> Iterator[Document]:
        check_batch_size(batch_size)  # now, not at the first document
        # Built now: a filter PostgreSQL cannot run is refused before the first document.
        keep, args = filter_condition(optional_filter(filter))
        return self._documents_in_pages(batch_size, keep, args)

    def _documents_in_pages(
        self, batch_size: int, keep: Any, filter_args: dict[str, Any]
    ) -> Iterator[Document]:
        for rows in self._keyset_pages("d.id, d.doc", batch_size, keep, filter_args):
            for doc_id, doc in rows:
                yield Document(doc_id, doc)

    def matching_id_pages(self, filter: FilterSpec, page_size: int = 10_000) -> Iterator[list[str]]:
        check_batch_size(page_size)  # now, not at the first page
        keep, args = filter_condition(as_filter(filter, "filter"))  # refused now, not later
        pages = self._keyset_pages("d.id", page_size, keep, args)
        return ([row[0] for row in rows] for rows in pages)

    def _keyset_pages(
        self, columns: str, batch_size: int, keep: Any, filter_args: dict[str, Any]
    ) -> Iterator[list[Any]]:
        """Keyset pages (``columns``, the id first) by id (the primary key's order; the table
        keeps no insertion order), each its own short query: no cursor or transaction is held
        between pages. ``keep`` (the filter's condition) is in each page's query: only passing
        rows leave the server."""
        from psycopg import sql

        page = "SELECT {} FROM {} AS d WHERE d.index_name = %(index)s {} AND {} "
        page += "ORDER BY d.id LIMIT %(limit)s"
        wanted = sql.SQL(columns)  # the caller's constant column list
        first = sql.SQL(page).format(wanted, self._part, sql.SQL(""), keep)
        later = sql.SQL(page).format(wanted, self._part, sql.SQL("AND d.id > %(after)s"), keep)
        args = {"index": self.name, "limit": batch_size, **filter_args}
        rows = self._all(first, args)
        while rows:
            yield rows
            if len(rows) < batch_size:
                return
            rows = self._all(later, {**args, "after": rows[-1][0]})

    def written_since(self, ids: Sequence[str], generation: int) -> set[str]:
        from psycopg import sql

        query = sql.SQL("SELECT id FROM {} WHERE id = ANY(%s) AND generation > %s").format(
            self._part
        )
        storable = _storable(id_list(ids))
        return {row[0] for row in self._all(query, (storable, generation))} if storable else set()

    def __len__(self) -> int:
        return int(self._index_row("doc_count"))

    @property
    def generation(self) -> int:
        return int(self._index_row("generation"))

    def _index_row(self, column: str) -> Any:
        """One column of this index's row in ``semrank.indexes`` (gone once it is dropped)."""
        from psycopg import sql

        query = sql.SQL("SELECT {} FROM semrank.indexes WHERE name = %s").format(
            sql.Identifier(column)
        )
        row = self._one(query, self.name)
        if row is None:
            raise self._dropped()
        return row[0]

    @property
    def fields_seen(self) -> tuple[str, ...]:
        return tuple(self._index_row("fields_seen"))

    def has_hnsw(self) -> bool:
        row = self._one(
            "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = 'semrank' "
            "AND tablename = %s AND indexdef ILIKE '%%USING hnsw%%')",
            partition_name(self.name),
        )
        return bool(row[0])

    def created_at(self) -> object:
        """When this index's name was last created (None once dropped): a handle held across
        requests tells from it that the index was dropped and created again under its name."""
        row = self._one("SELECT created_at FROM semrank.indexes WHERE name = %s", self.name)
        return None if row is None else row[0]

    def info(self) -> IndexInfo:
        row = self._one(
            "SELECT doc_count, generation, embedding_dim, fields_seen, "
            "pg_total_relation_size(format('semrank.%%I', partition)::regclass) "
            "FROM semrank.indexes WHERE name = %s",
            self.name,
        )
        if row is None:
            raise self._dropped()
        hnsw = self.has_hnsw()
        return IndexInfo(
            name=self.name,
            backend=self.backend,
            location=f"{redact(self.dsn)} semrank.{partition_name(self.name)}",
            documents=int(row[0]),
            generation=int(row[1]),
            settings=self.settings,
            embedding_dim=row[2],
            vector_search=None if not self.has_vectors else "hnsw" if hnsw else "exact",
            fields_seen=tuple(row[3]),
            size_bytes=int(row[4]),
            derived={"fts": "gin (english tsvector)", "vectors": "hnsw" if hnsw else None},
        )

    # --- embeddings (``embedder`` / ``embed_queries`` are the base class's) ---------------
    def refresh(self) -> None:
        """Embed rows stored without a vector; build the HNSW index from ``ann_threshold`` on."""
        from psycopg import sql

        if self.has_vectors:
            self._catch_up_embeddings()
            if len(self) >= self.settings.ann_threshold and not self.has_hnsw():
                self._build_hnsw_if_owner()
        with self._connection() as conn:
            if self._statistics_stale(conn):
                conn.execute(sql.SQL("ANALYZE {}").format(self._part))
            conn.commit()

    def _statistics_stale(self, conn: Any) -> bool:
        """Whether the planner's statistics of the partition lag its rows: never gathered, or
        a tenth of them written since (autovacuum's own rule). ANALYZE after every write took
        0.4-0.8 s at 30,000 documents, and concurrent writers queued on its lock."""
        row = conn.execute(
            "SELECT n_mod_since_analyze, n_live_tup, last_analyze IS NULL AND "
            "last_autoanalyze IS NULL FROM pg_stat_user_tables WHERE relid = %s::regclass",
            (self._part_name,),
        ).fetchone()
        if row is None:
            return True
        modified, live, never = row
        return bool(never) or modified > STALE_STATISTICS_SHARE * max(live, 1)

    _has_iterative: bool | None = None  # the server's pgvector, asked once per handle

    def _iterative_scans(self, conn: Any) -> bool:
        if self._has_iterative is None:
            self._has_iterative = _has_iterative_scans(conn)
        return self._has_iterative

    def _build_hnsw_if_owner(self) -> None:
        """Only the partition's owner may add its HNSW index. A writer that is not (the roles
        docs/postgresql.md describes) had its documents committed and then failed (HTTP 503,
        and every later write too): its vector searches stay exact until the owner writes."""
        owner = self._one(
            "SELECT pg_has_role(relowner, 'USAGE') FROM pg_class WHERE oid = %s::regclass",
            self._part_name,
        )
        if owner is not None and owner[0]:
            self._build_hnsw()
            return
        if (self.dsn, self.name) not in _GRAPHS_LEFT:
            _GRAPHS_LEFT.add((self.dsn, self.name))
            _log.warning(
                "index %r has %s documents, past --ann-threshold, but this role does not own "
                "its table, so its HNSW index is not built and vector searches stay exact "
                "(slower); the next write by the owner of the semrank tables builds it",
                self.name,
                f"{len(self):,}",
            )

    def _build_hnsw(self) -> None:
        """The partition's HNSW index, built once: two writers crossing the threshold together
        both ran CREATE INDEX IF NOT EXISTS, and one failed on the catalog's unique key after
        its documents had been committed. The second now waits and finds it built."""
        from psycopg import sql

        part = partition_name(self.name)
        with self._connection() as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_HNSW_LOCK, part))
            conn.execute(
                sql.SQL(
                    "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw (embedding vector_cosine_ops)"
                ).format(sql.Identifier(part + "_hnsw"), self._part)
            )

    def _catch_up_embeddings(self, batch_size: int = 256) -> None:
        from psycopg import sql

        # Read on past the last id: a text PostgreSQL finds a non-space in (U+00A0, \x1c) but
        # Python's strip() calls blank gets no vector, and read again from the start it was
        # picked up forever.
        query = sql.SQL(
            "SELECT id, body FROM {} WHERE embedding IS NULL AND body ~ '[^[:space:]]' "
            "AND id > %s ORDER BY id LIMIT %s"
        ).format(self._part)
        # A row rewritten since it was read (its text changed) keeps what its writer stored.
        update = sql.SQL(
            "UPDATE {} SET embedding = %s::vector, generation = %s WHERE id = %s AND body = %s"
        ).format(self._part)
        after = ""
        while rows := self._all(query, (after, batch_size)):
            after = rows[-1][0]
            rows = [row for row in rows if row[1].strip()]
            if not rows:
                continue
            vectors = self._embed([row[1] for row in rows])
            with self._write_turn(), self._connection() as conn, conn.transaction():
                generation = self._lock(conn)
                with conn.cursor() as cur:
                    cur.executemany(
                        update,
                        [
                            (v, generation, i, body)
                            for (i, body), v in zip(rows, vectors, strict=True)
                        ],
                    )
                self._update_stats(conn, generation, (0, 0), (0, 0), [])

    # --- retrieval -------------------------------------------------------------------------
    def search_bm25(
        self, query: str, *, k: int, field: str = ALL_TEXT_FIELDS, filter: FilterSpec | None = None
    ) -> Hits:
        check_search(query, k)
        self.check_field(field)
        return self._bm25_hits(query, field, k, optional_filter(filter))

    def _bm25_hits(self, query: str, field: str, k: int, flt: Filter | None = None) -> Hits:
        """The best ``k`` by BM25 (``k`` unchecked: multi-field search asks for every hit) of
        the documents passing ``flt`` (which leaves the corpus statistics as they are)."""
        query = query.replace("\x00", " ")  # PostgreSQL text holds no NUL; no term holds one
        params = self.settings.bm25
        _check_bm25_method(self.settings.bm25)
        keep, filter_args = filter_condition(flt)
        terms = q.analyse([query], params)[0]
        if not terms:
            return Hits.empty()
        self._analyse_older_fields([field])
        sql_query = q.bm25_query(self._part, None if field == ALL_TEXT_FIELDS else field, keep)
        args = {"terms": terms, "index": self.name, "k1": params.k1, "b": params.b, "k": k}
        args.update(filter_args)
        return _hits(self._all(sql_query, args))

    def _analyse_older_fields(self, fields: Sequence[str]) -> None:
        """Give the rows written before migration 4 (NULL ``field_terms``) their per-field
        terms, once, the first time one of ``fields`` other than all text fields is searched:
        in batches, each under the index's lock, so a writer waits rather than races. Later
        writes store them, and a semrank without the migration refuses the database."""
        import psycopg

        if self._fields_analysed or all(f == ALL_TEXT_FIELDS for f in fields):
            return
        try:
            self._give_older_rows_field_terms()
        except psycopg.errors.InsufficientPrivilege as exc:
            raise self._cannot_analyse(exc) from exc
        self._fields_analysed = True

    def _give_older_rows_field_terms(self) -> None:
        from psycopg import sql
        from psycopg.types.json import Jsonb

        older = sql.SQL(
            "SELECT id, doc FROM {} WHERE field_terms IS NULL ORDER BY id LIMIT %s"
        ).format(self._part)
        update = sql.SQL("UPDATE {} SET field_terms = %s, field_lengths = %s WHERE id = %s")
        batch = OLDER_ROWS_BATCH
        while batch == OLDER_ROWS_BATCH:
            with self._write_turn(), self._connection() as conn, conn.transaction():
                self._lock(conn)
                rows = conn.execute(older, (OLDER_ROWS_BATCH,)).fetchall()
                per_field = q.analyse_fields([doc for _, doc in rows], self.settings.bm25)
                with conn.cursor() as cur:
                    cur.executemany(
                        update.format(self._part),
                        [
                            (Jsonb(terms), Jsonb(lengths), i)
                            for (i, _), (terms, lengths) in zip(rows, per_field, strict=True)
                        ],
                    )
            batch = len(rows)

    def _cannot_analyse(self, exc: BaseException) -> BackendUnavailableError:
        """A role that may not write the rows ``_analyse_older_fields`` gives their terms: told
        which command does (one search as a role that may)."""
        return BackendUnavailableError(
            f"index {self.name!r} holds documents written before this semrank, which a search "
            f"of one field needs analysed once, and the PostgreSQL role of {redact(self.dsn)} "
            f"may not update them ({' '.join(str(exc).split())[:200]}): run `semrank search "
            f"{self.name} anything --field FIELD --store DSN` once as a role that may write "
            "semrank.documents (docs/postgresql.md, 'Roles')",
            client_message=NOT_PERMITTED,
        )

    def search_bm25_fields(
        self,
        query: str,
        *,
        k: int,
        fields: Sequence[tuple[str, float]],
        mode: str = "best_fields",
        filter: FilterSpec | None = None,
    ) -> Hits:
        """Exact multi-field BM25: each field scores every document sharing a term with the
        query (a field's BM25 scans the table anyway), combined per document; combining each
        field's top 4k left "most_fields" sums short, and wrong top hits with them."""
        check_fields_search(query, k, fields, mode)
        for name, _boost in fields:
            self.check_field(name)
        flt = optional_filter(filter)
        flt = None if flt is None else resolved(flt)  # one present for every field's query
        every = max(1, len(self))  # may be past the k a caller can ask for (check_k)
        per_field = [(self._bm25_hits(query, name, every, flt), boost) for name, boost in fields]
        return combine_field_hits(per_field, mode, k)

    def count_bm25(
        self,
        query: str,
        *,
        fields: Sequence[tuple[str, float]] = ((ALL_TEXT_FIELDS, 1.0),),
        mode: str = "best_fields",
        filter: FilterSpec | None = None,
    ) -> int:
        """One count(*) of the documents sharing a term with ``query`` in a field boosted
        above 0 (the lucene BM25 of each such document is above 0, so in either mode) and
        passing ``filter``; over all text fields the GIN index on ``terms`` finds them."""
        from psycopg import sql

        matching = self._bm25_matching(query, fields, mode, filter)
        if matching is None:  # every field boosted to 0: no document scores
            return 0
        count = sql.SQL("SELECT count(*) FROM {} AS d WHERE {}").format(self._part, matching[0])
        return int(self._all(count, matching[1])[0][0])

    def ids_bm25(
        self,
        query: str,
        *,
        fields: Sequence[tuple[str, float]] = ((ALL_TEXT_FIELDS, 1.0),),
        mode: str = "best_fields",
        filter: FilterSpec | None = None,
    ) -> list[str]:
        from psycopg import sql

        matching = self._bm25_matching(query, fields, mode, filter)
        if matching is None:
            return []
        found = sql.SQL("SELECT d.id FROM {} AS d WHERE {}").format(self._part, matching[0])
        return [row[0] for row in self._all(found, matching[1])]

    def _bm25_matching(
        self,
        query: str,
        fields: Sequence[tuple[str, float]],
        mode: str,
        filter: FilterSpec | None,
    ) -> tuple[Any, dict[str, Any]] | None:
        """The condition ``count_bm25`` counts by, and its parameters (None: no document
        can score, every field boosted to 0)."""
        from psycopg import sql

        check_fields_search(query, 1, fields, mode)
        _check_bm25_method(self.settings.bm25)
        for name, _boost in fields:
            self.check_field(name)
        query = query.replace("\x00", " ")  # PostgreSQL text holds no NUL; no term holds one
        keep, args = filter_condition(optional_filter(filter))
        args.update(terms=q.analyse([query], self.settings.bm25)[0])
        self._analyse_older_fields([name for name, boost in fields if boost > 0])
        each = [
            q.shares_a_term(None if name == ALL_TEXT_FIELDS else name)
            for name, boost in fields
            if boost > 0
        ]
        if not each:
            return None
        return sql.SQL("({}) AND {}").format(sql.SQL(" OR ").join(each), keep), args

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
        ef_search = min(HNSW_EF_SEARCH_MAX, max(40, k, num_candidates or 0))
        # Checked and made unit length as the embedded store does: pgvector answered a wrong
        # dimension with an internal error, and an all-zero vector with NaN scores.
        query = unit_query_vector(vector, VECTOR_DIM)
        keep, filter_args = filter_condition(flt)
        args = {"vector": q.vector_literal(query), "k": k, **filter_args}
        iterate = k > ef_search or flt is not None
        rows = self._knn(q.knn_query(self._part, keep), args, ef_search, iterate=iterate)
        if flt is not None and len(rows) < k and self.has_hnsw():
            # The HNSW scan filters the graph's nearest rows: past max_scan_tuples of them (or
            # past ef_search before pgvector 0.8) a selective filter had left fewer than k.
            rows = self._knn(q.knn_query(self._part, keep, exact=True), args, ef_search)
        return _hits(rows)

    def _knn(
        self, knn: Any, args: dict[str, Any], ef_search: int, *, iterate: bool = False
    ) -> list[tuple[str, float]]:
        with self._connection() as conn, conn.transaction():
            # Only read by the HNSW index scan; exact scans ignore them.
            conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef_search),))
            if iterate and self._iterative_scans(conn):
                # The scan stopped at ef_search rows (k=1200 returned 1000; a filter passed a
                # few of them): pgvector 0.8 scans on, in exact distance order, up to
                # max_scan_tuples rows.
                conn.execute(
                    "SELECT set_config('hnsw.iterative_scan', 'strict_order', true), "
                    "set_config('hnsw.max_scan_tuples', %s, true)",
                    (str(max(HNSW_MAX_SCAN_TUPLES, 4 * args["k"])),),
                )
            rows: list[tuple[str, float]] = conn.execute(knn, args).fetchall()
        return rows


def _has_iterative_scans(conn: Any) -> bool:
    """Whether the server's pgvector continues HNSW scans past ef_search (0.8.0 on)."""
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    parts = (row[0] if row else "0").split(".")
    return tuple(int(p) for p in parts[:2] if p.isdigit()) >= (0, 8)


# Ids are a btree key (with the index name): PostgreSQL refuses keys over about 2.7 kB.
MAX_ID_BYTES = 2000


def _check_id_lengths(ids: Iterable[str]) -> None:
    long = next((i for i in ids if len(i.encode("utf-8")) > MAX_ID_BYTES), None)
    if long is not None:
        raise DataFormatError(
            f"document id {long[:60]!r}... is {len(long.encode('utf-8')):,} bytes; the "
            f"PostgreSQL store keeps ids of up to {MAX_ID_BYTES:,} bytes (they are a btree key): "
            "use a shorter id, such as a digest of this one"
        )


def _check_bm25_method(bm25: BM25Params) -> None:
    method = bm25.method
    if method != "lucene":
        raise InvalidInputError(
            f"the PostgreSQL store scores BM25 with the lucene method, not {method!r}; create "
            "the index with --bm25-method lucene (or on the embedded store)"
        )


def _refuse_an_alias_name(conn: Any, name: str) -> None:
    """An index is not created with an alias's name (the table locked against an alias being
    added meanwhile under it)."""
    from semrank.store.postgres._aliases import INDEX_CREATE_LOCK

    conn.execute(INDEX_CREATE_LOCK)
    row = conn.execute(
        "SELECT index_name FROM semrank.aliases WHERE alias = %s", (name,)
    ).fetchone()
    if row is not None:
        raise InvalidInputError(
            f"{name!r} is an alias of index {row[0]!r}, and an index cannot take an alias's name; "
            f"choose another name, or remove alias {name!r} first"
        )


def _exists(name: str, dsn: str) -> IndexExistsError:
    return IndexExistsError(f"index {name!r} already exists in {redact(dsn)}; drop it first")


def check_postgres_can_create(dsn: str, name: str, bm25: BM25Params) -> None:
    """What would refuse creating index ``name`` in ``dsn``'s database (a BM25 method SQL does
    not compute, a taken name, a server out of reach), said before a corpus is read through for
    it: the embedded store's name is checked then too, and a large file takes minutes to check."""
    from semrank.store._aliases import refuse_alias_name

    _check_bm25_method(bm25)
    if name in list_postgres_indexes(dsn):
        raise _exists(name, dsn)
    refuse_alias_name(name, None, dsn)


def list_postgres_indexes(dsn: str) -> list[str]:
    """Names of the indexes in ``dsn``'s database."""
    pool = acquire_pool(dsn)
    try:
        ensure_migrated(pool, dsn)
        with pooled_connection(pool, dsn) as conn:
            return [row[0] for row in conn.execute("SELECT name FROM semrank.indexes ORDER BY 1")]
    finally:
        release_pool(dsn)


def drop_postgres_index(dsn: str, name: str) -> None:
    """Delete an index: its row and its partition, in one transaction."""
    from psycopg import sql

    pool = acquire_pool(dsn)
    try:
        ensure_migrated(pool, dsn)
        with pooled_connection(pool, dsn) as conn, conn.transaction():
            row = conn.execute(
                "DELETE FROM semrank.indexes WHERE name = %s RETURNING partition", (name,)
            ).fetchone()
            if row is None:
                raise IndexNotFoundError(f"index {name!r} not found in {redact(dsn)}")
            conn.execute(
                sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier("semrank", row[0]))
            )
    finally:
        release_pool(dsn)


def _same_json(stored: Any, given: Any) -> bool:
    """Equal as JSON values: Python's == takes True for 1 and 10 for 10.0, so a document whose
    values changed type was reported skipped and kept as it was."""
    if isinstance(stored, dict) and isinstance(given, dict):
        return stored.keys() == given.keys() and all(
            _same_json(stored[k], given[k]) for k in stored
        )
    if isinstance(stored, list) and isinstance(given, list):
        return len(stored) == len(given) and all(map(_same_json, stored, given))
    kinds = (bool, float)  # a bool is an int, and an int equals a float, to Python only
    return all(isinstance(stored, k) == isinstance(given, k) for k in kinds) and stored == given


def _held_of(fields: Sequence[str], rows: list[Any]) -> HeldValues:
    """``held_values``' answer: the row of ``-1`` holds the count, each other a field's
    value and its documents' numbers (big-endian int4s)."""
    size = next(int(count) for n, _, _, count in rows if n == -1)
    found: dict[int, tuple[list[Any], list[np.ndarray]]] = {n: ([], []) for n in range(len(fields))}
    for n, value, numbers, _ in rows:
        if n >= 0:
            found[n][0].append(value)
            found[n][1].append(int4s(numbers))
    held = {}
    for n, field in enumerate(fields):
        values, numbered = found[n]
        groups = np.repeat(np.arange(len(values)), [len(r) for r in numbered])
        every = np.concatenate(numbered) if numbered else np.empty(0, dtype=np.int64)
        held[field] = held_field(values, groups, every, size)
    return HeldValues(size, held)
