"""The ``Store`` interface: what the search pipeline needs from an index.

``LocalStore`` (SQLite + bm25s + numpy/usearch files) implements it; a PostgreSQL backend
(e.g. pg_search BM25 + pgvector) can implement the same methods and plug into the pipeline.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import itertools
import json
import logging
import os
import shlex
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Self, cast

import numpy as np

from semrank._checks import (
    MAX_COUNT,
    MAX_WEIGHT,
    array_dicts_equal,
    field_key,
    is_finite_number,
    is_id_value,
    is_int,
    is_valid_unicode,
    not_an_id,
    require_collection,
    require_flags,
    require_unicode,
)
from semrank._process import process_alive, process_start_time
from semrank._words import count_of
from semrank.errors import (
    DataFormatError,
    IndexModelChangedError,
    IndexVersionError,
    InvalidInputError,
    ModelLoadError,
    ModelNotFoundError,
    VersionConflictError,
)
from semrank.retrieve import (
    BM25Params,
    Filter,
    FilterSpec,
    Hits,
    TextEmbedder,
    as_filter,
    document_values,
    matches,
    matches_everything,
    optional_filter,
    resolved,
)
from semrank.retrieve._aggregated import counts_of, sets_of
from semrank.retrieve._aggs import (
    ValueCounts,
    ValueKey,
    aggregate,
    parse_aggs,
)
from semrank.retrieve._bm25 import ANALYSIS_VERSIONS
from semrank.retrieve._filter import MatchAll, Scalar
from semrank.retrieve._held import HeldValues, held_lists

if TYPE_CHECKING:
    from semrank.retrieve._sort import Sort
    from semrank.retrieve._sort_columns import SortTable
from semrank.store._corpus import Document, IngestChecks, documents_from

log = logging.getLogger("semrank.store")

ALL_TEXT_FIELDS = "*"  # the field name meaning "all text fields, concatenated"
VECTOR_FIELD = "embedding"  # the name knn retrievers use for the stored embeddings

ProgressCallback = Callable[[int], None]
# update_documents' change: each id's stored fields (None: not in the index) -> the fields each
# id it changes should have (None: delete it).
FoundDocuments = dict[str, dict[str, Any] | None]
DocumentChange = Callable[[FoundDocuments], Mapping[str, dict[str, Any] | None]]

PRIMARY_TERM = 1  # Elasticsearch's primary term: semrank's one "shard" never changes primary


@dataclass(frozen=True, kw_only=True)
class DocumentVersion:
    """A stored document's ``version`` (1 when created, +1 per write that changed it, or the
    number a write gave it) and ``seq_no``, the index's number of its last write (every write
    and delete of the index takes the next): Elasticsearch's ``_version``, ``_seq_no`` and
    ``_primary_term``."""

    version: int
    seq_no: int
    primary_term: int = PRIMARY_TERM


@dataclass(frozen=True, kw_only=True)
class VersionedDocument:
    fields: dict[str, Any]
    version: DocumentVersion


@dataclass(frozen=True, kw_only=True)
class NewVersion:
    """What a versioned change makes of one id: its ``fields`` (None: delete it) and the
    ``version`` it then has (None: its stored version + 1, 1 when new)."""

    fields: dict[str, Any] | None
    version: int | None = None


FoundVersions = dict[str, VersionedDocument | None]
VersionedChange = Callable[[FoundVersions], Mapping[str, NewVersion]]


@dataclass(frozen=True, kw_only=True)
class VersionedCounts:
    """What ``update_versioned`` did: the write's ``counts``, the ``versions`` of every id it
    wrote or deleted (ids left as they were are not in it), and how many it ``deleted``."""

    counts: UpsertCounts
    versions: dict[str, DocumentVersion]
    deleted: int


@dataclass(frozen=True, kw_only=True)
class UnchangedDeletes:
    """What ``delete_unchanged`` did: how many it ``deleted``, and the ids it left because
    they were written or deleted since they were read (``conflicts``: each one's version now,
    None where it is gone)."""

    deleted: int
    conflicts: dict[str, DocumentVersion | None]


@dataclass(frozen=True, kw_only=True)
class Expected:
    """A condition on one document for a conditional write: it must be stored with this
    ``seq_no`` (and ``primary_term``), and/or this ``version``; checked in the write's own
    transaction, a ``VersionConflictError`` where it fails (nothing of the call is written)."""

    seq_no: int | None = None
    primary_term: int = PRIMARY_TERM
    version: int | None = None

    def check(self, doc_id: str, found: DocumentVersion | None) -> None:
        if self.seq_no is not None:
            required = f"required seqNo [{self.seq_no}], primary term [{self.primary_term}]"
            if found is None:
                raise VersionConflictError(
                    f"[{doc_id}]: version conflict, {required}. but no document was found"
                )
            if (found.seq_no, found.primary_term) != (self.seq_no, self.primary_term):
                raise VersionConflictError(
                    f"[{doc_id}]: version conflict, {required}. current document has seqNo "
                    f"[{found.seq_no}] and primary term [{found.primary_term}]"
                )
        if self.version is None:
            return
        if found is None:
            raise VersionConflictError(
                f"[{doc_id}]: version conflict, document does not exist (expected version "
                f"[{self.version}])"
            )
        if found.version != self.version:
            raise VersionConflictError(
                f"[{doc_id}]: version conflict, current version [{found.version}] is "
                f"different than the one provided [{self.version}]"
            )


def unchanged_split(
    now: Mapping[str, DocumentVersion | None], seen: Mapping[str, int]
) -> tuple[list[str], dict[str, DocumentVersion | None]]:
    """The ids of ``seen`` stored ``now`` with the ``seq_no`` seen, and the others (written or
    deleted since) with their version now (None: gone)."""
    gone: list[str] = []
    left: dict[str, DocumentVersion | None] = {}
    for doc_id, seq_no in seen.items():
        version = now.get(doc_id)
        if version is not None and version.seq_no == seq_no:
            gone.append(doc_id)
        else:
            left[doc_id] = version
    return gone, left


def check_expected(found: FoundVersions, expected: Mapping[str, Expected]) -> None:
    """Every condition of ``expected`` holds for ``found`` (the ids a write read)."""
    for doc_id, condition in expected.items():
        if doc_id not in found:
            raise InvalidInputError(
                f"a condition names id {doc_id!r}, which the write does not write; give "
                "conditions only for its documents"
            )
        stored = found[doc_id]
        condition.check(doc_id, None if stored is None else stored.version)


# The highest version (Elasticsearch's, a Java long; a bigint column on PostgreSQL).
MAX_VERSION = 2**63 - 1


def new_version(
    found: VersionedDocument | None, given: int | None, doc_id: str = "", *, delete: bool = False
) -> int:
    """The version a write gives a document: ``given``, else the stored one + 1 (1 when new)."""
    if given is None:
        last = None if found is None else found.version.version
        return next_version(doc_id, last, delete=delete)
    if not 0 <= given <= MAX_VERSION:
        raise InvalidInputError(
            f"[{doc_id}]: version {given} is out of range: a version is from 0 to {MAX_VERSION}"
        )
    return given


def next_version(doc_id: str, last: int | None, *, delete: bool = False) -> int:
    """The version a write without one of its own gives a document stored at ``last`` (None:
    none stored): ``last`` + 1, refused at ``MAX_VERSION`` (past it SQLite stored a float and
    PostgreSQL failed the statement), but for a ``delete``, which stores no version."""
    if last is None:
        return 1
    if last >= MAX_VERSION:
        if delete:
            return MAX_VERSION
        raise version_overflow(doc_id)
    return last + 1


def version_overflow(doc_id: str) -> InvalidInputError:
    return InvalidInputError(
        f"[{doc_id}]: the document is at version {MAX_VERSION}, the highest a version may be, "
        "so a write cannot add 1 to it: give the write its own version (Elasticsearch: "
        f"version={MAX_VERSION}&version_type=external_gte; the library: update_versioned with "
        "NewVersion(version=...)), or delete the document and write it again (it starts at 1)"
    )


def written_versions(
    found: FoundVersions, changes: DocumentChanges, written: Sequence[str], first_seq_no: int
) -> dict[str, DocumentVersion]:
    """The versions of the ids ``written`` then ``changes.gone`` deleted, whose writes took
    sequence numbers from ``first_seq_no`` on, in that order."""
    done = [*written, *changes.gone]
    gone = set(changes.gone)
    return {
        doc_id: DocumentVersion(
            version=new_version(
                found[doc_id], changes.versions.get(doc_id), doc_id, delete=doc_id in gone
            ),
            seq_no=first_seq_no + n,
        )
        for n, doc_id in enumerate(done)
    }


def _plain_change(
    change: DocumentChange, expected: Mapping[str, Expected] | None
) -> VersionedChange:
    """``update_documents``' change as a versioned one, checking ``expected`` first."""

    def versioned(found: FoundVersions) -> dict[str, NewVersion]:
        if expected:
            check_expected(found, expected)
        fields = {i: None if d is None else d.fields for i, d in found.items()}
        return {i: NewVersion(fields=f) for i, f in change(fields).items()}

    return versioned


