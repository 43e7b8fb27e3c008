"""Copying the documents of one index into another (Elasticsearch's ``_reindex``): the step
before an alias is moved to a new index (``update_aliases``).

The source is read page by page (``iter_documents``, or ``get`` of a list of ids), and each
page written to the destination as one batch, so neither index has to fit in memory; the
destination is refreshed once, at the end. The source is only read: a copy stopped part way
(a crash, Ctrl-C) leaves it whole, and the destination with the pages written so far; running
the copy again finishes it (documents already copied unchanged are skipped by the upsert).

Where both indexes embed with the same model (its name, maximum length, and the probe text's
vector each keeps: ``vectors_differ``), a document's stored vector is copied with it whenever
the source embedded the very text the destination would (its text fields joined; another
field list or a ``reshape`` changes it): copying an index takes seconds where embedding it
again takes hours on a CPU. The others are embedded by the destination's model, and
``ReindexCounts`` says how many of each, and why (``vectors_note``).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semrank._checks import is_int
from semrank._words import count_of
from semrank.errors import InvalidInputError, SemrankError
from semrank.retrieve import FilterSpec, TextEmbedder
from semrank.store._base import (
    PROBE_MIN_COSINE,
    Document,
    IndexSettings,
    Store,
    check_batch_size,
    id_list,
)

OP_TYPES = ("index", "create")
CONFLICTS = ("abort", "proceed")
# What a copied document's fields become (Elasticsearch's source._source field list).
Reshape = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, kw_only=True)
class ReindexCounts:
    """What a copy did: ``read`` documents of the source matched, ``created`` new in the
    destination, ``updated`` replacing one of its ids; ``conflicts``: with ``op_type="create"``,
    the ids the destination held already (left as they were); ``batches`` written; whether it
    ``stopped`` at a conflict (``conflicts="abort"``) before reading every match."""

    read: int = 0
    created: int = 0
    updated: int = 0
    conflicts: tuple[str, ...] = ()
    batches: int = 0
    stopped: bool = False
    # Of the documents written: stored with the source's vector, or embedded again (and why).
    vectors_copied: int = 0
    embedded: int = 0
    embedded_why: str | None = None


def check_reindex_options(op_type: object, conflicts: object, max_docs: object) -> None:
    """``reindex``'s options, checked before anything is opened or read."""
    if op_type not in OP_TYPES:
        raise InvalidInputError(f"op_type {op_type!r:.60}: give index (the default) or create")
    abort = "stop at the first id the destination holds, with op_type create"
    check_conflicts(conflicts, max_docs, abort=abort, done="copied")


def check_conflicts(conflicts: object, max_docs: object, *, abort: str, done: str) -> None:
    """A by-query write's ``conflicts`` and ``max_docs`` (``abort``: what abort does; ``done``:
    what ``max_docs`` counts, "copied", "deleted")."""
    if conflicts not in CONFLICTS:
        raise InvalidInputError(
            f"conflicts {conflicts!r:.60}: give abort (the default: {abort}) or proceed (count "
            "them and go on)"
        )
    if max_docs is not None and not is_int(max_docs, at_least=1):
        raise InvalidInputError(
            f"max_docs must be a positive integer (the most documents {done}), got {max_docs!r:.40}"
        )


