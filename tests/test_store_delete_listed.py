"""Deleting the documents a query listed only where they are still the ones it saw
(Elasticsearch's _delete_by_query, internal versioning), on the embedded store; the checks
are shared with the PostgreSQL tests (test_postgres_versions.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from semrank.store import Store, create_index, delete_listed, open_index

DOCS = [{"id": i, "text": f"text {i}", "tenant": "acme"} for i in "abcd"]
ACME = {"term": {"tenant": "acme"}}


def racing(index: Store, write: Callable[[], None]) -> None:
    """Make ``index`` run ``write`` (another writer's) once, right after its first
    ``written_since``: the last read ``delete_listed`` makes of a batch before deleting it,
    so the write lands between the versions read and the delete's transaction."""
    base = type(index)
    done: list[bool] = []

    class Racing(base):  # type: ignore[valid-type,misc]
        def written_since(self, ids: Any, generation: int) -> set[str]:
            found: set[str] = super().written_since(ids, generation)
            if not done:
                done.append(True)
                write()
            return found

    index.__class__ = Racing


def check_written_since_the_listing_is_a_conflict(index: Store, other: Store) -> None:
    """A document changed, and one deleted, by another writer after the listing are left as
    they are and counted as conflicts; the others are deleted."""
    index.upsert(DOCS)
    listed_at = index.generation
    ids = index.ids_matching(ACME)
    assert sorted(ids) == ["a", "b", "c", "d"]
    other.upsert([{"id": "a", "text": "changed", "tenant": "acme"}])
    other.delete(["b"])
    done = delete_listed(index, ids, listed_at=listed_at, conflicts="proceed")
    assert (done.total, done.deleted, done.stopped) == (4, 2, False)
    assert {c.id: c.reason for c in done.conflicts} == {
        "a": f"[a]: version conflict, document written (seqNo [{_seq_no(index, 'a')}]) since "
        "the query listed it",
        "b": "[b]: version conflict, document deleted since the query listed it",
    }
    assert index.get(["a", "b", "c", "d"]) == [
        {"text": "changed", "tenant": "acme"},
        None,
        None,
        None,
    ]


def check_a_write_before_the_delete_is_a_conflict(index: Store, other: Store) -> None:
    """A write landing between the versions read and the delete is a conflict too (the
    delete is conditioned on the seq_no read); abort stops after that batch."""
    index.upsert(DOCS)
    listed_at = index.generation
    ids = sorted(index.ids_matching(ACME))
    racing(index, lambda: other.upsert([{"id": "a", "text": "mine", "tenant": "acme"}]))
    done = delete_listed(index, ids, listed_at=listed_at, batch_size=2)
    assert (done.total, done.deleted, done.batches, done.stopped) == (2, 1, 1, True)
    (conflict,) = done.conflicts
    assert conflict.id == "a" and conflict.now is not None
    assert conflict.now.version == 2 and conflict.required_seq_no == 1  # a, written first
    assert "required seqNo" in conflict.reason and "current document has seqNo" in conflict.reason
    assert [d is not None for d in index.get(["a", "b", "c", "d"])] == [True, False, True, True]
    assert index.get(["a"]) == [{"text": "mine", "tenant": "acme"}]  # the other write kept


def check_max_docs_counts_deletes_not_conflicts(index: Store, other: Store) -> None:
    index.upsert(DOCS)
    listed_at = index.generation
    ids = sorted(index.ids_matching(ACME))
    other.delete(["a"])
    done = delete_listed(index, ids, listed_at=listed_at, conflicts="proceed", max_docs=2)
    assert (done.total, done.deleted, len(done.conflicts)) == (3, 2, 1)
    assert [d is not None for d in index.get(["b", "c", "d"])] == [False, False, True]


def _seq_no(index: Store, doc_id: str) -> int:
    (doc,) = index.get_versioned([doc_id])
    assert doc is not None
    return doc.version.seq_no


CHECKS = [
    check_written_since_the_listing_is_a_conflict,
    check_a_write_before_the_delete_is_a_conflict,
    check_max_docs_counts_deletes_not_conflicts,
]


@pytest.mark.parametrize("check", CHECKS)
def test_delete_listed_on_the_embedded_store(
    tmp_path: Path, check: Callable[[Store, Store], None]
) -> None:
    with (
        create_index("v", home=tmp_path, embedding_model=None) as index,
        open_index("v", home=tmp_path) as other,
    ):
        check(index, other)


def test_bad_options_are_refused_naming_them(tmp_path: Path) -> None:
    from semrank.errors import InvalidInputError

    with create_index("v", home=tmp_path, embedding_model=None) as index:
        with pytest.raises(InvalidInputError, match="conflicts 'skip'"):
            delete_listed(index, [], listed_at=0, conflicts="skip")
        with pytest.raises(InvalidInputError, match="max_docs"):
            delete_listed(index, [], listed_at=0, max_docs=0)


@pytest.mark.parametrize("check", CHECKS)
def test_the_default_delete_unchanged_of_a_store_of_ones_own(
    tmp_path: Path, check: Callable[[Store, Store], None]
) -> None:
    """``Store.delete_unchanged`` as a store without its own has it (over
    ``update_versioned``), here over the embedded store's update: the same answers."""
    with (
        create_index("v", home=tmp_path, embedding_model=None) as index,
        open_index("v", home=tmp_path) as other,
    ):

        class ByUpdate(type(index)):  # type: ignore[misc]
            delete_unchanged = Store.delete_unchanged

        index.__class__ = ByUpdate
        check(index, other)