# A fixed text embedded with the index's model when its first vectors are made; bf16 and fp32
# runs of one model agree to 1 - cos < 1e-4, a retrained model far less.
PROBE_TEXT = "semrank probe: how do cross-encoders re-rank search results?"
PROBE_MIN_COSINE = 0.999


@dataclass(frozen=True, kw_only=True)
class IndexSettings:
    """Fixed at creation: what is searched, embedded and how BM25 scores."""

    name: str
    text_fields: tuple[str, ...] = ("title", "text")
    id_field: str | None = "id"
    embedding_model: str | None = None  # None: BM25 only
    embedding_max_length: int | None = None  # None: the model's own maximum
    bm25: BM25Params = field(default_factory=BM25Params)
    ann_threshold: int = 20_000

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "text_fields": list(self.text_fields),
            "id_field": self.id_field,
            "embedding_model": self.embedding_model,
            "embedding_max_length": self.embedding_max_length,
            "bm25": self.bm25.to_dict(),
            "ann_threshold": self.ann_threshold,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> IndexSettings:
        """Settings as an index stored them; refused (``IndexVersionError``) where a newer
        semrank wrote a setting this one does not know: read without it, the index would be
        searched and written as it was not built (no setting was ever removed, so an unknown
        one is a newer one)."""
        _refuse_newer_settings(data)
        return IndexSettings(
            name=data["name"],
            text_fields=tuple(data["text_fields"]),
            id_field=data.get("id_field"),
            embedding_model=data.get("embedding_model"),
            embedding_max_length=data.get("embedding_max_length"),
            bm25=BM25Params.from_dict(data.get("bm25", {})),
            ann_threshold=int(data.get("ann_threshold", 20_000)),
        )


def _refuse_newer_settings(data: dict[str, Any]) -> None:
    bm25 = data.get("bm25") or {}
    unknown = [key for key in data if key not in IndexSettings.__dataclass_fields__]
    unknown += [f"bm25.{key}" for key in bm25 if key not in BM25Params.__dataclass_fields__]
    analysis = bm25.get("analysis")
    if isinstance(analysis, int) and analysis > ANALYSIS_VERSIONS[-1]:
        unknown.append(f"bm25.analysis {analysis}")
    if unknown:
        name = data.get("name")
        raise IndexVersionError(
            f"index {name!r} was written by a newer semrank (settings this one does not "
            f"know: {', '.join(unknown)}): install the newer semrank (from its checkout or "
            "wheel: pip install -U .) to open it; the index is left as it is"
        )


@dataclass(frozen=True, kw_only=True)
class UpsertCounts:
    """What an upsert did: ``documents`` distinct ids read, ``written`` of them new or changed
    (the rest were stored already as given, and skipped); ``unread_fields``: fields holding
    text that the index keeps but does not search or embed (not its text fields), new to the
    index (``unread_fields_warning`` says so)."""

    documents: int
    written: int
    unread_fields: tuple[str, ...] = ()
    # Of the documents written: how many had their text embedded with the index's model, and
    # how many were stored with a vector the caller gave (``upsert_counted(vectors=...)``).
    embedded: int = 0
    vectors_given: int = 0


class BatchCounts(NamedTuple):
    """What ``Store._write_batch_given`` did with one batch (see ``UpsertCounts``)."""

    documents: int
    written: int
    embedded: int
    vectors_given: int


@dataclass(frozen=True, kw_only=True)
class DocumentChanges:
    """What an ``update_documents`` change answered, checked as an upsert checks its records:
    the ``documents`` to write, the ids ``gone`` (deleted), and the ``checks`` that read them."""

    documents: list[Document]
    gone: list[str]
    checks: IngestChecks
    versions: dict[str, int | None] = field(default_factory=dict)  # ids' versions given


def unread_fields_warning(
    index: Store, unread: Sequence[str], *, records: str, search: str, create: str
) -> str:
    """What to tell whoever wrote ``records`` (e.g. "the documents") holding text in the
    ``unread`` fields of ``index``: a search for that text finds nothing. ``search`` and
    ``create``: the caller's spelling of a search on one field and of an index's text fields."""
    return (
        f"{records} hold text in {', '.join(unread)}, which index {index.name!r} keeps but "
        f"does not search or embed (its text fields: {', '.join(index.settings.text_fields)}); "
        f"search them with {search}, or create an index with {create} naming them"
    )


def check_batch_size(batch_size: object) -> None:
    if not is_int(batch_size, at_least=1):
        raise InvalidInputError(f"batch_size must be a positive integer, got {batch_size!r}")


def _batches(records: Iterable[Document], size: int) -> Iterator[list[Document]]:
    batch: list[Document] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass(frozen=True, kw_only=True)
class IndexInfo:
    """A summary for ``semrank index info``."""

    name: str
    backend: str
    location: str
    documents: int
    generation: int
    settings: IndexSettings
    embedding_dim: int | None
    vector_search: str | None  # "exact" | "hnsw" | None
    fields_seen: tuple[str, ...]
    size_bytes: int
    derived: dict[str, Any]
    # Ingests of a file that have not finished: {file: mark} (see ``Store.begin_ingest``).
    unfinished_ingests: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "backend": self.backend,
            "location": self.location,
            "documents": self.documents,
            "generation": self.generation,
            "settings": self.settings.to_dict(),
            "embedding_dim": self.embedding_dim,
            "vector_search": self.vector_search,
            "fields_seen": list(self.fields_seen),
            "size_bytes": self.size_bytes,
            "derived": self.derived,
            "unfinished_ingests": self.unfinished_ingests,
        }


MULTI_FIELD_MODES = ("best_fields", "most_fields")


def check_field_mode(mode: object) -> None:
    if mode not in MULTI_FIELD_MODES:
        raise InvalidInputError(
            f"unknown multi-field mode {mode!r}; use best_fields or most_fields"
        )