def reindex(
    source: Store,
    dest: Store,
    *,
    filter: FilterSpec | None = None,
    ids: Sequence[str] | None = None,
    op_type: str = "index",
    conflicts: str = "abort",
    max_docs: int | None = None,
    batch_size: int = 256,
    reshape: Reshape | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReindexCounts:
    """Copy the documents of ``source`` passing ``filter`` (every one without; or those of
    ``ids``, in their order) into ``dest``, ``batch_size`` at a time, at most ``max_docs``.

    ``op_type="index"`` adds or replaces by id; ``"create"`` leaves the ids ``dest`` holds as
    they are and reports them (``conflicts="abort"`` stops after the batch that met the first,
    ``"proceed"`` goes on). ``reshape``: what each document's fields become (e.g. a subset).
    Works across stores (embedded into PostgreSQL and back). ``progress`` gets each batch's
    size once it is written."""
    check_reindex_options(op_type, conflicts, max_docs)
    check_batch_size(batch_size)
    if filter is not None and ids is not None:
        raise InvalidInputError("give reindex a filter or a list of ids, not both")
    _refuse_same_index(source, dest)
    documents = _read(source, filter, None if ids is None else id_list(ids), batch_size)
    counts = _Counting()
    counts.vectors_differ = vectors_differ(source, dest)
    try:
        for batch in _pages(documents, batch_size, max_docs, counts):
            if reshape is not None:
                batch = [Document(doc.id, reshape(doc.fields)) for doc in batch]
            _write(source, dest, batch, op_type, counts)
            if progress is not None:
                progress(len(batch))
            if counts.conflicts and conflicts == "abort":
                counts.stopped = True
                break
    except SemrankError as exc:  # e.g. a document the destination refuses
        raise _stopped(exc, counts, source.name, dest.name) from exc
    dest.refresh()
    return counts.result()


def _stopped(exc: SemrankError, counts: _Counting, source: str, dest: str) -> SemrankError:
    """``exc``, saying what the copy did before it: a caller told only the error did not know
    that part of the documents were in ``dest``, nor that running it again finishes."""
    copied = counts.created + counts.updated
    before = (
        f"reindex of index {source!r} into {dest!r} stopped after copying "
        f"{count_of(copied, 'document')} ({counts.created} new, {counts.updated} replaced): "
    )
    after = (
        f"; index {source!r} is unchanged: fix that, then run the reindex again to finish "
        "(documents copied already are skipped)"
    )
    stopped = copy.copy(exc)  # its class and status, its message told in full
    stopped.args = (before + str(exc) + after,)
    if exc.client_message is not None:
        stopped.client_message = before + exc.client_message + after
    return stopped


def _refuse_same_index(source: Store, dest: Store) -> None:
    if source.name == dest.name and _place(source) == _place(dest):
        raise InvalidInputError(
            f"reindex reads index {source.name!r} and would write into it too; name another "
            "destination index (then move the alias to it)"
        )


def _place(store: Store) -> tuple[str, object]:
    """Where ``store``'s indexes live: its folder (embedded) or database (PostgreSQL)."""
    where = getattr(store, "path", None)
    return store.backend, getattr(store, "dsn", None) if where is None else Path(where).parent


def vectors_differ(source: Store, dest: Store) -> str | None:
    """Why ``dest`` cannot take ``source``'s stored vectors (None: it can, for the documents
    whose text it embeds as the source did). Same model means the same name and maximum
    length, and probes that agree: a probe the source keeps is kept by a ``dest`` that has
    none and no vectors yet (its model then checks it as the source's did)."""
    if not dest.has_vectors:
        return None  # nothing embedded either way
    s, d = source.settings, dest.settings
    if not source.has_vectors:
        return f"index {source.name!r} keeps no vectors (no embedding model)"
    if (s.embedding_model, s.embedding_max_length) != (d.embedding_model, d.embedding_max_length):
        theirs = f"that of index {source.name!r} ({_model(s)})"
        return f"its embedding model ({_model(d)}) is not {theirs}"
    return _probes_differ(source, dest)


def _model(settings: IndexSettings) -> str:
    length = settings.embedding_max_length
    return repr(settings.embedding_model) + ("" if length is None else f", max length {length}")


def _probes_differ(source: Store, dest: Store) -> str | None:
    theirs, ours = source.embedding_probe(), dest.embedding_probe()
    if theirs is not None and ours is None and len(dest) == 0:
        dest._store_probe(theirs)  # its vectors will be the source's: so is its probe
        return None
    if theirs is None and ours is None:
        return None  # both made before probes were kept (or by a caller's embedder)
    a, b = (np.asarray(p or [], dtype=np.float32) for p in (theirs, ours))
    if a.shape == b.shape and a.size and float(a @ b) >= PROBE_MIN_COSINE * _norms(a, b):
        return None
    return (
        f"its model embeds a probe text otherwise than index {source.name!r}'s did when that "
        "index's vectors were made (the model changed, or one index reads it without prompts)"
    )


def _norms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a) * np.linalg.norm(b))


def vectors_note(counts: ReindexCounts, source: str, dest: str) -> str | None:
    """What a copy did about vectors, for its user: copied, embedded again and why (None:
    no document written holds one)."""
    copied, embedded = counts.vectors_copied, counts.embedded
    if not copied and not embedded:
        return None
    said = f"{count_of(copied, 'stored vector')} copied from index {source!r}"
    if not embedded:
        return f"{said}; no document was embedded again"
    why = counts.embedded_why or (
        f"index {source!r} held no vector for the text {dest!r} embeds (other text fields, a "
        "_source subset, or a document not embedded yet)"
    )
    again = f"{count_of(embedded, 'document')} embedded again by index {dest!r}: {why}"
    return f"{again}; {said}" if copied else again


