"""Copying the documents of one index into another (Elasticsearch's ``_reindex``): the step
before an alias is moved to a new index (``update_aliases``).

The source is read page by page (``iter_documents``, or ``get`` of a list of ids), and each
page written to the destination as one batch, so neither index has to fit in memory; the
destination is refreshed once, at the end. The source is only read: a copy stopped part way
(a crash, Ctrl-C) leaves it whole, and the destination with the pages written so far; running
the copy again finishes it (documents already copied unchanged are skipped by the upsert).

The destination embeds the copied texts with its own model: stored vectors are not copied.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semrank._checks import is_int
from semrank.errors import InvalidInputError
from semrank.retrieve import FilterSpec, TextEmbedder
from semrank.store._base import Document, Store, check_batch_size, id_list

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


def check_reindex_options(op_type: object, conflicts: object, max_docs: object) -> None:
    """``reindex``'s options, checked before anything is opened or read."""
    if op_type not in OP_TYPES:
        raise InvalidInputError(f"op_type {op_type!r:.60}: give index (the default) or create")
    if conflicts not in CONFLICTS:
        raise InvalidInputError(
            f"conflicts {conflicts!r:.60}: give abort (the default: stop at the first id the "
            "destination holds, with op_type create) or proceed (count them and go on)"
        )
    if max_docs is not None and not is_int(max_docs, at_least=1):
        raise InvalidInputError(
            f"max_docs must be a positive integer (the most documents copied), got {max_docs!r:.40}"
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
    for batch in _pages(documents, batch_size, max_docs, counts):
        if reshape is not None:
            batch = [Document(doc.id, reshape(doc.fields)) for doc in batch]
        _write(dest, batch, op_type, counts)
        if progress is not None:
            progress(len(batch))
        if counts.conflicts and conflicts == "abort":
            counts.stopped = True
            break
    dest.refresh()
    return counts.result()


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


class _Counting:
    def __init__(self) -> None:
        self.read = self.created = self.updated = self.batches = 0
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


def _write(dest: Store, batch: list[Document], op_type: str, counts: _Counting) -> None:
    ids = [doc.id for doc in batch]
    held = {i for i, fields in zip(ids, dest.get(ids), strict=True) if fields is not None}
    if op_type == "create":
        counts.conflicts += [i for i in ids if i in held]
        batch = [doc for doc in batch if doc.id not in held]
    if batch:
        dest.upsert_counted(batch, batch_size=len(batch), refresh=False)
        counts.batches += 1
    counts.updated += sum(1 for doc in batch if doc.id in held)
    counts.created += sum(1 for doc in batch if doc.id not in held)


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
