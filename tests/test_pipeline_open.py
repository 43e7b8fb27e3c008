"""Indexes kept open across searches (``semrank.pipeline.using_index``): a drop, or a newer
handle replacing a stale one, never closes a handle under a search still using it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from semrank.errors import IndexNotFoundError
from semrank.pipeline import forget_open_indexes, open_cached, search, using_index
from semrank.store import create_index, drop_index

DOCS = [
    {"id": "a", "text": "fleas feed on blood"},
    {"id": "b", "text": "Paris is the capital of France"},
]


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    pytest.importorskip("bm25s")
    with create_index("docs", home=tmp_path, fields=("text",), embedding_model=None) as index:
        index.upsert(DOCS)
    yield tmp_path
    forget_open_indexes()


def _ids(results: object) -> list[str]:
    return [hit.id for hit in results.hits]  # type: ignore[attr-defined]


def test_an_index_let_go_stays_open_until_its_last_search_ends(home: Path) -> None:
    """An HTTP drop lets go of the handle while other requests search with it: they finish
    (or get "index dropped", a 404), never a closed database (a 500)."""
    with using_index("docs", home) as held:
        forget_open_indexes("docs", home)
        assert _ids(search(held, "fleas", k=1)) == ["a"]  # still open for this search
        drop_index("docs", home=home)
        with pytest.raises(IndexNotFoundError, match="was dropped"):
            search(held, "fleas", k=1)
    with pytest.raises(Exception, match="closed"):  # closed once its last user is done
        search(held, "fleas", k=1)
    with pytest.raises(IndexNotFoundError):
        search("docs", "fleas", home=home)


def test_an_index_created_again_replaces_the_held_handle_after_its_users(home: Path) -> None:
    with using_index("docs", home) as old:
        drop_index("docs", home=home)
        with create_index("docs", home=home, fields=("text",), embedding_model=None) as new:
            new.upsert([{"id": "z", "text": "fleas again"}])
        assert _ids(search("docs", "fleas", k=5, home=home)) == ["z"]  # the new index
        with pytest.raises(IndexNotFoundError, match="was dropped"):  # not "is closed"
            search(old, "fleas", k=5)
    assert open_cached("docs", home) is not old


def test_a_handle_is_shared_while_its_index_is_unchanged(home: Path) -> None:
    with using_index("docs", home) as first, using_index("docs", home) as second:
        assert first is second
    assert open_cached("docs", home) is first