class _Counting:
    def __init__(self) -> None:
        self.read = self.created = self.updated = self.batches = 0
        self.vectors_copied = self.embedded = 0
        self.vectors_differ: str | None = None
        self.conflicts: list[str] = []
        self.stopped = False

    def result(self) -> ReindexCounts:
        return ReindexCounts(
            read=self.read,
            created=self.created,
            updated=self.updated,
            conflicts=tuple(self.conflicts),
            batches=self.batches,
            stopped=self.stopped,
            vectors_copied=self.vectors_copied,
            embedded=self.embedded,
            embedded_why=self.vectors_differ if self.embedded else None,
        )


def _read(
    source: Store, filter: FilterSpec | None, ids: list[str] | None, batch_size: int
) -> Iterator[Document]:
    if ids is None:
        yield from source.iter_documents(batch_size=batch_size, filter=filter)
        return
    unique = list(dict.fromkeys(ids))
    for start in range(0, len(unique), batch_size):
        page = unique[start : start + batch_size]
        for doc_id, fields in zip(page, source.get(page), strict=True):
            if fields is not None:  # deleted since the ids were found
                yield Document(doc_id, fields)


def _pages(
    documents: Iterable[Document], batch_size: int, max_docs: int | None, counts: _Counting
) -> Iterator[list[Document]]:
    """Pages of ``documents``, stopping at ``max_docs`` documents copied (conflicts, which
    copy nothing, do not count, as Elasticsearch counts with conflicts=proceed)."""
    documents = iter(documents)
    while True:
        room = batch_size
        if max_docs is not None:
            room = min(room, max_docs - counts.created - counts.updated)
        batch = list(itertools.islice(documents, max(room, 0)))
        if not batch:
            return
        counts.read += len(batch)
        yield batch


def _write(
    source: Store, dest: Store, batch: list[Document], op_type: str, counts: _Counting
) -> None:
    ids = [doc.id for doc in batch]
    held = {i for i, fields in zip(ids, dest.get(ids), strict=True) if fields is not None}
    if op_type == "create":
        counts.conflicts += [i for i in ids if i in held]
        batch = [doc for doc in batch if doc.id not in held]
    if batch:
        copied = {} if counts.vectors_differ else _copied_vectors(source, dest, batch)
        done = dest.upsert_counted(batch, batch_size=len(batch), refresh=False, vectors=copied)
        counts.vectors_copied += done.vectors_given
        counts.embedded += done.embedded
        counts.batches += 1
    counts.updated += sum(1 for doc in batch if doc.id in held)
    counts.created += sum(1 for doc in batch if doc.id not in held)


def _copied_vectors(source: Store, dest: Store, batch: list[Document]) -> dict[str, np.ndarray]:
    """The source's vectors of the documents of ``batch`` whose text, as ``dest`` embeds it,
    is the very text the source embedded (read with the vector: a write since the document
    was read that changed it is seen)."""
    if not dest.has_vectors:
        return {}
    stored = source.stored_vectors([doc.id for doc in batch])
    return {
        doc.id: stored[doc.id][1]
        for doc in batch
        if doc.id in stored and stored[doc.id][0] == dest.text_of(doc.fields)
    }


def create_index_like(
    source: Store,
    name: str,
    *,
    home: str | Path | None = None,
    store: str | None = None,
    embedder: TextEmbedder | None = None,
) -> Store:
    """A new, empty index ``name`` made with the settings of ``source`` (text fields, id field,
    embedding model, BM25 parameters), in the embedded store under ``home`` or the PostgreSQL
    database ``store``: where ``reindex`` copies ``source`` to."""
    from semrank.store._registry import create_index

    settings = source.settings
    return create_index(
        name,
        home=home,
        store=store,
        fields=settings.text_fields,
        id_field=settings.id_field,
        embedding_model=settings.embedding_model,
        embedding_max_length=settings.embedding_max_length,
        bm25=settings.bm25,
        ann_threshold=settings.ann_threshold,
        embedder=embedder,
    )