def combine_field_hits(per_field: Sequence[tuple[Hits, float]], mode: str, k: int) -> Hits:
    """The best ``k`` documents by the max ("best_fields") or the sum ("most_fields") of their
    fields' ``boost * score``; a document scoring nothing (a field boosted to 0) is no hit."""
    combined: dict[object, float] = {}
    for hits, boost in per_field:
        for doc_id, score in zip(hits.ids.tolist(), hits.scores.tolist(), strict=True):
            value = boost * score
            old = combined.get(doc_id)
            combined[doc_id] = (
                value
                if old is None
                else (max(old, value) if mode == "best_fields" else old + value)
            )
    kept = {doc_id: score for doc_id, score in combined.items() if score > 0}
    ids = np.empty(len(kept), dtype=object)
    ids[:] = list(kept)
    return Hits.from_scores(ids, np.array(list(kept.values()), dtype=np.float32)).top(k)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """``vectors`` with every row of another length than 1 made unit length: the stores compare
    by inner product, a cosine only between unit vectors (an embedding model without a
    Normalize step, a "dot" model, returns longer ones). Unit rows are left bit for bit."""
    norms = np.linalg.norm(vectors, axis=1)
    off = np.abs(norms - 1.0) > 1e-3
    if not off.any():
        return vectors
    fixed = np.array(vectors, dtype=np.float32)
    fixed[off] /= np.clip(norms[off], 1e-12, None)[:, None]
    return fixed


def given_vectors(ids: Sequence[str], vectors: Mapping[str, np.ndarray]) -> np.ndarray:
    """The vectors given for ``ids`` (each in ``vectors``) as unit rows of one matrix, or a
    DataFormatError naming the first that is not a finite vector of the others' length."""
    rows = [np.asarray(vectors[i], dtype=np.float32) for i in ids]
    dim = rows[0].shape
    for doc_id, row in zip(ids, rows, strict=True):
        if row.ndim != 1 or row.shape != dim or not row.size or not np.isfinite(row).all():
            raise DataFormatError(
                f"the vector given for document {doc_id!r} has shape {row.shape} (or is not "
                f"finite); give each a finite 1-d vector of {dim[0] if dim else 'one'} numbers"
            )
    return unit_rows(np.stack(rows))


def field_value(fields: dict[str, Any], name: str) -> Any:
    """The value of field ``name`` (None when missing), its key matched under Unicode NFC: an
    index's fields named as typed (composed) read a CSV header saved decomposed."""
    key = field_key(fields, name)
    return None if key is None else fields[key]


def field_text(fields: dict[str, Any], name: str) -> str:
    """The text of one field as indexed: strings as they are, lists joined, numbers as text,
    None empty (every word of a list is a word of the document, line breaks included)."""
    value = field_value(fields, name)
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return " ".join(field_text({"v": v}, "v") for v in value)
    return str(value)


def rerank_field_text(fields: dict[str, Any], name: str) -> str:
    """The text of one field as the re-ranking API reads it (``Reranker.rerank``'s documents):
    strings as they are, numbers and booleans as ``str()``, None empty, lists and objects as
    their JSON, so a stored document re-ranked by a search scores as it does sent to /v1/rerank
    (Python's str() gave 'True' and quotes)."""
    value = field_value(fields, name)
    if value is None:
        return ""
    if isinstance(value, str | int | float | bool):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str)


@dataclass(frozen=True, kw_only=True)
class PreparedArrays:
    """One table of arrays stored by ``Store.save_prepared``: ``version`` changes whenever it is
    stored again."""

    name: str
    version: str
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PreparedArrays):
            return NotImplemented
        said = (self.name, self.version, self.meta) == (other.name, other.version, other.meta)
        return said and array_dicts_equal(self.arrays, other.arrays)


# Loading an embedding model takes seconds and hundreds of MB: one load at a time.
_EMBEDDER_LOAD_LOCK = threading.Lock()


