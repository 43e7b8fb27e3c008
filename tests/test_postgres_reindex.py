"""``semrank.store.reindex`` on PostgreSQL, and across the embedded store and PostgreSQL: the
checks of test_store_reindex.py. A real PostgreSQL server (see test_postgres_server.py);
skipped when it is not installed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from semrank.store import Store, create_index, create_index_like, drop_index
from test_postgres_server import pg_database, pg_dsn, pg_server  # noqa: F401 (fixtures)
from test_store_reindex import CHECKS, HashingEmbedder, MakeDest, fill

# (where the source lives, where the copy goes): "pg" or "local".
PLACES = [("pg", "pg"), ("local", "pg"), ("pg", "local")]


@pytest.mark.parametrize("places", PLACES, ids=["-".join(p) for p in PLACES])
@pytest.mark.parametrize("check", CHECKS)
def test_reindex_on_postgres_and_across_stores(
    check: Callable[[Store, MakeDest], None],
    places: tuple[str, str],
    pg_dsn: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    where: dict[str, dict[str, Any]] = {"pg": {"store": pg_dsn}, "local": {"home": tmp_path}}
    made: list[str] = []

    def make_dest(source: Store, name: str, embedder: Any = None) -> Store:
        made.append(name)
        embedder = embedder or HashingEmbedder()
        return create_index_like(source, name, **where[places[1]], embedder=embedder)

    options = {"embedding_model": "default", "embedder": HashingEmbedder()}
    source = create_index("src", **where[places[0]], **options)  # type: ignore[call-overload]
    try:
        with fill(source):
            check(source, make_dest)
    finally:
        if places[1] == "pg":
            for name in made:
                drop_index(name, store=pg_dsn)
        if places[0] == "pg":
            drop_index("src", store=pg_dsn)
