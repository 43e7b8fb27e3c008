"""Deleting the documents a query listed, as Elasticsearch's ``_delete_by_query`` does: each
one only if it is still the document the listing saw (internal versioning).

The ids are listed first (by a filter or a match query: ``semrank.pipeline``), with the
index's ``generation`` read just before. Then, a batch at a time, each id's version is read
(``get_versioned``): one written since the listing (``written_since``) or gone is a version
conflict, left as it is; the others are deleted only if still stored with the ``seq_no`` read
(``Store.delete_unchanged``, one transaction per batch), so a write landing between that read
and the delete is a conflict too, never a lost update. ``conflicts="abort"`` stops after the
batch that met the first conflict (its other deletes stay, as Elasticsearch's bulk requests
do), ``"proceed"`` counts them and goes on.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

from semrank.store._base import PRIMARY_TERM, DocumentVersion, Store, check_batch_size, id_list
from semrank.store._reindex import check_conflicts


@dataclass(frozen=True, kw_only=True)
class DeleteConflict:
    """A listed document left as it is: ``now`` its version (None: deleted since), and the
    ``seq_no`` the delete required (None: it was seen written since the listing before its
    version was read)."""

    id: str
    now: DocumentVersion | None
    required_seq_no: int | None = None

    @property
    def reason(self) -> str:
        """Elasticsearch's ``version_conflict_engine_exception`` reason."""
        if self.required_seq_no is None:
            what = "deleted" if self.now is None else f"written (seqNo [{self.now.seq_no}])"
            return f"[{self.id}]: version conflict, document {what} since the query listed it"
        required = f"required seqNo [{self.required_seq_no}], primary term [{PRIMARY_TERM}]"
        if self.now is None:
            return f"[{self.id}]: version conflict, {required}. but no document was found"
        return (
            f"[{self.id}]: version conflict, {required}. current document has seqNo "
            f"[{self.now.seq_no}] and primary term [{self.now.primary_term}]"
        )


@dataclass(frozen=True, kw_only=True)
class DeleteCounts:
    """What ``delete_listed`` did: ``total`` documents acted on (``deleted`` and
    ``conflicts``), in ``batches`` (pages of ids, each deleted in one transaction); whether
    it ``stopped`` at a conflict (``conflicts="abort"``) before reaching every listed id."""

    total: int = 0
    deleted: int = 0
    conflicts: tuple[DeleteConflict, ...] = ()
    batches: int = 0
    stopped: bool = False

    def __add__(self, other: DeleteCounts) -> DeleteCounts:
        return DeleteCounts(
            total=self.total + other.total,
            deleted=self.deleted + other.deleted,
            conflicts=self.conflicts + other.conflicts,
            batches=self.batches + other.batches,
            stopped=self.stopped or other.stopped,
        )


def delete_listed(
    store: Store,
    ids: Iterable[str],
    *,
    listed_at: int,
    conflicts: str = "abort",
    max_docs: int | None = None,
    batch_size: int = 1000,
) -> DeleteCounts:
    """Delete the documents ``ids`` of ``store``, listed when its ``generation`` was
    ``listed_at`` (read before the listing), ``batch_size`` at a time, each only if not
    written since: the others are ``conflicts``. At most ``max_docs`` deleted (conflicts do
    not count, as with Elasticsearch's ``conflicts=proceed``)."""
    abort = "stop after the batch that met a document written since it was listed"
    check_conflicts(conflicts, max_docs, abort=abort, done="deleted")
    check_batch_size(batch_size)
    listed = iter(dict.fromkeys(id_list(list(ids))))
    counts = DeleteCounts()
    while page := _next_page(listed, batch_size, max_docs, counts.deleted):
        done = _delete_page(store, page, listed_at)
        counts += done
        if done.conflicts and conflicts == "abort":
            return replace(counts, stopped=True)
    return counts


def _next_page(
    ids: Iterator[str], batch_size: int, max_docs: int | None, deleted: int
) -> list[str]:
    """The next ids of ``ids``, none past ``max_docs`` deleted."""
    room = batch_size if max_docs is None else min(batch_size, max_docs - deleted)
    return list(itertools.islice(ids, max(room, 0)))


def _delete_page(store: Store, page: list[str], listed_at: int) -> DeleteCounts:
    found = store.get_versioned(page)
    moved = store.written_since(page, listed_at)
    seen: dict[str, int] = {}
    conflicts: list[DeleteConflict] = []
    for doc_id, doc in zip(page, found, strict=True):
        if doc is None or doc_id in moved:  # not the document the listing saw
            conflicts.append(DeleteConflict(id=doc_id, now=None if doc is None else doc.version))
        else:
            seen[doc_id] = doc.version.seq_no
    deleted = 0
    if seen:
        done = store.delete_unchanged(seen)
        deleted = done.deleted
        conflicts += [
            DeleteConflict(id=i, now=now, required_seq_no=seen[i])
            for i, now in done.conflicts.items()
        ]
    return DeleteCounts(total=len(page), deleted=deleted, conflicts=tuple(conflicts), batches=1)