class Store(abc.ABC):
    """A named document index with BM25 and (optionally) dense retrieval."""

    settings: IndexSettings
    backend: ClassVar[str] = "custom"  # its name in index info and messages ("local", ...)
    keeps_prepared = False  # whether save_prepared / prepared keep tables (the local store)

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def has_vectors(self) -> bool:
        return self.settings.embedding_model is not None

    # --- documents -------------------------------------------------------------------------
    def upsert(
        self,
        documents: Iterable[Document | dict[str, Any]],
        *,
        batch_size: int = 256,
        progress: ProgressCallback | None = None,
        refresh: bool = True,
        expected: Mapping[str, Expected] | None = None,
    ) -> int:
        """Insert or replace documents by id, committing every ``batch_size``; returns the count.
        ``expected``: conditions on some of the documents (``Expected``, e.g. the ``seq_no``
        read with them by ``get_versioned``), checked in the write's transaction: the whole
        call is then one transaction, and one failed condition raises
        ``VersionConflictError`` with nothing written.

        Each batch is one transaction (``_write_batch``), so an interrupted ingest keeps every
        batch committed before it. Records are checked (``IngestChecks``) as they are read; a
        list is checked whole before anything is written. Text in fields the index does not
        search (``UpsertCounts.unread_fields``) is logged as a warning on ``semrank.store``.
        """
        if expected is not None:
            counts = self._upsert_expected(documents, expected)
        else:
            counts = self.upsert_counted(
                documents, batch_size=batch_size, progress=progress, refresh=refresh
            )
        if counts.unread_fields:  # a search for that text would find nothing, silently
            log.warning(
                unread_fields_warning(
                    self,
                    counts.unread_fields,
                    records="the documents",
                    search="field=NAME",
                    create="create_index(..., fields=[...])",
                )
            )
        return counts.documents

    def upsert_counted(
        self,
        documents: Iterable[Document | dict[str, Any]],
        *,
        batch_size: int = 256,
        progress: ProgressCallback | None = None,
        refresh: bool = True,
        vectors: Mapping[str, np.ndarray] | None = None,
    ) -> UpsertCounts:
        """``upsert``, saying how many of the documents were written (the others were stored
        already, unchanged, and skipped). ``vectors``: by id, the vector to store for a
        document rather than embedding its text (the vector this index's model gives the text
        it embeds: its text fields joined, ``text_of``), as ``reindex`` copies them from an
        index of the same model; the other documents are embedded."""
        check_batch_size(batch_size)
        require_flags(refresh=refresh)
        checks = IngestChecks(self.settings.text_fields)
        records = checks.checked(documents_from(documents, self.settings.id_field or "id"))
        if isinstance(documents, Sequence):  # checked whole, this store's limits too
            listed = list(records)
            for record in listed:
                self.check_storable(record)
            records = iter(listed)
        seen = set(self.fields_seen)  # before the writes: fields kept before were said then
        done = BatchCounts(0, 0, 0, 0)
        for batch in _batches(records, batch_size):
            step = self._write_batch_given(batch, progress, vectors or {})
            done = BatchCounts(*(a + b for a, b in zip(done, step, strict=True)))
        if refresh:
            self.refresh()
        unread = tuple(name for name in checks.unread_fields if name not in seen)
        return UpsertCounts(
            documents=done.documents,
            written=done.written,
            unread_fields=unread,
            embedded=done.embedded,
            vectors_given=done.vectors_given,
        )

    add = upsert

    def _upsert_expected(
        self, documents: Iterable[Document | dict[str, Any]], expected: Mapping[str, Expected]
    ) -> UpsertCounts:
        """``documents`` written in one transaction if every condition of ``expected`` holds."""
        listed = list(documents_from(documents, self.settings.id_field or "id"))
        latest = {doc.id: doc.fields for doc in listed}  # a repeated id: the last wins
        counts = self.update_documents(list(latest), lambda _: latest, expected=expected)
        return dataclasses.replace(counts, documents=len(latest))

    def delete_expected(self, expected: Mapping[str, Expected]) -> int:
        """Delete the documents ``expected`` names if each is stored as it says (one
        transaction; ``VersionConflictError`` and nothing deleted where one is not); returns
        how many existed."""
        gone = {doc_id: None for doc_id in expected}
        done = self.update_versioned(list(gone), _plain_change(lambda _: gone, expected))
        return done.deleted

    def delete_unchanged(self, seen: Mapping[str, int]) -> UnchangedDeletes:
        """Delete each document of ``seen`` (id -> the ``seq_no`` it was read with) still
        stored with that ``seq_no``, in one transaction: as Elasticsearch's
        ``_delete_by_query`` deletes what it read (internal versioning). One written or
        deleted since is left as it is, answered in ``conflicts``. This default (stores of a
        user's own) goes through ``update_versioned``; the embedded and PostgreSQL stores
        delete in their own write transaction, without the refresh an update makes."""
        conflicts: dict[str, DocumentVersion | None] = {}

        def change(found: FoundVersions) -> dict[str, NewVersion]:
            now = {i: None if doc is None else doc.version for i, doc in found.items()}
            gone, left = unchanged_split(now, seen)
            conflicts.clear()  # called again inside the transaction: its last answer counts
            conflicts.update(left)
            return {doc_id: NewVersion(fields=None) for doc_id in gone}

        done = self.update_versioned(list(seen), change)
        return UnchangedDeletes(deleted=done.deleted, conflicts=dict(conflicts))

    def update_documents(
        self,
        ids: Sequence[str],
        change: DocumentChange,
        *,
        expected: Mapping[str, Expected] | None = None,
    ) -> UpsertCounts:
        """Read, change and write back the documents ``ids`` (Elasticsearch's partial
        updates): ``change`` gets each id's stored fields (None where the index has none) and
        answers the fields of each id it changes (None: delete it); ids it leaves out stay as
        they are. Returns the write's counts (the documents ``change`` gave fields).
        ``expected``: conditions on some of ``ids`` (``Expected``), checked before ``change``
        in the same transaction; one that fails raises ``VersionConflictError``, nothing
        written. A document the write changes gets version + 1 and a new sequence number.

        The embedded and PostgreSQL stores read and write in one write transaction, so no
        other write, of this process or another, lands in between: two processes' updates of
        one document both count. They call ``change`` more than once (it must only compute)."""
        return self.update_versioned(ids, _plain_change(change, expected)).counts

    def update_versioned(self, ids: Sequence[str], change: VersionedChange) -> VersionedCounts:
        """``update_documents`` reading and giving versions: ``change`` gets each id's
        ``VersionedDocument`` (None where the index has none) and answers a ``NewVersion`` for
        each id it writes or deletes (a version of its choice, e.g. Elasticsearch's external
        versions, or None: + 1); it may raise (``VersionConflictError``) to write nothing.
        An id answered with its stored fields and version is left as it is.

        This default, for stores of a user's own, keeps no versions (every document reads as
        version 1, seq_no 0) and reads with ``get`` then upserts and deletes: not atomic."""
        wanted = list(dict.fromkeys(id_list(ids)))
        found = dict(zip(wanted, self.get_versioned(wanted), strict=True))
        changes = self._changes(found, change)
        documents = changes.documents
        counts = self.upsert_counted(documents, batch_size=max(len(documents), 1))
        if changes.gone:
            self.delete(changes.gone)
        versions = written_versions(found, changes, [d.id for d in documents], 0)
        return VersionedCounts(counts=counts, versions=versions, deleted=len(changes.gone))

    def get_versioned(self, ids: Sequence[str]) -> list[VersionedDocument | None]:
        """``get``, each document with its ``DocumentVersion``. This default, for stores of a
        user's own, keeps none: every document reads as version 1, seq_no 0."""
        unversioned = DocumentVersion(version=1, seq_no=0)
        return [
            None if fields is None else VersionedDocument(fields=fields, version=unversioned)
            for fields in self.get(ids)
        ]

    def _changes(self, found: FoundVersions, change: VersionedChange) -> DocumentChanges:
        """``change``'s answer for ``found``, checked as an upsert checks its records."""
        answer = change(dict(found))
        stray = next((doc_id for doc_id in answer if doc_id not in found), None)
        if stray is not None:
            raise InvalidInputError(
                f"update_documents' change answered for id {stray!r}, which is not among the "
                "ids it was given; list every id it may write in ids"
            )
        checks = IngestChecks(self.settings.text_fields)
        given = [
            Document(doc_id, new.fields) for doc_id, new in answer.items() if new.fields is not None
        ]
        documents = list(checks.checked(documents_from(given)))
        for document in documents:
            self.check_storable(document)
        gone = [i for i, new in answer.items() if new.fields is None and found[i] is not None]
        versions = {i: new.version for i, new in answer.items()}
        return DocumentChanges(documents=documents, gone=gone, checks=checks, versions=versions)

    @staticmethod
    def _update_counts(changes: DocumentChanges, written: int, seen: set[str]) -> UpsertCounts:
        """``UpsertCounts`` of ``changes``, ``written`` of them written; ``seen``: the index's
        fields before (unread fields it kept already were said then)."""
        unread = tuple(name for name in changes.checks.unread_fields if name not in seen)
        documents = len(changes.documents)
        return UpsertCounts(documents=documents, written=written, unread_fields=unread)

    def check_storable(self, document: Document) -> None:
        """Refuse ``document`` if this store cannot hold it (one store's own limits, checked
        before a write starts rather than in the batch that meets them): none here."""
        return None

    @abc.abstractmethod
    def _write_batch(
        self, batch: list[Document], progress: ProgressCallback | None
    ) -> tuple[int, int]:
        """Write one batch of documents in one transaction; returns how many were written."""

    def _write_batch_given(
        self,
        batch: list[Document],
        progress: ProgressCallback | None,
        vectors: Mapping[str, np.ndarray],
    ) -> BatchCounts:
        """``_write_batch``, storing ``vectors`` (by id) rather than embedding those
        documents' texts. This default, for stores of a user's own, embeds every one."""
        documents, written = self._write_batch(batch, progress)
        return BatchCounts(documents, written, written if self.has_vectors else 0, 0)

    def stored_vectors(self, ids: Sequence[str]) -> dict[str, tuple[str, np.ndarray]]:
        """``{id: (text, vector)}``: the text each of ``ids`` was embedded from (its text
        fields joined) and the unit vector stored for it, for the ids stored with one (not:
        unknown ids, documents not embedded yet, indexes without an embedding model). What
        ``reindex`` copies rather than embedding again. This default reads none (a store of
        a user's own)."""
        return {}

    def embedding_probe(self) -> list[float] | None:
        """The vector the index's model gave a fixed text when its first vectors were made
        (None: none kept): two indexes whose probes agree embed text alike."""
        return self._stored_probe()

    @abc.abstractmethod
    def delete(self, ids: Iterable[str]) -> int:
        """Remove documents by id; returns how many existed."""

    def delete_matching(self, filter: FilterSpec) -> int:
        """Remove every document passing ``filter`` (a parsed filter, or its Elasticsearch
        JSON such as ``{"term": {"tenant": "acme"}}``); returns how many. The embedded and
        PostgreSQL stores find and delete them in one write transaction, so a write racing it
        is either seen whole or not at all. A filter passing every document (``match_all``, an
        empty ``bool``) is refused: a mistyped delete must not empty the index."""
        return self._delete_matching(deletion_filter(filter))

    def _delete_matching(self, flt: Filter) -> int:
        """Found, then deleted by id: not one transaction (stores of a user's own)."""
        return self.delete(self.ids_matching(flt))

    def ids_matching(self, filter: FilterSpec) -> list[str]:
        """The ids of the documents passing ``filter``, in ``iter_documents``' order: what
        ``delete_matching`` would delete now."""
        flt = resolved(as_filter(filter, "filter"))  # one present for every document
        return [doc.id for doc in self.iter_documents() if matches(flt, doc.id, doc.fields)]

    def count_matching(self, filter: FilterSpec) -> int:
        """How many documents pass ``filter`` (a parsed filter or its Elasticsearch JSON;
        ``match_all`` counts every one). This default lists them (``ids_matching``); the
        embedded store counts its filter table's mask, PostgreSQL in SQL."""
        flt = as_filter(filter, "filter")
        return len(self) if matches_everything(flt) else len(self.ids_matching(flt))

    def first_matching(self, filter: FilterSpec, k: int) -> list[str]:
        """The ids of the first ``k`` documents passing ``filter``, in ``iter_documents``'
        order (a filter-only search's hits: Elasticsearch's filter context ranks none above
        another). This default reads documents until ``k`` pass; the embedded store masks its
        filter table."""
        flt = as_filter(filter, "filter")
        documents = self.iter_documents(batch_size=max(1, min(k, 1000)), filter=flt)
        return [doc.id for doc in itertools.islice(documents, k)]

    def matching_id_pages(self, filter: FilterSpec, page_size: int = 10_000) -> Iterator[list[str]]:
        """The ids of the documents passing ``filter``, in ``iter_documents``' order, a page
        of at most ``page_size`` at a time (an export's or a scroll's listing, which stops
        where it has enough: no list of every id, no document body held at once). Each page is
        its own read: a write between them may or may not be seen. This default reads the
        documents; the embedded store masks its filter table, PostgreSQL pages by id."""
        check_batch_size(page_size)
        flt = as_filter(filter, "filter")
        documents = self.iter_documents(batch_size=page_size, filter=flt)
        while page := [doc.id for doc in itertools.islice(documents, page_size)]:
            yield page

    def sort_values(
        self, filter: FilterSpec, fields: Sequence[str]
    ) -> list[tuple[str, list[list[Scalar]]]]:
        """Each document passing ``filter`` with its values of each of ``fields`` (as filters
        read them: ``document_values``), in no particular order: what a sorted match or knn
        search reads of the hits it retrieved (``Ids``; a sorted filter reads ``sort_columns``)
        without holding the documents. This default reads them; the embedded store reads its
        filter table, PostgreSQL selects the fields in SQL."""
        flt = resolved(as_filter(filter, "filter"))
        return [
            (doc.id, [document_values(doc.fields, name) for name in fields])
            for doc in self.iter_documents(filter=flt)
        ]

    def sort_columns(self, filter: FilterSpec, fields: Sequence[str]) -> SortTable:
        """``sort_values`` as the columns a sorted search orders (``order_table``), each
        entry's score 1: the embedded store builds them from its filter table in arrays."""
        from semrank.retrieve._sort_columns import SortColumn, SortTable  # imports the store's

        found = self.sort_values(filter, fields)
        columns = {
            name: SortColumn.of([values[n] for _, values in found]) for n, name in enumerate(fields)
        }
        return SortTable([doc_id for doc_id, _ in found], np.ones(len(found)), columns)

    def sort_candidates(
        self, filter: FilterSpec, sort: Sort, *, after: Sequence[Any] | None, limit: int
    ) -> SortTable:
        """A ``sort_columns`` table holding at least the first ``limit`` passing documents in
        ``sort``'s order after ``after`` (``order_table`` orders it, as it orders all of
        them): this default answers every passing document; PostgreSQL orders in SQL where
        its order provably is ``sort``'s, only those ``limit`` leaving the server."""
        return self.sort_columns(filter, sort.fields)

    def count_bm25(
        self,
        query: str,
        *,
        fields: Sequence[tuple[str, float]] = ((ALL_TEXT_FIELDS, 1.0),),
        mode: str = "best_fields",
        filter: FilterSpec | None = None,
    ) -> int:
        """How many documents a BM25 search for ``query`` over ``fields`` (boosted and combined
        by ``mode`` as ``search_bm25_fields`` does) returns at any k: those passing ``filter``
        that score above 0, sharing a term with it in a field boosted above 0 (Elasticsearch's
        ``_count`` of a match query). This default searches for every document (at most
        MAX_COUNT); the embedded store counts one score array, PostgreSQL in SQL."""
        return len(self._every_bm25_hit(query, fields, mode, filter))

    def ids_bm25(
        self,
        query: str,
        *,
        fields: Sequence[tuple[str, float]] = ((ALL_TEXT_FIELDS, 1.0),),
        mode: str = "best_fields",
        filter: FilterSpec | None = None,
    ) -> list[str]:
        """The ids of the documents ``count_bm25`` counts (in no particular order): what a
        search's aggregations read for a match query. This default searches for every
        document (at most MAX_COUNT); the embedded store reads one score array, PostgreSQL
        SQL."""
        hits = self._every_bm25_hit(query, fields, mode, filter)
        return [str(doc_id) for doc_id in hits.ids.tolist()]

    def _every_bm25_hit(
        self,
        query: str,
        fields: Sequence[tuple[str, float]],
        mode: str,
        filter: FilterSpec | None,
    ) -> Hits:
        """``count_bm25``'s and ``ids_bm25``'s default: a BM25 search for every document."""
        check_fields_search(query, 1, fields, mode)
        flt = optional_filter(filter)
        filtered = {} if flt is None else {"filter": flt}  # a store of a user's own may not take it
        every = min(max(1, len(self)), MAX_COUNT)
        if len(fields) == 1 and fields[0][1] > 0:
            return self.search_bm25(query, k=every, field=fields[0][0], **filtered)
        return self.search_bm25_fields(query, k=every, fields=fields, mode=mode, **filtered)

    def value_counts(self, field: str, within: Filter) -> ValueCounts:
        """How many documents passing ``within`` hold each value of ``field`` (as filters read
        it) and how many times it occurs in them, and how many hold any (see
        ``semrank.retrieve._aggs``). This default reads the documents; the embedded store
        counts its filter table, PostgreSQL in SQL."""
        return counts_of(self._values_of(field, within))

    def value_sets(self, field: str, within: Filter) -> list[tuple[ValueKey, ...]]:
        """The distinct values of ``field`` (keyed as ``value_counts`` keys them) of each
        document passing ``within`` that holds two or more, in no particular order: what a
        histogram needs to count such a document once in a bucket of two of them. This
        default reads the documents; the embedded store reads its filter table, PostgreSQL
        groups in SQL."""
        return sets_of(self._values_of(field, within))

    def held_values(self, fields: Sequence[str], within: Filter) -> HeldValues:
        """The values of ``fields`` (as filters read them, each as often as the document
        holds it) of each document passing ``within``, in no particular order, in arrays:
        what a bucket aggregation's sub-aggregations read (``semrank.retrieve._subaggs``).
        This default reads the documents; the embedded store reads its filter table,
        PostgreSQL sends one grouped query."""
        documents = self.iter_documents(filter=resolved(within))
        return held_lists(
            fields, ({p: document_values(d.fields, p) for p in fields} for d in documents)
        )

    def _values_of(self, field: str, within: Filter) -> Iterator[list[Any]]:
        for doc in self.iter_documents(filter=resolved(within)):
            yield document_values(doc.fields, field)

    def count_and_aggregate(
        self, within: Filter, aggs: Any | None
    ) -> tuple[int, dict[str, Any] | None]:
        """How many documents pass ``within``, and ``aggs`` over them (None: not asked): a
        search's ``matched`` and ``aggregations``, asked together so that PostgreSQL sends a
        long list of matched ids once for all of their statements."""
        found = None if aggs is None else self.aggregate(aggs, within)
        return self.count_matching(within), found

    def aggregate(self, aggs: Any, within: FilterSpec | None = None) -> dict[str, Any]:
        """Elasticsearch aggregations (``aggs`` JSON, or ``parse_aggs``') over the documents
        passing ``within`` (every document without one), in Elasticsearch's answer shapes."""
        flt = resolved(MatchAll() if within is None else as_filter(within, "filter"))
        return aggregate(self, parse_aggs(aggs), flt)

    @abc.abstractmethod
    def get(self, ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """Stored fields of each id (None where unknown), in input order."""

    def iter_documents(
        self, *, batch_size: int = 1000, filter: FilterSpec | None = None
    ) -> Iterator[Document]:
        """Every stored document (or those passing ``filter``, a parsed filter or its
        Elasticsearch JSON), read ``batch_size`` at a time (an index never has to fit in
        memory), in an order that is stable for unchanged documents: the embedded store's in
        the order they were first written, PostgreSQL's by id. Each page is its own read, so a
        write during the iteration may or may not be in it; each document comes whole."""
        raise NotImplementedError(f"{type(self).__name__} does not iterate its documents")

    @property
    def generation(self) -> int:
        """A number each committed write raises (0 where a store keeps none)."""
        return 0

    def written_since(self, ids: Sequence[str], generation: int) -> set[str]:
        """The ids among ``ids`` whose documents were written after ``generation`` (a search
        that read them may have ranked an older version)."""
        return set()

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def info(self) -> IndexInfo: ...

    @property
    @abc.abstractmethod
    def fields_seen(self) -> tuple[str, ...]:
        """Every field name any stored document has had."""

    def check_field(self, field: str, *, purpose: str = "") -> None:
        """``field`` must be ``"*"``, a text field or a field some document has: an unknown one
        would match nothing (search) or read empty texts (re-ranking). ``purpose`` ends the
        message's first clause, e.g. " to re-rank on"."""
        if field == ALL_TEXT_FIELDS or field_key(self.settings.text_fields, field) is not None:
            return
        seen = self.fields_seen
        if field_key(seen, field) is None:
            names = dict.fromkeys([*self.settings.text_fields, *seen])
            known = ", ".join([ALL_TEXT_FIELDS, *names])
            raise InvalidInputError(
                f"index {self.name!r} has no field {field!r}{purpose}; fields: {known}"
            )

    # --- unfinished ingests (``semrank index create --from`` / ``index add``) ---------------
    # An ingest commits batch by batch and a killed one keeps what it committed: the mark
    # tells such an index apart from a complete one. The embedded store keeps marks; others
    # keep none (their indexes always read as complete).
    def begin_ingest(self, source: Path, *, id_field: str | None) -> dict[str, Any] | None:
        """Mark the index incomplete until ``end_ingest(source)``: the ingest of file
        ``source``, whose records carry their ids in ``id_field`` (None: record numbers).
        Returns the mark of an interrupted ingest of another file once at that path (its
        records that did not go in stay missing: this ingest's end clears its mark)."""
        return None

    def end_ingest(self, source: Path) -> None:  # noqa: B027
        """Every record of ``source`` is in: remove its mark (and a killed earlier one's)."""

    def unfinished_ingests(self) -> dict[str, dict[str, Any]]:
        """``{file: mark}`` of the ingests begun and not ended; a mark holds ``started``,
        ``pid``, ``id_field`` and ``running`` (its process still runs on this machine)."""
        return {}

    def unfinished_note(
        self, marks: dict[str, dict[str, Any]] | None = None, *, where: str = ""
    ) -> str | None:
        """What an unfinished ingest means for this index and how to go on, as "it holds N
        documents, but the ingest of FILE ... was interrupted; run ..." (None: complete).
        ``marks``: ``unfinished_ingests()`` when the caller has read them already; ``where``:
        the flags that reach this index in the commands suggested (" --home DIR"): without
        them, the command printed for an index under --home finished or dropped the default
        home's index of that name."""
        marks = self.unfinished_ingests() if marks is None else marks
        if not marks:
            return None
        id_field = self.settings.id_field
        notes = [_ingest_note(self.name, id_field, f, m, where) for f, m in marks.items()]
        return f"it holds {count_of(len(self), 'document')}, but " + "; and ".join(notes)

    # --- prepared re-ranking tables (``semrank.pipeline.prepare_index``) --------------------
    def document_ids(self) -> list[str]:
        """Every stored document id, in storage order."""
        raise InvalidInputError(
            f"index {self.name!r} ({self.backend} store) keeps no prepared windows; only the "
            "embedded (local) store does"
        )

    def save_prepared(self, name: str, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
        """Store arrays computed from the documents (replacing an earlier ``name``)."""
        raise InvalidInputError(
            f"index {self.name!r} ({self.backend} store) cannot keep prepared windows; they "
            "are kept by the embedded (local) store"
        )

    def prepared(self) -> list[PreparedArrays]:
        """Every table ``save_prepared`` stored (none for stores that keep none)."""
        return []

    # --- retrieval -------------------------------------------------------------------------
    # A ``filter`` (Elasticsearch filter JSON, or ``semrank.retrieve.parse_filter``'s)
    # restricts the documents a search may return before its top ``k`` is taken: ``k`` hits
    # come back whenever ``k`` documents both pass it and match the query (not the top ``k``,
    # then fewer of them).
    @abc.abstractmethod
    def search_bm25(
        self, query: str, *, k: int, field: str = ALL_TEXT_FIELDS, filter: FilterSpec | None = None
    ) -> Hits:
        """Top ``k`` document ids by BM25 over ``field`` (``"*"``: all text fields) among the
        documents passing ``filter``."""

    def search_bm25_fields(
        self,
        query: str,
        *,
        k: int,
        fields: Sequence[tuple[str, float]],
        mode: str = "best_fields",
        filter: FilterSpec | None = None,
    ) -> Hits:
        """BM25 over several fields with boosts: per document the max ("best_fields") or the sum
        ("most_fields") of ``boost * score``. This default combines each field's top ``4k``;
        backends that can score every document exactly should override it."""
        check_fields_search(query, k, fields, mode)
        flt = optional_filter(filter)
        flt = None if flt is None else resolved(flt)  # one present for every field's search
        # Passed on only when given: a store of a user's own may not take filters.
        filtered = {} if flt is None else {"filter": flt}
        per_field = [
            (self.search_bm25(query, k=4 * k, field=name, **filtered), boost)
            for name, boost in fields
        ]
        return combine_field_hits(per_field, mode, k)

    @abc.abstractmethod
    def search_vector(
        self,
        vector: np.ndarray,
        *,
        k: int,
        num_candidates: int | None = None,
        filter: FilterSpec | None = None,
    ) -> Hits:
        """Top ``k`` document ids by inner product with ``vector`` (cosine; vectors normalised)
        among the documents passing ``filter``."""

    _embedder: TextEmbedder | None = None

    @property
    def embedder(self) -> TextEmbedder:
        """The index's embedding model, loaded on first use (once: threads searching a newly
        opened index at once each loaded and compiled a copy)."""
        if self._embedder is None:
            if not self.has_vectors:
                raise InvalidInputError(f"index {self.name!r} has no embedding model")
            with _EMBEDDER_LOAD_LOCK:
                if self._embedder is None:
                    self._embedder = self._load_embedder()
        return self._embedder

    def _load_embedder(self) -> TextEmbedder:
        from semrank.models import resolve_embedding_model
        from semrank.runtime import load_embedder

        try:
            model = resolve_embedding_model(self.settings.embedding_model)
            if self.settings.embedding_max_length:
                model = dataclasses.replace(model, max_length=self.settings.embedding_max_length)
            # "fast": bf16 where the CPU has it (OpenVINO), else fp32. Embedding is the whole
            # cost of ingest; bf16 halves it and moved SciFact embeddings by 1 - cos < 3e-5.
            embedder = load_embedder(model, backend="fast")
        except (ModelNotFoundError, ModelLoadError) as exc:
            # The index's own model, which no one named in this command or request; a remote
            # client is not told the server's folders.
            raise type(exc)(
                f"index {self.name!r}'s embedding model does not load ({exc}); restore it "
                "where the index was created with it, or create the index again",
                client_message=f"index {self.name!r}'s embedding model cannot be loaded on the "
                "server (moved, removed or damaged); its operator can restore it, or the index "
                "can be created again",
            ) from exc
        return self._check_embedding_probe(embedder)

    # Whether the embedder is the index's own model (loaded by name), whose probe is kept.
    _own_embedder = False
    _probe_kept = False

    def _check_embedding_probe(self, embedder: TextEmbedder) -> TextEmbedder:
        """The index's model embeds a fixed text as it did when the stored vectors were made: a
        model folder retrained or replaced in place gave stale vectors silently (only the
        dimension was checked). An index whose probe shows it was made before semrank read
        sentence-transformers prompts keeps being read as it was made, without them."""
        self._own_embedder = True
        stored = self._stored_probe()
        if stored is None:
            # Vectors without a probe were made before probes were kept, and so before prompts
            # were read (a caller's prompted embedder keeps a probe: _keep_embedding_probe).
            made_before = _prompted(embedder) and self.has_vectors and len(self) > 0
            return _unprompted(embedder, self.name) if made_before else embedder
        before = np.asarray(stored, dtype=np.float32)
        similarity = _cosine(np.asarray(embedder.embed([PROBE_TEXT])[0], dtype=np.float32), before)
        if similarity >= PROBE_MIN_COSINE:
            return embedder
        if _prompted(embedder):
            plain = embedder.embed([PROBE_TEXT], prompted=False)[0]  # type: ignore[call-arg]
            if _cosine(np.asarray(plain, dtype=np.float32), before) >= PROBE_MIN_COSINE:
                return _unprompted(embedder, self.name)
        changed = (
            f"no longer embeds text as it did when the index's vectors were made (cosine "
            f"{similarity:.4f} for a probe text): its files changed"
        )
        raise IndexModelChangedError(
            f"the embedding model {self.settings.embedding_model!r} of index {self.name!r} "
            f"{changed}. Put the model back, or build the index again from its documents "
            "so that its vectors are the model's",
            client_message=f"the embedding model of index {self.name!r} {changed} on the "
            "server; its operator can put the model back, or the index can be built again",
        )

    def _keep_embedding_probe(self) -> None:
        """Store the probe with the index's first vectors: for its own model, or a caller's
        that reads prompts (others may be anything; without a probe, an index of a prompted
        model reads as made before prompts were read)."""
        if not (self._own_embedder or _prompted(self.embedder)) or self._probe_kept:
            return
        if self._stored_probe() is None:
            probe = np.asarray(self.embedder.embed([PROBE_TEXT])[0], dtype=np.float32)
            self._store_probe([round(float(x), 6) for x in probe])
        self._probe_kept = True  # asked once per handle, not once per batch

    def _stored_probe(self) -> list[float] | None:
        """The probe kept with the index's vectors (None: none kept, or not supported)."""
        return None

    def _store_probe(self, probe: list[float]) -> None:  # noqa: B027
        """Keep ``probe`` with the index (backends that support probes)."""

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Query vectors from the index's own embedding model."""
        # A model with a query prompt reads queries otherwise than documents; a TextEmbedder of
        # the user's may have no embed_queries: its embed then reads both.
        embedder = self.embedder
        embed = getattr(embedder, "embed_queries", None) or embedder.embed
        return np.asarray(embed(list(texts)), dtype=np.float32)

    def refresh(self) -> None:  # noqa: B027 - optional for backends that index synchronously
        """Bring derived indexes up to date with the committed documents."""

    def close(self) -> None:  # noqa: B027
        """Release files and connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- helpers shared by every backend ---------------------------------------------------
    def text_of(self, fields: dict[str, Any], field_name: str = ALL_TEXT_FIELDS) -> str:
        """The text of ``field_name`` of one document (``"*"``: the text fields joined)."""
        if field_name == ALL_TEXT_FIELDS:
            parts = (field_text(fields, f) for f in self.settings.text_fields)
            return "\n".join(p for p in parts if p)
        return field_text(fields, field_name)

    def rerank_text_of(self, fields: dict[str, Any], field_name: str = ALL_TEXT_FIELDS) -> str:
        """The text a search re-ranks ``field_name`` of one document by: ``"*"`` the indexed
        text (its text fields joined), one field as /v1/rerank reads it (``rerank_field_text``)."""
        if field_name == ALL_TEXT_FIELDS:
            return self.text_of(fields)
        return rerank_field_text(fields, field_name)

    def check_vector_field(self, name: str) -> None:
        if not self.has_vectors:
            no_embeddings = f"index {self.name!r} has no embeddings (it was created without "
            raise InvalidInputError(
                no_embeddings + "an embedding model); recreate it with one (`semrank index "
                "create NAME --embedding-model ...`) to use knn / --dense",
                client_message=no_embeddings + "an embedding model): use a standard (BM25) "
                "retriever, or create an index with an embedding_model (POST /v1/indexes)",
            )
        if name not in (VECTOR_FIELD, ALL_TEXT_FIELDS):
            raise InvalidInputError(
                f"knn field {name!r} is not a vector field of index {self.name!r}; "
                f"use {VECTOR_FIELD!r}"
            )


class GivenVectorStore(Store):
    """A store whose batches take vectors given by the caller (``_write_batch_given``), as
    the embedded and PostgreSQL stores do: ``_write_batch`` is that with none given."""

    def _write_batch(
        self, batch: list[Document], progress: ProgressCallback | None
    ) -> tuple[int, int]:
        done = self._write_batch_given(batch, progress, {})
        return done.documents, done.written

    @abc.abstractmethod
    def _write_batch_given(
        self,
        batch: list[Document],
        progress: ProgressCallback | None,
        vectors: Mapping[str, np.ndarray],
    ) -> BatchCounts: ...


def unpicklable(store: Store, opened_with: str) -> InvalidInputError:
    """What pickling (a spawn pool, ``ProcessPoolExecutor``) or deep-copying ``store`` raises:
    its database handles, locks and mapped files do not pickle (a bare "cannot pickle
    '_thread.RLock' object"), so it says what to send to the other process instead."""
    return InvalidInputError(
        f"{store!r} holds open database handles and cannot be pickled or deep-copied; pass "
        f"its name to each process and open it there with {opened_with}"
    )


def check_search(query: object, k: object) -> None:
    """A search's query text and ``k``, or an error naming the bad one."""
    if not isinstance(query, str):
        raise InvalidInputError(
            f"search query must be a string, got {type(query).__name__} ({query!r:.60})"
        )
    require_unicode(query, "search query")
    check_k(k)


def check_k(k: object) -> None:
    if not is_int(k, at_least=1) or int(k) > MAX_COUNT:  # type: ignore[call-overload]
        raise InvalidInputError(
            f"k must be a positive integer of at most {MAX_COUNT:,} (hits to return), got {k!r:.40}"
        )


def check_fields_search(
    query: object, k: object, fields: Sequence[tuple[str, float]], mode: object
) -> None:
    """A multi-field BM25 search's (or count's) arguments, checked as every store checks them."""
    check_field_mode(mode)
    check_search(query, k)
    check_field_boosts(fields)


def check_field_boosts(fields: Sequence[tuple[str, float]]) -> None:
    """Multi-field BM25 needs at least one field, each with a finite boost >= 0."""
    if isinstance(fields, str) or not fields:
        raise InvalidInputError(
            f"fields must be a non-empty list of (field, boost) pairs, got {fields!r:.60}"
        )
    for pair in fields:
        if isinstance(pair, str) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise InvalidInputError(
                f"each of fields must be a (field, boost) pair such as ('title', 2.0), "
                f"got {pair!r:.60}"
            )
        name, boost = pair
        if not is_finite_number(boost, at_least=0, at_most=MAX_WEIGHT):
            raise InvalidInputError(
                f"boost of field {name!r} must be a finite number from 0 to {MAX_WEIGHT:g}, "
                f"got {boost!r}"
            )


def deletion_filter(spec: FilterSpec, where: str = "filter", *, given: str | None = None) -> Filter:
    """``spec`` parsed, refused where it passes every document whatever they hold (``given``:
    the filter as the user wrote it, for the message)."""
    flt = as_filter(spec, where)
    if matches_everything(flt):
        if given is None:
            given = json.dumps(flt.to_dict() if spec is flt else spec, default=str)
        shown = given if len(given) <= 200 else given[:197] + "..."
        raise InvalidInputError(
            f"{where} {shown} passes every document, so deleting by it would empty the index; "
            'give a filter naming the documents to delete, e.g. {"term": {"tenant": "acme"}} '
            "(to empty an index, drop it and create it again)"
        )
    return flt


def id_list(ids: object) -> list[str]:
    """Document ids as strings; a lone string is an error, not a sequence of one-letter ids."""
    require_collection(
        ids,
        expected="ids must be a list of document ids",
        hint="wrap a single id in a list: [id]",
        ordered=False,
    )
    given = list(cast(Iterable[object], ids))
    boolean = next((i for i in given if isinstance(i, bool)), None)
    if boolean is not None:  # as an ingest refuses it: str() would look up the id "True"
        raise InvalidInputError(
            f"id {boolean!r} is a boolean; ids are strings or numbers: pass "
            f"{str(boolean).lower()!r} if that is the id"
        )
    odd = [i for i in given if not is_id_value(i)]  # None included
    if odd:
        raise InvalidInputError(f"id {not_an_id(odd[0])}")
    strings = [str(i) for i in given]
    bad = next((i for i in strings if not is_valid_unicode(i)), None)
    if bad is not None:
        raise InvalidInputError(
            f"id {bad!r} is not valid Unicode (it holds a lone surrogate); ids must be valid "
            "Unicode"
        )
    return strings


def _ingest_note(
    name: str, id_field: str | None, source: str, mark: dict[str, Any], where: str
) -> str:
    """One unfinished ingest: still running, or interrupted and how to finish it."""
    began = f"the ingest of {shown_source(source)} (started {mark.get('started', '?')})"
    if mark.get("running"):
        return f"{began} is still running in process {mark.get('pid')}"
    if mark.get("id_field") is None:  # record numbers: adding again would renumber
        return (
            f"{began} was interrupted, and its records have no ids to resume by: "
            f"`semrank index drop {name}{where}`, then create it again"
        )
    option = "" if mark["id_field"] == id_field else f" --id-field {shlex.quote(mark['id_field'])}"
    # An ingest from stdin ("-#DIGEST") has no file to add again: the stream is gone.
    again = (
        f"pipe the same documents into `semrank index add {name} - --format FORMAT{option}"
        if is_stdin_source(source)
        else f"run `semrank index add {name} {shlex.quote(source)}{option}"
    )
    return (
        f"{began} was interrupted; {again}{where}` to finish it (ids are upserted, so adding "
        f"the file again is safe), or `semrank index drop {name}{where}` to start over"
    )


STDIN_SOURCE = "-"  # what an ingest read from stdin is marked as: "-#" and its documents' digest


def stdin_source(digest: str) -> str:
    """The mark of an ingest from stdin of the documents whose digest is ``digest``: piping the
    same documents in again ends it, and other documents piped in get a mark of their own, so
    their end does not clear it (nor does another ingest from stdin running meanwhile)."""
    return f"{STDIN_SOURCE}#{digest}"


def is_stdin_source(source: str) -> bool:
    """Whether an ingest mark is one from stdin: "-#DIGEST", or "-" alone (marks made before
    the documents were told apart)."""
    return source == STDIN_SOURCE or source.startswith(f"{STDIN_SOURCE}#")


def shown_source(source: str) -> str:
    """An ingest mark's source as messages name it: stdin as "-", a file by its path."""
    return STDIN_SOURCE if is_stdin_source(source) else source


def ingest_running(mark: dict[str, Any]) -> bool:
    """Whether the process that began an ingest still runs. This process's own marks are
    over: ingests run to the end (or fail) before anything reads the mark."""
    pid = mark.get("pid")
    if mark.get("host") != socket.gethostname() or not isinstance(pid, int) or pid == os.getpid():
        return False
    if not process_alive(pid):
        return False
    # A pid is reused after the process ends (or a reboot): the same pid with another start
    # time is another process.
    started = mark.get("process_started")
    return started is None or started == process_start_time(pid)


def index_dir_size(path: Path) -> int:
    """Bytes under ``path``; files that writes and searches replace meanwhile (derived indexes
    renamed into place, temporaries removed) are skipped, not a FileNotFoundError (a 500)."""
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.stat(os.path.join(folder, name)).st_size
    return total


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return 0.0
    return float(a @ b / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))


def _prompted(embedder: object) -> bool:
    return bool(getattr(embedder, "document_prompt", "") or getattr(embedder, "query_prompt", ""))


class _Unprompted:
    """The index's model read as the index was made: no prompt before queries or documents."""

    def __init__(self, embedder: TextEmbedder) -> None:
        self._embedder = embedder

    def embed(self, texts: Sequence[str], **_: Any) -> np.ndarray:
        return self._embedder.embed(texts, prompted=False)  # type: ignore[call-arg]

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed(texts)

    def __getattr__(self, name: str) -> Any:  # its tokenizer, backend, dimension...
        if name == "_embedder":  # not set yet (a copy): no endless lookup
            raise AttributeError(name)
        return getattr(self._embedder, name)


def _unprompted(embedder: TextEmbedder, name: str) -> TextEmbedder:
    log.warning(
        "index %r was made before semrank put its embedding model's sentence-transformers "
        "prompts before texts; it is searched and written as it was made, without them (build "
        "it again from its documents to use them)",
        name,
    )
    return cast("TextEmbedder", _Unprompted(embedder))
