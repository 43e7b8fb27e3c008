"""Document filters on the PostgreSQL store: SQL/JSON path in SQL, agreeing with the reference
semantics (``semrank.retrieve.matches``, tests/test_filter.py) document for document, and
applied before the top k (BM25 and vector search return k hits whenever k documents pass).

A real PostgreSQL server (see test_postgres_server.py); skipped when it is not installed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta, timezone
from math import ceil, floor, fsum, inf
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from semrank.errors import InvalidInputError
from semrank.pipeline import search as pipeline_search
from semrank.retrieve import document_values, matches, parse_filter, resolved
from semrank.retrieve._dateformat import zone_of
from semrank.store import create_index
from semrank.store.postgres import PostgresStore
from test_filter import (
    _MS,
    CALENDAR_END,
    CALENDAR_END_DATES,
    DATED_DOCS,
    NOW,
    OFFSET_BOUNDS,
    PLAIN_DATES,
    PLAIN_UNROUNDED,
    ROUNDING,
    UNROUNDED,
    ZONED_RANGES,
    _date_math_docs,
    zoned_docs,
)
from test_pipeline_tree import DAILY, MULTI_DATED_DOCS
from test_postgres_server import pg_database, pg_dsn, pg_server  # noqa: F401 (fixtures)
from test_postgres_store import HashingEmbedder

LANGS = ["en", "EN", "de", "fr", "Ünïcödé", "ÜNÏCÖDÉ", "日本語", "Ελληνικά", "ΕΛΛΗΝΙΚΆ"]
TAGS = ["ml", "ir", "nlp", "db", "ML"]
SHAPES = [None, [], {}, [[]], "x"]


def _number(rng: random.Random) -> Any:
    """A year as an int, a float, a string, a boolean or a list of them."""
    year = rng.randint(2015, 2024)
    return rng.choice(
        [
            year,
            float(year),
            year + 0.5,
            str(year),
            str(year),
            True,
            False,
            None,
            [year, year - 3],
            [[year]],
        ]
    )


def _document(n: int, rng: random.Random) -> dict[str, Any]:
    doc: dict[str, Any] = {"text": f"common words of document {n}"}
    doc["lang"] = rng.choice([*LANGS, None, [rng.choice(LANGS), "de"], [], [["fr"]]])
    doc["year"] = _number(rng)
    if rng.random() < 0.7:
        doc["tags"] = rng.sample(TAGS, rng.randint(0, 3))
    choice = rng.randrange(6)
    if choice == 0:
        doc["meta"] = {"source": rng.choice(["arxiv", "acl"]), "score": rng.choice([1, 2.5, "3"])}
    elif choice == 1:
        doc["meta"] = [{"source": "acl"}, {"source": rng.choice(["arxiv", None])}]
    elif choice == 2:
        doc["meta.source"] = rng.choice(["arxiv", "dotted"])  # a key holding a dot
        doc["meta"] = {"source": "hidden"}  # the longer key wins: never read
    elif choice == 3:
        doc["meta"] = rng.choice([*SHAPES, {"source": None}, {"deep": {"x": [None, 0]}}])
    if rng.random() < 0.3:
        doc["title.keyword"] = rng.choice(["Exact", None])
    if rng.random() < 0.6:
        doc["title"] = rng.choice(["Exact", "exact", "Other", {"keyword": "nested"}])
    if rng.random() < 0.3:
        # A nested key holding a dot, before the nested object of the same path.
        doc["a"] = rng.choice([{"b.c": rng.choice([1, 2]), "b": {"c": 3}}, {"b": {"c": 3}}])
    if rng.random() < 0.3:
        doc["a.b"] = rng.choice([{"c": 4}, {"d": 5}, [{"c": 4}, {"c": 6}]])
    if rng.random() < 0.4:
        doc["draft"] = rng.choice([True, False, 0, 1, "true", None])
    if rng.random() < 0.3:
        doc['quo"te\\key'] = rng.choice(["q", "Q"])
    if rng.random() < 0.2:
        doc["ключ"] = rng.choice(["знач", ["x", [["знач"]]]])
    if rng.random() < 0.3:
        doc["date"] = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    doc["when"] = _when(random.Random(n))  # its own draws: the fields above stay as they were
    doc["points"] = random.Random(-n).choice(REPEATS)  # the same: own draws
    return doc


# Values repeated in one document: buckets count the document once, metrics each number.
REPEATS = [[3, 3], [3, 3.0, 4], [True, True], ["a", "a", "b"], 2, [2.5, [2.5, 7]], None]


def _when(rng: random.Random) -> Any:
    """A date as ISO 8601 (UTC, an offset, a day) or epoch milliseconds, several in one
    document (often in one day or month), or no date; from late October 2023 (Paris and New
    York leave summer time) to early April 2024 (they enter it), often near midnight."""
    instant = datetime(2023, 10, 25, tzinfo=UTC) + timedelta(
        days=rng.randint(0, 162), hours=rng.choice([0, 1, 4, 22, 23, rng.randint(0, 23)]),
        minutes=rng.choice([0, 30, 59]),
    )  # fmt: skip
    forms = [
        instant.strftime("%Y-%m-%dT%H:%M:%SZ"),
        instant.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat(),
        instant.astimezone(timezone(timedelta(hours=-8))).isoformat(),
        instant.strftime("%Y-%m-%d"),
        (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1),
    ]
    later = instant + timedelta(hours=rng.choice([1, 30, 24 * 20]))
    return rng.choice(
        [*forms, [forms[0], later.isoformat()], [forms[3], forms[4]], "soon", None, True]
    )


def corpus() -> dict[str, dict[str, Any]]:
    rng = random.Random(20261207)
    return {f"doc{n:03d}": _document(n, rng) for n in range(200)}


FILTERS: list[Any] = [
    {"term": {"lang": "en"}},
    {"term": {"lang": {"value": "en", "case_insensitive": True}}},
    {"term": {"lang": {"value": "ünïcödé", "case_insensitive": True}}},
    {"term": {"lang": {"value": "ελληνικά", "case_insensitive": True}}},
    {"term": {"lang": "日本語"}},
    {"term": {"lang": "fr"}},  # also inside [["fr"]]
    {"terms": {"lang": ["de", "fr", "nope"]}},
    {"term": {"lang.keyword": "de"}},
    {"term": {"year": 2019}},
    {"term": {"year": 2019.0}},
    {"term": {"year": "2019"}},
    {"term": {"year": True}},
    {"terms": {"year": [2020.5, 2016, False]}},
    {"range": {"year": {"gte": 2018, "lt": 2021}}},
    {"range": {"year": {"gt": 2020.5}}},
    {"range": {"year": {"lte": "2018"}}},
    {"range": {"date": {"gte": "2024-03-01", "lte": "2024-06-30"}}},
    {"range": {"lang": {"gt": "en"}}},  # code point order: "日本語" > "Ünïcödé" > "en"
    {"exists": {"field": "lang"}},  # null, [], [[]] do not exist
    {"exists": {"field": "meta"}},  # an object exists when a value inside it does
    {"exists": {"field": "meta.source"}},
    {"exists": {"field": "tags"}},
    {"exists": {"field": "title.keyword"}},
    {"exists": {"field": "nothing"}},
    {"term": {"meta.source": "arxiv"}},  # objects, arrays of objects and the dotted key
    {"term": {"meta.source": "hidden"}},  # shadowed by "meta.source": never found
    {"term": {"meta.score": 2.5}},
    {"term": {"title.keyword": "Exact"}},  # the key, else title (not when the key is null)
    {"term": {"title.keyword": {"value": "EXACT", "case_insensitive": True}}},
    {"term": {"title.keyword": "nested"}},  # title: {"keyword": ...}
    {"term": {"a.b.c": 1}},
    {"term": {"a.b.c": 3}},  # unless shadowed by a's "b.c" key
    {"terms": {"a.b.c": [4, 6]}},
    {"term": {'quo"te\\key': "q"}},
    {"term": {"ключ": "знач"}},  # also three arrays deep
    {"exists": {"field": "a.b"}},
    {"range": {"meta.score": {"gte": 1, "lte": 2.5}}},
    {"term": {"draft": True}},
    {"term": {"draft": 1}},
    {"terms": {"tags": ["ml", "db"]}},
    {"term": {"tags": {"value": "ml", "case_insensitive": True}}},
    {"ids": {"values": ["doc001", "doc050", "doc199", "nope"]}},
    # Text PostgreSQL cannot hold (NUL, lone surrogates) matches nothing, not a driver error.
    {"ids": {"values": ["doc001", "\x00", "\ud800"]}},
    {"terms": {"lang": ["en\x00", "\ud800", "de"]}},
    {
        "bool": {
            "should": [
                {"term": {"lang": {"value": "\udc00", "case_insensitive": True}}},
                {"term": {"lang": "fr"}},
            ]
        }
    },
    {"bool": {"must": {"exists": {"field": "tags"}}, "must_not": {"term": {"la\ud800ng": "en"}}}},
    {"match_all": {}},
    [{"exists": {"field": "tags"}}, {"range": {"year": {"gte": 2020}}}],
    {"bool": {"must_not": [{"term": {"lang": "en"}}, {"exists": {"field": "draft"}}]}},
    {"bool": {"should": [{"term": {"lang": "de"}}, {"term": {"tags": "ir"}}]}},
    {
        "bool": {
            "should": [
                {"term": {"lang": "de"}},
                {"term": {"tags": "ir"}},
                {"exists": {"field": "meta"}},
            ],
            "minimum_should_match": 2,
        }
    },
    {
        "bool": {
            "filter": {"exists": {"field": "year"}},
            "should": {"term": {"lang": "x"}},
            "must_not": {"bool": {"should": [{"ids": {"values": ["doc002"]}}]}},
        }
    },
]


@pytest.fixture(scope="module", params=["planner's choice", "index scans"])
def filtered(pg_server, request) -> Iterator[tuple[PostgresStore, dict[str, dict[str, Any]]]]:  # type: ignore[no-untyped-def]  # noqa: F811
    """One index of the generated corpus for every parity case (one database for the module),
    searched as the planner chooses (sequential scans of so few rows) and with sequential scans
    off, so that the GIN index on ``doc`` finds the rows a term filter's conjunct passes."""
    settings = ["enable_seqscan = off"] if request.param == "index scans" else []
    with filled_database(pg_server, corpus(), settings) as (store, docs):
        yield store, docs


@contextmanager
def filled_database(
    server: Any, docs: dict[str, dict[str, Any]], settings: Sequence[str] = ()
) -> Iterator[tuple[PostgresStore, dict[str, dict[str, Any]]]]:
    """An index of ``docs`` in a database of its own (``settings``: ``ALTER DATABASE ... SET``
    each), dropped after."""
    import uuid

    import psycopg

    database = f"filters_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
        for setting in settings:
            conn.execute(f'ALTER DATABASE "{database}" SET {setting}')
    store = create_index("f", store=server.dsn(database), embedder=HashingEmbedder())
    assert isinstance(store, PostgresStore)
    store.upsert([{"id": doc_id, **doc} for doc_id, doc in docs.items()])
    yield store, docs
    store.close()
    with psycopg.connect(server.dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.mark.parametrize("spec", FILTERS, ids=[str(n) for n in range(len(FILTERS))])
def test_filter_parity_with_the_reference(filtered, spec: Any) -> None:  # type: ignore[no-untyped-def]
    """The documents PostgreSQL lets through are the reference's, shape for shape."""
    store, docs = filtered
    flt = parse_filter(spec)
    expected = sorted(doc_id for doc_id, doc in docs.items() if matches(flt, doc_id, doc))
    hits = store.search_bm25("common", k=1000, filter=flt)  # every document holds "common"
    assert sorted(hits.ids.tolist()) == expected, spec
    vector = HashingEmbedder().embed(["common words"])[0]
    assert sorted(store.search_vector(vector, k=1000, filter=flt).ids.tolist()) == expected


def test_matching_id_pages_list_the_reference_and_embedded_documents(  # type: ignore[no-untyped-def]
    filtered, tmp_path: Path
) -> None:
    """A scroll's listing in the store's order, a page at a time: PostgreSQL's (by id, keyset
    pages), the embedded store's (its filter table, first written first) and the default's
    (documents read) are the reference's documents, each once, in pages of at most 7."""
    from semrank.store import Store

    store, docs = filtered
    local = create_index("f", home=tmp_path, embedding_model=None)
    local.upsert([{"id": doc_id, **doc} for doc_id, doc in reversed(docs.items())])
    for spec in FILTERS:
        flt = parse_filter(spec)
        expected = [doc_id for doc_id in reversed(docs) if matches(flt, doc_id, docs[doc_id])]
        listed = {
            "postgresql": list(store.matching_id_pages(spec, 7)),
            "embedded": list(local.matching_id_pages(spec, 7)),
            "default": list(Store.matching_id_pages(local, spec, 7)),
        }
        for name, pages in listed.items():
            assert all(0 < len(page) <= 7 for page in pages), (name, spec)
            ids = [doc_id for page in pages for doc_id in page]
            order = sorted(expected) if name == "postgresql" else expected
            assert ids == order, (name, spec)
    local.close()


INDEXED_FILTERS: list[Any] = [
    {"term": {"lang": "en"}},
    {"terms": {"year": [2020.5, 2016, False]}},
    {"term": {"meta.source": "arxiv"}},  # dotted: nested, arrays of objects, the dotted key
    {"term": {"title.keyword": "Exact"}},  # the key, else the field without the suffix
    {"bool": {"should": [{"term": {"lang": "de"}}, {"term": {"tags": "ir"}}]}},
    [{"term": {"tags": "ml"}}, {"range": {"year": {"gte": 2020}}}],
]


@pytest.mark.parametrize("spec", INDEXED_FILTERS, ids=[str(n) for n in range(len(INDEXED_FILTERS))])
def test_term_filters_can_be_served_by_the_gin_index_on_doc(filtered, spec: Any) -> None:  # type: ignore[no-untyped-def]
    """Every filtered search read the whole partition (jsonb_path_exists, which no index
    serves); a term's condition now holds a ``doc @? jsonpath`` conjunct the GIN index on
    ``doc`` finds the rows for, when the planner finds it cheaper (here: sequential scans off)."""
    from psycopg import sql

    from semrank.store.postgres import _queries
    from semrank.store.postgres._filters import filter_condition

    store, docs = filtered
    keep, args = filter_condition(parse_filter(spec))
    vector = HashingEmbedder().embed(["common words"])[0]
    args.update(vector=_queries.vector_literal(vector), k=1000)
    explain = sql.SQL("EXPLAIN ") + _queries.knn_query(store._part, keep)
    with store._connection() as conn:
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(row[0] for row in conn.execute(explain, args).fetchall())
        gin = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'semrank' AND tablename = %s "
            "AND indexdef LIKE '%%(doc jsonb_path_ops)%%'",
            (store._part_name.split(".")[1],),
        ).fetchone()
        conn.execute("RESET enable_seqscan")
    assert gin is not None and f"Bitmap Index Scan on {gin[0]}" in plan, plan
    flt = parse_filter(spec)
    expected = sorted(doc_id for doc_id, doc in docs.items() if matches(flt, doc_id, doc))
    assert 0 < len(expected) < len(docs)
    assert sorted(store.search_vector(vector, k=1000, filter=flt).ids.tolist()) == expected
    assert store.ids_matching(spec) == expected


def test_postgresql_searches_take_a_filter_as_json(filtered) -> None:  # type: ignore[no-untyped-def]
    """A filter given as JSON reached the SQL builder as it was: AttributeError 'dict' object
    has no attribute 'field'. It is parsed, as delete_matching's is."""
    from semrank.errors import InvalidInputError

    store, _docs = filtered
    spec = {"term": {"lang": "en"}}
    vector = HashingEmbedder().embed(["common words"])[0]
    searches = {
        "bm25": lambda flt: store.search_bm25("common", k=1000, filter=flt),
        "fields": lambda flt: store.search_bm25_fields(
            "common", k=1000, fields=[("text", 1.0)], filter=flt
        ),
        "vector": lambda flt: store.search_vector(vector, k=1000, filter=flt),
    }
    for name, run in searches.items():
        parsed = run(parse_filter(spec))
        assert len(parsed) > 0, name
        assert sorted(run(spec).ids.tolist()) == sorted(parsed.ids.tolist()), name
        with pytest.raises(InvalidInputError, match="filter: 'match' is not a supported filter"):
            run({"match": {"text": "common"}})


def test_the_parity_corpus_tells_the_filters_apart(filtered) -> None:  # type: ignore[no-untyped-def]
    """Each filter passes some documents and not others (but match_all and the shadowed keys):
    a corpus every filter passed whole, or not at all, would prove nothing."""
    _, docs = filtered
    counts = [sum(matches(parse_filter(s), i, d) for i, d in docs.items()) for s in FILTERS]
    trivial = [FILTERS[n] for n, count in enumerate(counts) if count in (0, len(docs))]
    assert trivial == [
        {"exists": {"field": "nothing"}},
        {"term": {"meta.source": "hidden"}},
        {"match_all": {}},
    ], counts


def test_filtered_searches_return_the_top_k_of_the_passing_documents(filtered) -> None:  # type: ignore[no-untyped-def]
    """A pre-filter: the k best of the documents that pass, scored as without the filter (BM25's
    statistics are the whole index's, as in Elasticsearch's filter context)."""
    store, docs = filtered
    flt = parse_filter({"bool": {"must_not": {"exists": {"field": "tags"}}}})
    passing = {doc_id for doc_id, doc in docs.items() if matches(flt, doc_id, doc)}
    vector = HashingEmbedder().embed(["document words 17"])[0]
    searches = {
        "bm25": lambda **kw: store.search_bm25("document 17 words", **kw),
        "bm25 text": lambda **kw: store.search_bm25("document 17 words", field="text", **kw),
        "bm25 fields": lambda **kw: store.search_bm25_fields(
            "exact document", fields=[("text", 1.0), ("title", 2.0)], mode="most_fields", **kw
        ),
        "vector": lambda **kw: store.search_vector(vector, **kw),
    }
    for name, search in searches.items():
        every = search(k=1000)
        ranked = [(i, s) for i, s in zip(every.ids, every.scores, strict=True) if i in passing]
        hits = search(k=7, filter=flt)
        # The best scores of the passing documents, each hit passing (ties are in any order).
        assert len(ranked) >= 7 and set(hits.ids.tolist()) <= passing, name
        assert hits.scores.tolist() == pytest.approx([s for _, s in ranked[:7]]), name


def test_a_filtered_retriever_tree_searches_the_postgresql_store(filtered) -> None:  # type: ignore[no-untyped-def]
    """Filters set on a tree's nodes and on the whole search reach the PostgreSQL store's
    searches (a store whose searches took no filter refused filtered trees)."""
    from semrank.pipeline import BM25, RRF, Knn, search

    store, docs = filtered
    english = {"term": {"lang": "en"}}
    no_tags = {"bool": {"must_not": {"exists": {"field": "tags"}}}}
    both = parse_filter([english, no_tags])
    passing = {doc_id for doc_id, doc in docs.items() if matches(both, doc_id, doc)}
    untagged = {
        doc_id for doc_id, doc in docs.items() if matches(parse_filter(no_tags), doc_id, doc)
    }
    tree = RRF((BM25(filter=english), Knn()), rank_window_size=50)
    found = search(store, "common words", retriever=tree, k=20, filter=no_tags)
    assert found.ids and set(found.ids) <= untagged  # the knn child passes no_tags only
    assert set(found.ids) & passing and set(found.ids) - passing
    unfiltered = search(store, "common words", retriever=BM25(), k=len(docs))
    expected = [i for i in unfiltered.ids if i in passing][:5]
    assert search(store, "common words", k=5, filter=both).ids == expected


@pytest.fixture
def hnsw_index(pg_server, pg_dsn: str) -> Iterator[tuple[PostgresStore, list[str]]]:  # type: ignore[no-untyped-def]  # noqa: F811
    """1,200 documents in an HNSW index, 12 of them in a "rare" group."""
    import psycopg

    rng = np.random.default_rng(5)
    words = [f"w{n}" for n in range(300)]
    rare = [f"x{n:04d}" for n in range(0, 1200, 100)]
    docs = [
        {"id": f"x{n:04d}", "text": " ".join(rng.choice(words, 8)), "group": "common"}
        for n in range(1200)
    ]
    for doc in docs:
        if doc["id"] in rare:
            doc["group"] = "rare"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # the index scan, as on large tables
        database = conn.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
        conn.execute(f'ALTER DATABASE "{database}" SET enable_seqscan = off')
    store = create_index("hnsw", store=pg_dsn, embedder=HashingEmbedder(), ann_threshold=3)
    assert isinstance(store, PostgresStore)
    store.upsert(docs)
    assert store.info().vector_search == "hnsw"
    yield store, rare
    store.close()


def _exact_top(store: PostgresStore, ids: list[str], vector: np.ndarray, k: int) -> list[str]:
    texts = [doc["text"] for doc in store.get(ids) if doc is not None]
    scores = HashingEmbedder().embed(texts) @ vector
    return [ids[n] for n in np.argsort(-scores, kind="stable")[:k]]


def test_a_selective_filter_still_gets_k_hits_from_hnsw(hnsw_index, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """pgvector filters the rows its HNSW scan finds, ef_search (40) of them: 12 documents in
    1,200 left about one in the beam. pgvector 0.8's iterative scan goes on to k hits (the
    exact search redone when it falls short is kept out of this test)."""
    store, rare = hnsw_index
    monkeypatch.setattr(store, "has_hnsw", lambda: False)
    vector = HashingEmbedder().embed(["w1 w2 w3 w4"])[0]
    hits = store.search_vector(vector, k=10, filter=parse_filter({"term": {"group": "rare"}}))
    assert len(hits) == 10 and set(hits.ids.tolist()) <= set(rare)  # approximate: any 10 rare
    assert bool(np.all(np.diff(hits.scores) <= 1e-6))


def test_without_iterative_scans_a_selective_filter_searches_exactly(hnsw_index) -> None:  # type: ignore[no-untyped-def]
    """pgvector before 0.8 stops at ef_search rows: fewer than k passing, the search is redone
    exactly (as the server's pgvector would answer without the iterative scan)."""
    store, rare = hnsw_index
    store._has_iterative = False  # the server's pgvector as 0.7 reads it
    vector = HashingEmbedder().embed(["w5 w6 w7 w8"])[0]
    hits = store.search_vector(vector, k=10, filter=parse_filter({"term": {"group": "rare"}}))
    assert sorted(hits.ids.tolist()) == sorted(_exact_top(store, rare, vector, 10))


def test_a_range_bound_postgres_cannot_compare_is_refused(filtered) -> None:  # type: ignore[no-untyped-def]
    """A driver error (HTTP 500) before; the bound orders among stored text, so it is not
    dropped as a term's value is, but named."""
    from semrank.errors import InvalidInputError

    store, _ = filtered
    flt = parse_filter({"range": {"lang": {"gt": "a\ud800"}}})
    with pytest.raises(InvalidInputError, match=r"range.lang: the bound 'a\\ud800' holds"):
        store.search_bm25("common", k=5, filter=flt)


# --- deleting by filter ------------------------------------------------------------------------
def _index_row(dsn: str, name: str) -> tuple[int, int, int, int]:
    """(doc_count, total_length) as kept, and as the partition's rows add up."""
    import psycopg

    from semrank.store.postgres import partition_name

    with psycopg.connect(dsn) as conn:
        kept = conn.execute(
            "SELECT doc_count, total_length FROM semrank.indexes WHERE name = %s", (name,)
        ).fetchone()
        rows = conn.execute(
            f"SELECT count(*), coalesce(sum(terms_length), 0) FROM semrank.{partition_name(name)}"
        ).fetchone()
    assert kept is not None and rows is not None
    return int(kept[0]), int(kept[1]), int(rows[0]), int(rows[1])


@pytest.mark.parametrize(
    "spec",
    [
        {"term": {"lang": {"value": "en", "case_insensitive": True}}},
        {"bool": {"should": [{"term": {"lang": "de"}}, {"term": {"tags": "ir"}}]}},
        {"ids": {"values": ["doc001", "\x00", "doc050", "nope"]}},
    ],
)
def test_delete_matching_on_postgresql_keeps_the_index_statistics(pg_dsn: str, spec: Any) -> None:  # noqa: F811
    """The reference's documents go in one statement; doc_count and total_length stay what a
    delete by id leaves (BM25 of the rest scores as an index holding only them)."""
    docs = corpus()
    flt = parse_filter(spec)
    doomed = sorted(doc_id for doc_id, doc in docs.items() if matches(flt, doc_id, doc))
    survivors = [{"id": i, **doc} for i, doc in docs.items() if i not in doomed]
    index = create_index("f", store=pg_dsn, embedder=HashingEmbedder())
    fresh = create_index("fresh", store=pg_dsn, embedder=HashingEmbedder())
    assert isinstance(index, PostgresStore)
    index.upsert([{"id": doc_id, **doc} for doc_id, doc in docs.items()])
    fresh.upsert(survivors)
    generation = index.generation
    assert index.ids_matching(spec) == doomed  # a dry run's list, by id
    assert index.delete_matching(spec) == len(doomed) > 0
    assert index.generation == generation + 1 and len(index) == len(survivors)
    assert index.get(doomed) == [None] * len(doomed)
    count, length, rows, row_length = _index_row(pg_dsn, "f")
    assert (count, length) == (rows, row_length) == _index_row(pg_dsn, "fresh")[:2]
    for query in ("common words", "document 17"):
        got, want = index.search_bm25(query, k=300), fresh.search_bm25(query, k=300)
        assert sorted(got.ids.tolist()) == sorted(want.ids.tolist())
        assert sorted(got.scores.tolist()) == pytest.approx(sorted(want.scores.tolist()))
    vector = HashingEmbedder().embed(["common words"])[0]
    assert not set(doomed) & set(index.search_vector(vector, k=300).ids.tolist())
    assert index.delete_matching(spec) == 0 and index.generation == generation + 1
    index.close()
    fresh.close()


def test_a_delete_filter_postgresql_cannot_run_deletes_nothing(pg_dsn: str) -> None:  # noqa: F811
    from semrank.errors import InvalidInputError

    index = create_index("f", store=pg_dsn, embedder=HashingEmbedder())
    index.upsert([{"id": "a", "text": "x", "lang": "en"}, {"id": "b", "text": "y"}])
    generation = index.generation
    for spec, named in [
        ({"range": {"lang": {"gt": "a\ud800"}}}, r"range.lang: the bound 'a\\ud800' holds"),
        ({"match_all": {}}, "passes every document, so deleting by it would empty the index"),
    ]:
        with pytest.raises(InvalidInputError, match=named):
            index.delete_matching(spec)
    assert len(index) == 2 and index.generation == generation
    index.close()


# --- date math in range bounds -----------------------------------------------------------------
def test_date_math_on_postgresql_passes_what_the_reference_does(pg_dsn: str) -> None:  # noqa: F811
    """Every rounding case of tests/test_filter.py at its fixed now, and every plain date
    bound (``lte 2024-01-31``: all of that day), over date-only and date-time strings of every
    precision: SQL compares the resolved bounds as the reference does (a date-only bound below
    a date-time of its day), up to the end of year 9999."""
    cases = ROUNDING + UNROUNDED + PLAIN_DATES + PLAIN_UNROUNDED
    docs: dict[str, dict[str, Any]] = {}
    for n, (_, _, compare, bound) in enumerate(cases):
        edge = bound if compare in (">=", "<") else bound + _MS
        for doc_id, doc in _date_math_docs(edge, to_the_second=True).items():
            docs.setdefault(doc_id if doc_id[0].isdigit() else f"{doc_id} {n}", doc)
    for last in ("9999-12-31", "9999-12-31T23:59:59Z"):
        docs[last] = {"published": last}
    index = create_index("dates", store=pg_dsn, embedder=HashingEmbedder())
    index.upsert([{"id": doc_id, "text": "common", **doc} for doc_id, doc in docs.items()])
    for key, math, _, _ in cases:
        flt = resolved(parse_filter({"range": {"published": {key: math}}}), NOW)
        expected = sorted(doc_id for doc_id, doc in docs.items() if matches(flt, doc_id, doc))
        found = index.search_bm25("common", k=len(docs), filter=flt).ids.tolist()
        assert 0 < len(expected) < len(docs) and sorted(found) == expected, (key, math)
    dates = sorted(docs)  # epoch milliseconds too
    for key, expected in (("lte", dates), ("gt", [])):  # the last day there is
        flt = parse_filter({"range": {"published": {key: "9999-12-31"}}})
        found = index.search_bm25("common", k=len(docs), filter=flt).ids.tolist()
        assert sorted(found) == expected, key
    index.close()


def test_date_math_at_the_end_of_year_9999_on_postgresql_passes_what_the_reference_does(
    pg_dsn: str,  # noqa: F811
) -> None:
    """The calendar's last units (refused before, as leaving the years 1 to 9999): an lte of
    them passes every date, a gt none, in SQL as in the reference."""
    docs = {text: {"published": text} for text in CALENDAR_END_DATES}
    index = create_index("dates", store=pg_dsn, embedder=HashingEmbedder())
    index.upsert([{"id": doc_id, "text": "common", **doc} for doc_id, doc in docs.items()])
    for key, math, _, _ in CALENDAR_END:
        flt = resolved(parse_filter({"range": {"published": {key: math}}}), NOW)
        expected = sorted(doc_id for doc_id, doc in docs.items() if matches(flt, doc_id, doc))
        assert sorted(index.ids_matching(flt)) == expected, (key, math)
    index.close()


def test_a_postgresql_multi_field_search_resolves_date_math_once_for_its_fields(
    pg_dsn: str,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """search_bm25_fields ran a query per field, each resolving "now" anew (the embedded
    store and the base class resolve it once), so a search across midnight filtered its
    fields at two dates: a document matching in the later field alone was dropped. Here the
    clock moves a day at each read."""
    from semrank.retrieve import _filter

    start = datetime(2024, 3, 1, 23, tzinfo=UTC)
    reads = iter(range(100))
    monkeypatch.setattr(_filter, "_utc_now", lambda: start + next(reads) * timedelta(days=1))
    index = create_index("f", store=pg_dsn, fields=("title", "text"), embedder=HashingEmbedder())
    index.upsert([
        {"id": "in title", "title": "moon", "text": "sun", "published": "2024-03-01"},
        {"id": "in text", "title": "sun", "text": "moon", "published": "2024-03-01"},
    ])  # fmt: skip
    today = {"range": {"published": {"gte": "now/d"}}}
    fields = [("title", 1.0), ("text", 1.0)]
    found = index.search_bm25_fields("moon", k=5, fields=fields, filter=today)
    assert sorted(found.ids.tolist()) == ["in text", "in title"]
    index.close()


def test_postgresql_resolves_date_math_when_it_searches_and_deletes(pg_dsn: str) -> None:  # noqa: F811
    """A filter's now is the time of the search or delete (a tree built once and reused),
    not of its parsing: "now-30d/d" passes a date three days old, not one sixty days old."""
    from semrank.pipeline import BM25, search

    today = datetime.now(UTC)
    docs = [
        {"id": "recent", "text": "common", "published": f"{today - timedelta(days=3):%Y-%m-%d}"},
        {"id": "old", "text": "common", "published": f"{today - timedelta(days=60):%FT%TZ}"},
    ]
    index = create_index("dates", store=pg_dsn, embedder=HashingEmbedder())
    index.upsert(docs)
    last_month = {"range": {"published": {"gte": "now-30d/d"}}}
    tree = BM25(filter=last_month)
    assert index.search_bm25("common", k=5, filter=last_month).ids.tolist() == ["recent"]
    assert search(index, "common", retriever=tree, k=5).ids == ["recent"]
    older = {"range": {"published": {"lt": "now-30d/d"}}}
    assert index.ids_matching(older) == ["old"]
    assert index.delete_matching(older) == 1 and index.get(["recent", "old"])[1] is None
    index.close()


# Values SQL must read as Python's value_instant does: no date, or a date at an edge of what a
# date is (the day after a month's last, hour 24, an offset past 18 hours, year 0, years past
# 9999 in UTC, non-ASCII digits, a trailing newline), numbers of every shape, arrays, objects.
ODD_DATES: list[Any] = [
    "2024-02-29", "2023-02-29", "2024-04-31", "2024-13-01", "2024-00-10", "0000-01-01",
    "0001-01-01T00:00+05:00", "9999-12-31T23:59:59.999-18:00", "2024-01-01T24:00",
    "2024-01-01T10:60", "2024-01-01T10:00:60Z", "2024-01-01T10:00+19:00", "2024-01-01T10:00+18:30",
    "2024-01-01T10:00+0530", "2024-01-01T10Z", "2024-01-01T10:00:00.123456789-01",
    "٢٠٢٤-01-01", "2024-01-01\n", " 2024-01-01", "2024-01-01Z", "2024-1-1", "20240101",
    1.7e12, 1709283600000.7, -1.5, 10**20, 0, True, None, [], {"x": "2024-03-01"},
    ["2023-01-01", 1709283600000], [[["2024-03-01T09:00+00"]]],
]  # fmt: skip


def test_dates_compare_as_instants_on_postgresql_as_in_the_reference(pg_dsn: str) -> None:  # noqa: F811
    """A date range compares each stored value as its instant in SQL as the reference does:
    ISO 8601 strings at any offset, epoch-millisecond numbers, bounds read in ``time_zone`` and
    ``format``; odd values (an impossible date, an offset past 18 hours) are no dates in SQL
    either, and no row makes the query fail."""
    docs = dict(DATED_DOCS)
    for _, first, last in ZONED_RANGES:
        docs |= zoned_docs(first, last)
    docs |= {f"odd {n}": {"d": value} for n, value in enumerate(ODD_DATES)}
    docs["keyword"] = {"d.keyword": "2024-03-01T09:00:00Z"}
    index = create_index("dates", store=pg_dsn, embedder=HashingEmbedder())
    index.upsert([{"id": doc_id, "text": "common", **doc} for doc_id, doc in docs.items()])
    specs = [{key: bound} for key, bound in OFFSET_BOUNDS] + [spec for spec, _, _ in ZONED_RANGES]
    specs += [{"gte": "0001-01-01"}, {"lt": "2024-01-01T10:00:00.124"}, {"gt": "1970-01-01"}]
    for field in ("d", "d.keyword"):
        for spec in specs:
            flt = resolved(parse_filter({"range": {field: spec}}), NOW)
            expected = sorted(i for i, doc in docs.items() if matches(flt, i, doc))
            assert 0 < len(expected) < len(docs) and sorted(index.ids_matching(flt)) == expected, (
                field, spec)  # fmt: skip
    index.close()


# --- aggregations: PostgreSQL, the embedded store and a plain-Python reference agree ---------
AGGS: dict[str, Any] = {
    "langs": {"terms": {"field": "lang", "size": 4}},
    "langs_kw": {"terms": {"field": "lang.keyword", "order": {"_key": "desc"}, "size": 20}},
    "years": {"terms": {"field": "year", "size": 30, "missing": "none"}},
    "years_by_key": {"terms": {"field": "year", "order": [{"_key": "asc"}], "size": 5}},
    "drafts": {"terms": {"field": "draft", "min_doc_count": 2}},
    "tags_rare": {"terms": {"field": "tags", "order": {"_count": "asc"}, "size": 3}},
    "title_kw": {"terms": {"field": "title.keyword", "missing": 0}},
    "sources": {"terms": {"field": "meta.source"}},
    "abc": {"terms": {"field": "a.b.c"}},
    "key": {"terms": {"field": "ключ"}},
    **{f"{m}_year": {m: {"field": "year"}} for m in ("min", "max", "avg", "sum")},
    "count_year": {"value_count": {"field": "year"}},
    "distinct_year": {"cardinality": {"field": "year"}},
    "distinct_lang": {"cardinality": {"field": "lang"}},
    "score_sum": {"sum": {"field": "meta.score"}},
    "nothing_min": {"min": {"field": "nothing"}},
    "year_stats": {"stats": {"field": "year"}},
    "nothing_stats": {"stats": {"field": "nothing"}},
    "year_steps": {"histogram": {"field": "year", "interval": 5}},
    "year_steps_offset": {
        "histogram": {"field": "year", "interval": 2, "offset": 1, "order": {"_count": "desc"}}
    },
    "score_steps": {
        "histogram": {
            "field": "meta.score",
            "interval": 0.5,
            "extended_bounds": {"min": 0, "max": 4},
        }
    },
    "when_month_paris": {
        "date_histogram": {
            "field": "when",
            "calendar_interval": "month",
            "time_zone": "Europe/Paris",
        }
    },
    "when_week": {
        "date_histogram": {
            "field": "when",
            "calendar_interval": "1w",
            "format": "yyyy-MM-dd",
            "min_doc_count": 1,
        }
    },
    "when_day_new_york": {
        "date_histogram": {
            "field": "when",
            "calendar_interval": "day",
            "time_zone": "America/New_York",
        }
    },
    "when_quarter": {
        "date_histogram": {
            "field": "when",
            "calendar_interval": "quarter",
            "extended_bounds": {"min": "2023-01-01", "max": "2024-12-31"},
        }
    },
    "when_12h": {
        "date_histogram": {
            "field": "when",
            "fixed_interval": "12h",
            "time_zone": "+05:30",
            "format": "epoch_millis",
            "min_doc_count": 1,
        }
    },
    **{f"{m}_points": {m: {"field": "points"}} for m in ("sum", "avg", "value_count", "stats")},
    "points": {"terms": {"field": "points"}},
    "point_steps": {"histogram": {"field": "points", "interval": 2}},
    "year_ranges": {
        "range": {
            "field": "year",
            "ranges": [{"from": 2020}, {"to": 2017}, {"from": 2017, "to": 2020.5, "key": "mid"}],
        }
    },
}
AGG_WITHIN: list[Any] = [
    {"match_all": {}},
    {"exists": {"field": "tags"}},
    {"range": {"year": {"gte": 2018}}},
    {"ids": {"values": [f"doc{n:03d}" for n in range(0, 200, 3)]}},
]


def _agg_values(doc: dict[str, Any], field: str) -> set[tuple[str, Any]]:
    """A document's distinct values at ``field``, kinds apart and numbers as numbers."""
    kinds = {bool: "bool", int: "number", float: "number", str: "string"}
    return {
        (kinds[type(v)], float(v) if kinds[type(v)] == "number" else v)
        for v in document_values(doc, field)
    }


def _agg_values_repeated(doc: dict[str, Any], field: str) -> list[tuple[str, Any]]:
    """A document's values at ``field`` as ``_agg_values`` reads them, each time it holds it."""
    return [next(iter(_agg_values({"v": v}, "v"))) for v in document_values(doc, field)]


def _reference_terms(docs: list[dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
    counts: dict[tuple[str, Any], int] = {}
    for doc in docs:
        held = _agg_values(doc, body["field"])
        if not held and "missing" in body:
            (held,) = [{next(iter(_agg_values({"m": body["missing"]}, "m")))}]
        for value in held:
            counts[value] = counts.get(value, 0) + 1
    rank = {"bool": 0, "number": 1, "string": 2}
    order = body.get("order", {"_count": "desc"})
    by, direction = next(iter((order[0] if isinstance(order, list) else order).items()))
    sign = -1 if direction == "desc" else 1

    def sort_key(item: tuple[tuple[str, Any], int]) -> Any:
        (kind, value), n = item
        if by == "_count":
            return (sign * n, rank[kind], value)
        return ((rank[kind], value), n) if sign == 1 else (_Desc((rank[kind], value)), n)

    kept = sorted(
        ((k, n) for k, n in counts.items() if n >= body.get("min_doc_count", 1)), key=sort_key
    )
    size = body.get("size", 10)

    def bucket(kind: str, value: Any, n: int) -> dict[str, Any]:
        if kind == "bool":
            return {"key": int(value), "key_as_string": str(value).lower(), "doc_count": n}
        shown = int(value) if kind == "number" and value.is_integer() else value
        return {"key": shown, "doc_count": n}

    return {
        "doc_count_error_upper_bound": 0,
        "sum_other_doc_count": sum(n for _, n in kept[size:]),
        "buckets": [bucket(kind, value, n) for (kind, value), n in kept[:size]],
    }


class _Desc:
    def __init__(self, key: Any) -> None:
        self.key = key

    def __lt__(self, other: _Desc) -> bool:
        return bool(other.key < self.key)


def _reference_histogram(docs: list[dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
    """Numbers in steps: buckets by index, each document once in each."""
    interval, offset = body["interval"], body.get("offset", 0)
    steps = [
        {
            floor((v - offset) / interval)
            for k, v in _agg_values(doc, body["field"])
            if k == "number"
        }
        for doc in docs
    ]
    bounds = body.get("extended_bounds", {})
    extended = [floor((bounds[e] - offset) / interval) for e in bounds]
    keys = _reference_filled(steps, extended, lambda step: step + 1, body)
    counts = [(step, sum(step in held for held in steps)) for step in keys]
    buckets = _reference_ordered(counts, body)
    return {"buckets": [{"key": s * interval + offset, "doc_count": n} for s, n in buckets]}


def _reference_filled(
    held: list[set[Any]], extended: list[Any], after: Any, body: dict[str, Any]
) -> list[Any]:
    found = sorted(set().union(*held))
    if body.get("min_doc_count", 0) > 0 or not found + extended:
        return found
    key, keys = min(found + extended), []
    while key <= max(found + extended):
        keys.append(key)
        key = after(key)
    return keys


def _reference_ordered(counts: list[tuple[Any, int]], body: dict[str, Any]) -> list[Any]:
    kept = [(key, n) for key, n in counts if n >= body.get("min_doc_count", 0)]
    if body.get("order") == {"_count": "desc"}:
        return sorted(kept, key=lambda item: (-item[1], item[0]))
    return sorted(kept)


def _reference_instant(value: Any) -> datetime | None:
    """The corpus's dates: epoch milliseconds, or ISO 8601 (no offset: UTC)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return None
    if isinstance(value, int):
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=value)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _reference_date_histogram(docs: list[dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
    """Dates by the wall clock of the zone: a bucket is its first local time."""
    zone = zone_of(body.get("time_zone", "UTC"))
    unit = body.get("calendar_interval")
    fixed = {"12h": timedelta(hours=12)}.get(body.get("fixed_interval", ""))

    def start(time: datetime) -> datetime:
        local = time.astimezone(zone)
        if fixed is not None:  # the zone here is a fixed offset: whole spans of its clock
            naive = local.replace(tzinfo=None)
            spans = (naive - datetime(1970, 1, 1)) // fixed
            return (datetime(1970, 1, 1) + spans * fixed).replace(tzinfo=zone)
        day = local.date()
        day = {
            "month": day.replace(day=1),
            "quarter": day.replace(month=(day.month - 1) // 3 * 3 + 1, day=1),
            "1w": day - timedelta(days=day.weekday()),
            "day": day,
        }[unit]
        return datetime.combine(day, datetime.min.time(), tzinfo=zone)

    def after(key: datetime) -> datetime:
        if fixed is not None:
            return key + fixed
        day = key.date()
        months = {"month": 1, "quarter": 3}.get(unit)
        if months is not None:
            nxt = date(
                day.year + (day.month + months - 1) // 12, (day.month + months - 1) % 12 + 1, 1
            )
        else:
            nxt = day + timedelta(days=7 if unit == "1w" else 1)
        return datetime.combine(nxt, datetime.min.time(), tzinfo=zone)

    held = [
        {start(t) for v in document_values(doc, body["field"]) if (t := _reference_instant(v))}
        for doc in docs
    ]
    bounds = body.get("extended_bounds", {})
    extended = [start(datetime.fromisoformat(bounds[e]).replace(tzinfo=zone)) for e in bounds]
    keys = _reference_filled(held, extended, after, body)
    counts = [(key, sum(key in each for each in held)) for key in keys]
    millis = timedelta(milliseconds=1)

    def shown(key: datetime) -> str:
        if body.get("format") == "epoch_millis":
            return str((key - datetime(1970, 1, 1, tzinfo=UTC)) // millis)
        if body.get("format") == "yyyy-MM-dd":
            return key.strftime("%Y-%m-%d")
        return key.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    return {
        "buckets": [
            {
                "key_as_string": shown(key),
                "key": (key - datetime(1970, 1, 1, tzinfo=UTC)) // millis,
                "doc_count": n,
            }
            for key, n in _reference_ordered(counts, body)
        ]
    }


def _reference_aggregation(docs: list[dict[str, Any]], spec: dict[str, Any]) -> dict[str, Any]:
    ((kind, body),) = spec.items()
    if kind == "terms":
        return _reference_terms(docs, body)
    if kind == "histogram":
        return _reference_histogram(docs, body)
    if kind == "date_histogram":
        return _reference_date_histogram(docs, body)
    held = [_agg_values(doc, body["field"]) for doc in docs]
    every = [v for doc in docs for v in _agg_values_repeated(doc, body["field"])]
    if kind == "value_count":  # numbers and booleans each time, strings once a document
        strings = sum(k == "string" for values in held for k, _ in values)
        return {"value": strings + sum(k != "string" for k, _ in every)}
    if kind == "cardinality":
        return {"value": len(set().union(*held))}
    if kind == "range":
        buckets = []
        for r in sorted(body["ranges"], key=lambda r: (r.get("from", -1e9), r.get("to", 1e9))):
            low, high = r.get("from", float("-inf")), r.get("to", float("inf"))
            inside = [any(k == "number" and low <= v < high for k, v in values) for values in held]
            ends = ("*" if abs(b) == float("inf") else str(float(b)) for b in (low, high))
            label = "-".join(ends)
            bucket: dict[str, Any] = {"key": r.get("key", label)}
            bucket.update({"from": float(r["from"])} if "from" in r else {})
            bucket.update({"to": float(r["to"])} if "to" in r else {})
            buckets.append({**bucket, "doc_count": sum(inside)})
        return {"buckets": buckets}
    numbers = [v for k, v in every if k == "number"]  # [3, 3]: 3 twice, as doc values hold it
    if kind == "stats":
        return {
            "count": len(numbers),
            "min": min(numbers, default=None),
            "max": max(numbers, default=None),
            "avg": pytest.approx(sum(numbers) / len(numbers)) if numbers else None,
            "sum": pytest.approx(sum(numbers)),
        }
    if kind == "sum":
        return {"value": pytest.approx(sum(numbers))}
    if not numbers:
        return {"value": None}
    value = {"min": min(numbers), "max": max(numbers), "avg": sum(numbers) / len(numbers)}[kind]
    return {"value": pytest.approx(value)}


@pytest.fixture(scope="module")
def local_twin(tmp_path_factory) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    """The parity corpus in the embedded store."""
    store = create_index("f", home=tmp_path_factory.mktemp("aggs"))
    store.upsert([{"id": doc_id, **doc} for doc_id, doc in corpus().items()])
    yield store
    store.close()


def _agree_with_reference(
    filtered: Any, local_twin: Any, within: Any, aggs: dict[str, Any], reference: Any
) -> dict[str, Any]:
    """``aggs`` over the documents passing ``within`` on PostgreSQL, checked against the
    embedded store's and ``reference``'s (of the passing documents), each aggregation."""
    store, docs = filtered
    flt = parse_filter(within)
    passing = [doc for doc_id, doc in docs.items() if matches(flt, doc_id, doc)]
    on_postgres: dict[str, Any] = store.aggregate(aggs, within)
    assert local_twin.aggregate(aggs, within) == on_postgres
    for name, spec in aggs.items():
        assert on_postgres[name] == reference(passing, spec), name
    return on_postgres


@pytest.mark.parametrize("within", AGG_WITHIN, ids=[str(n) for n in range(len(AGG_WITHIN))])
def test_aggregations_agree_on_postgresql_the_embedded_store_and_the_reference(
    filtered,  # type: ignore[no-untyped-def]
    local_twin,
    within: Any,
) -> None:
    """Every aggregation, bucket for bucket and value for value, over a filter's documents."""
    on_postgres = _agree_with_reference(filtered, local_twin, within, AGGS, _reference_aggregation)
    # The corpus tells them apart: buckets cut by size, missing values, several kinds.
    if within == {"match_all": {}}:
        assert on_postgres["langs"]["sum_other_doc_count"] > 0
        keys = {b["key"] for b in on_postgres["years"]["buckets"]}
        assert {"none", 2019, "2019", 2016.5, 1} <= keys


# Sub-aggregations (three levels, every bucket kind), percentiles, extended_stats, missing.
NESTED_AGGS: dict[str, Any] = {
    "langs": {
        "terms": {"field": "lang", "size": 5, "missing": "none"},
        "aggs": {
            "avg_year": {"avg": {"field": "year"}},
            "tags": {
                "terms": {"field": "tags"},
                "aggregations": {
                    "points": {"extended_stats": {"field": "points", "sigma": 1.5}},
                    "steps": {
                        "histogram": {"field": "points", "interval": 2},
                        "aggs": {"years": {"cardinality": {"field": "year"}}},
                    },
                },
            },
            "ranges": {
                "range": {"field": "year", "ranges": [{"to": 2018}, {"from": 2017}]},
                "aggs": {"p": {"percentiles": {"field": "points", "percents": [10, 50, 99]}}},
            },
        },
    },
    "steps": {
        "histogram": {"field": "year", "interval": 5, "missing": 2000},
        "aggs": {"drafts": {"terms": {"field": "draft"}}, "n": {"value_count": {"field": "tags"}}},
    },
    "months": {
        "date_histogram": {"field": "when", "calendar_interval": "month", "min_doc_count": 1},
        "aggs": {"langs": {"terms": {"field": "lang", "size": 3}}},
    },
    "points_pct": {"percentiles": {"field": "points", "keyed": False}},
    "points_ext": {"extended_stats": {"field": "points"}},
    "year_missing": {"sum": {"field": "year", "missing": 1}},
    "score_missing": {"stats": {"field": "points", "missing": 100}},
}


def _reference_nested(docs: list[dict[str, Any]], spec: dict[str, Any]) -> dict[str, Any]:
    """An aggregation and, in each of its buckets, its sub-aggregations over the documents
    of the bucket (picked here from the bucket's key, not as semrank picks them)."""
    ((kind, body),) = [(k, v) for k, v in spec.items() if k not in ("aggs", "aggregations")]
    subs = spec.get("aggs", spec.get("aggregations"))
    if kind in ("percentiles", "extended_stats") or ("missing" in body and kind != "terms"):
        answer = _reference_metric_or_missing(docs, kind, body)
    else:
        answer = _reference_aggregation(docs, {kind: body})
    for position, bucket in enumerate(answer.get("buckets", []) if subs else []):
        inside = [doc for doc in docs if _reference_in_bucket(doc, kind, body, position, bucket)]
        bucket.update({name: _reference_nested(inside, sub) for name, sub in subs.items()})
    return answer


def _with_missing_value(doc: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    held = document_values(doc, body["field"])
    return doc if held or "missing" not in body else {**doc, body["field"]: body["missing"]}


def _reference_metric_or_missing(
    docs: list[dict[str, Any]], kind: str, body: dict[str, Any]
) -> dict[str, Any]:
    docs = [_with_missing_value(doc, body) for doc in docs]
    plain = {k: v for k, v in body.items() if k not in ("missing", "percents", "keyed", "sigma")}
    if kind not in ("percentiles", "extended_stats"):
        return _reference_aggregation(docs, {kind: plain})
    numbers = [
        v for doc in docs for k, v in _agg_values_repeated(doc, body["field"]) if k == "number"
    ]
    if kind == "percentiles":
        percents = body.get("percents", [1, 5, 25, 50, 75, 95, 99])
        found = [
            None if not numbers else pytest.approx(float(np.percentile(numbers, p)))
            for p in percents
        ]
        if body.get("keyed", True):
            return {"values": {str(float(p)): v for p, v in zip(percents, found, strict=True)}}
        return {
            "values": [{"key": float(p), "value": v} for p, v in zip(percents, found, strict=True)]
        }
    stats = _reference_aggregation(docs, {"stats": plain})
    n, sigma = len(numbers), body.get("sigma", 2)
    mean = sum(numbers) / n if n else 0.0
    pop = sum((v - mean) ** 2 for v in numbers) / n if n else None
    sample = sum((v - mean) ** 2 for v in numbers) / (n - 1) if n > 1 else None
    sd = {k: None if v is None else v**0.5 for k, v in (("p", pop), ("s", sample))}

    def approx(value: float | None) -> Any:
        return None if value is None else pytest.approx(value)

    def bound(side: int, deviation: float | None) -> Any:
        return None if deviation is None else pytest.approx(mean + side * sigma * deviation)

    return {
        **stats,
        "sum_of_squares": approx(sum(v * v for v in numbers)) if n else None,
        "variance": approx(pop),
        "variance_population": approx(pop),
        "variance_sampling": approx(sample),
        "std_deviation": approx(sd["p"]),
        "std_deviation_population": approx(sd["p"]),
        "std_deviation_sampling": approx(sd["s"]),
        "std_deviation_bounds": {
            "upper": bound(1, sd["p"]),
            "lower": bound(-1, sd["p"]),
            "upper_population": bound(1, sd["p"]),
            "lower_population": bound(-1, sd["p"]),
            "upper_sampling": bound(1, sd["s"]),
            "lower_sampling": bound(-1, sd["s"]),
        },
    }


def _reference_in_bucket(
    doc: dict[str, Any], kind: str, body: dict[str, Any], position: int, bucket: dict[str, Any]
) -> bool:
    held = _agg_values(_with_missing_value(doc, body), body["field"])
    if kind == "terms":
        key = bucket["key"]
        wanted = ("bool", bool(key)) if "key_as_string" in bucket else (
            ("string", key) if isinstance(key, str) else ("number", float(key))
        )  # fmt: skip
        return wanted in held
    if kind == "range":
        ranges = sorted(body["ranges"], key=lambda r: (r.get("from", -1e9), r.get("to", 1e9)))
        low, high = ranges[position].get("from", -inf), ranges[position].get("to", inf)
        return any(k == "number" and low <= v < high for k, v in held)
    if kind == "histogram":
        interval = body["interval"]
        return any(
            k == "number" and floor(v / interval) * interval == bucket["key"] for k, v in held
        )
    instants = [_reference_instant(v) for v in document_values(doc, body["field"])]
    months = {t.astimezone(UTC).strftime("%Y-%m") for t in instants if t is not None}
    starts = {
        int(datetime.strptime(m, "%Y-%m").replace(tzinfo=UTC).timestamp()) * 1000 for m in months
    }
    return bucket["key"] in starts


@pytest.mark.parametrize("within", AGG_WITHIN, ids=[str(n) for n in range(len(AGG_WITHIN))])
def test_sub_aggregations_percentiles_and_missing_agree_on_postgresql_embedded_and_reference(
    filtered,  # type: ignore[no-untyped-def]
    local_twin,
    within: Any,
) -> None:
    """Three levels of sub-aggregations over every bucket kind, in buckets of documents of
    several values and of none (missing), bucket for bucket with the embedded store and a
    reference that picks each bucket's documents itself."""
    on_postgres = _agree_with_reference(
        filtered, local_twin, within, NESTED_AGGS, _reference_nested
    )
    if within == {"match_all": {}}:  # the corpus tells them apart
        langs = on_postgres["langs"]["buckets"]
        assert any(b["key"] == "none" for b in langs)
        assert any(t["doc_count"] > 1 for b in langs for t in b["tags"]["buckets"])


def test_a_terms_with_metrics_below_is_two_statements_on_postgresql(
    filtered,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bucket aggregation with sub-aggregations asks the store once for its documents'
    values, whatever its number of buckets and depth: no query per bucket."""
    store, _ = filtered
    asked: list[Any] = []
    real = type(store)._all

    def counting(self: Any, query: Any, args: Any) -> Any:
        asked.append(query)
        return real(self, query, args)

    monkeypatch.setattr(type(store), "_all", counting)
    found = store.aggregate({k: v for k, v in NESTED_AGGS.items() if k in ("langs", "steps")})
    assert len(found["langs"]["buckets"]) == 5
    assert len(asked) == 2


def test_a_huge_number_is_keyed_as_the_same_double_on_both_stores(
    pg_dsn: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """PostgreSQL reads a stored 1e300 back as the integer 10**300: keyed 1e300 on both, as
    Elasticsearch keys a double; a whole number within a long stays an integer."""
    docs = [{"id": "a", "text": "x", "n": 1e300}, {"id": "b", "text": "y", "n": [2**62, 1e300]}]
    aggs = {"n": {"terms": {"field": "n"}}}
    expected = [{"key": 1e300, "doc_count": 2}, {"key": 2**62, "doc_count": 1}]
    for store in (create_index("huge", store=pg_dsn), create_index("huge", home=tmp_path)):
        store.upsert(docs)
        buckets = store.aggregate(aggs)["n"]["buckets"]
        assert buckets == expected and type(buckets[0]["key"]) is float
        store.close()


def test_a_daily_histogram_of_documents_of_several_dates_is_two_statements_on_postgresql(
    pg_dsn: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each day's documents counted once, as the embedded store counts them, in two
    statements whatever the number of days (each document's values, then the value sets of
    those holding several): not a count per day of several dates, each a scan of the index
    (365 days of 10,000 documents: six minutes)."""
    import psycopg

    local = create_index("multi", home=tmp_path)
    local.upsert(MULTI_DATED_DOCS)
    store = create_index("multi", store=pg_dsn)
    store.upsert(MULTI_DATED_DOCS)
    sent: list[str] = []
    execute = psycopg.Connection.execute

    def recorded(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        sent.append(str(query))
        return execute(self, query, params, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", recorded)
    found = store.aggregate(DAILY)
    monkeypatch.undo()
    store.close()
    assert found == local.aggregate(DAILY)
    assert [b["doc_count"] for b in found["days"]["buckets"][:4]] == [2, 2, 2, 1]
    queries = [query for query in sent if query]  # not the pool's check of a connection ("")
    assert len(queries) == 2, queries


def test_a_match_search_sends_its_matched_ids_once_for_count_and_aggregations(
    pg_dsn: str,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """1,500 matched ids go into one temporary table, not with each of the count's and the
    aggregations' statements; the answers are the embedded store's."""
    import psycopg

    from semrank.pipeline import search

    docs = [{"id": f"d{n}", "text": "common", "n": n % 7, "s": f"s{n % 3}"} for n in range(1500)]
    aggs = {"s": {"terms": {"field": "s"}}, "avg": {"avg": {"field": "n"}},
        "r": {"range": {"field": "n", "ranges": [{"to": 3}, {"from": 3}]}}}  # fmt: skip
    local = create_index("many", home=tmp_path)
    local.upsert(docs)
    expected = search(local, "common", k=0, aggs=aggs)
    store = create_index("many", store=pg_dsn)
    store.upsert(docs)
    sent: list[int] = []
    execute = psycopg.Connection.execute

    def recorded(self: Any, query: Any, params: Any = None, **kwargs: Any) -> Any:
        values = params.values() if isinstance(params, dict) else params or ()
        sent.extend(len(v) for v in values if isinstance(v, list))
        return execute(self, query, params, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "execute", recorded)
    found = search(store, "common", k=0, aggs=aggs)
    store.close()
    assert found.matched == expected.matched == 1500
    assert found.aggregations == expected.aggregations
    assert sent and max(sent) < 1500, sent


def test_aggregations_read_the_ids_a_bm25_query_matches_on_both_stores(
    filtered,  # type: ignore[no-untyped-def]
    local_twin,
) -> None:
    store, docs = filtered
    expected = sorted(doc_id for doc_id, doc in docs.items() if "7" in doc["text"].split()[-1])
    for each in (store, local_twin):
        assert sorted(each.ids_bm25("document 7 17 27")) != []
        found = each.ids_bm25("common", filter={"ids": {"values": expected}})
        assert sorted(found) == expected
        assert len(each.ids_bm25("words", fields=[("text", 1.0)])) == each.count_bm25("words")


# Values of every kind in one field: beyond 2**53 and a long, a double past a long, booleans,
# strings that read as numbers elsewhere, repeats, and documents holding none.
ODD_VALUES: list[Any] = [
    2**53 + 1, [2**53 + 1, 2**53 + 1], 2**63 + 5, -(2**60), 1e300, 0.1, [0.1, 0.2], True,
    [True, 1], "NaN", "nan", "Infinity", "1", [], None, 7, 7.0, [3, "3", False],
]  # fmt: skip
ODD_AGGS: dict[str, Any] = {
    "shops": {
        "terms": {"field": "shop", "missing": "online"},
        "aggs": {
            "avg": {"avg": {"field": "n"}},
            "ext": {"extended_stats": {"field": "n"}},
            "pct": {"percentiles": {"field": "n", "percents": [0, 50, 100]}},
            "values": {"terms": {"field": "n", "size": 50}},
            "count": {"value_count": {"field": "n"}},
            "distinct": {"cardinality": {"field": "n"}},
            "small": {"range": {"field": "n", "ranges": [{"to": 1}, {"from": 1, "to": 1e20}]}},
        },
    },
    "months": {
        "date_histogram": {"field": "when", "calendar_interval": "month", "missing": "2024-02-10"},
        "aggs": {"values": {"terms": {"field": "n", "size": 50}}, "max": {"max": {"field": "n"}}},
    },
}


def _odd_documents() -> list[dict[str, Any]]:
    docs = []
    for n, value in enumerate(ODD_VALUES * 3):
        doc: dict[str, Any] = {"id": f"o{n}", "text": "odd" if n % 2 else "odd words", "n": value}
        if n % 4:
            doc["shop"] = ["north", "south", "east"][n % 3]
        if n % 5:
            doc["when"] = f"2024-0{1 + n % 3}-{1 + n % 27:02d}"
        docs.append(doc)
    return docs


def test_sub_aggregations_of_odd_values_agree_on_postgresql_embedded_and_per_bucket(
    pg_dsn: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Each terms bucket's sub-aggregations, read from the values held for every bucket at
    once, are those of a search for that bucket's documents alone (the stores' own
    aggregation of a filter), on both stores, for values of every kind; the stores agree
    on the nested answer, also over a scored query's matched documents."""
    docs = _odd_documents()
    stores = [
        create_index("odd", store=pg_dsn, embedding_model=None),
        create_index("odd", home=tmp_path, embedding_model=None),
    ]
    try:
        answers = []
        for store in stores:
            store.upsert(docs)
            found = store.aggregate(ODD_AGGS)
            for bucket in found["shops"]["buckets"]:
                key = bucket["key"]
                alone = (
                    {"bool": {"must_not": [{"exists": {"field": "shop"}}]}}
                    if key == "online"
                    else {"term": {"shop": key}}
                )
                subs = ODD_AGGS["shops"]["aggs"]
                assert {name: bucket[name] for name in subs} == store.aggregate(subs, alone)
            words = {"standard": {"query": {"match": {"text": "words"}}}}
            scored = pipeline_search(store, None, retriever=words, k=0, aggs=ODD_AGGS)
            answers.append((found, scored.aggregations, scored.matched))
        assert answers[0] == answers[1]
        assert answers[0][2] == len(docs) // 2
    finally:
        for store in stores:
            store.close()


def test_more_buckets_than_search_max_buckets_are_refused_alike_on_both_stores(
    filtered,  # type: ignore[no-untyped-def]
    local_twin,
) -> None:
    """A histogram of a year's 301 steps (empty ones listed) inside another is 90,902 buckets:
    past Elasticsearch's search.max_buckets (65,536) in one answer, refused by both stores
    alike; a single level of them is answered."""
    store, _ = filtered
    steps = {
        "histogram": {"field": "year", "interval": 1, "extended_bounds": {"min": 1800, "max": 2100}}
    }
    nested = {"h": {**steps, "aggs": {"inner": steps}}}
    for one in (store, local_twin):
        with pytest.raises(InvalidInputError, match=r"too many buckets.*\[65536\]"):
            one.aggregate(nested)
        assert len(one.aggregate({"h": steps})["h"]["buckets"]) == 301


def test_a_field_path_of_too_many_parts_is_refused_alike_on_both_stores(
    filtered,  # type: ignore[no-untyped-def]
    local_twin,
) -> None:
    """A field of 1,000 dot-separated parts (2 KB of a body) made PostgreSQL's SQL/JSON paths
    grow with the cube of its parts (500 MB of path text, minutes of a worker thread) or fail
    with a RecursionError (a 500); both stores now refuse it, naming the limit, and answer one
    of 32 parts (no document holds it)."""
    store, _ = filtered
    deep, deepest = ".".join(["a"] * 1000), ".".join(["a"] * 32)
    empty = {"t": {"doc_count_error_upper_bound": 0, "sum_other_doc_count": 0, "buckets": []}}
    asks = (
        ("count_matching", {"term": {"FIELD": 1}}),
        ("count_matching", {"exists": {"field": "FIELD"}}),
        ("aggregate", {"t": {"terms": {"field": "FIELD"}}}),
    )
    for one in (store, local_twin):
        for method, spec in asks:
            text = json.dumps(spec)
            with pytest.raises(InvalidInputError, match="at most 32"):
                getattr(one, method)(json.loads(text.replace("FIELD", deep)))
            found = getattr(one, method)(json.loads(text.replace("FIELD", deepest)))
            assert found in (0, empty)


# Buckets ordered by a sub-aggregation, metrics and terms over date fields ("when": ISO dates
# of several forms, epoch milliseconds, "soon" and true; "date": days).
ORDERED_AND_DATED_AGGS: dict[str, Any] = {
    "langs_by_avg_year": {
        "terms": {"field": "lang", "size": 3, "order": {"avg_year": "desc"}},
        "aggs": {"avg_year": {"avg": {"field": "year"}}},
    },
    "tags_by_points_max": {
        "terms": {"field": "tags", "order": [{"pts.max": "asc"}, {"_key": "desc"}]},
        "aggs": {"pts": {"stats": {"field": "points"}}},
    },
    "langs_by_median": {
        "terms": {"field": "lang", "size": 4, "missing": "none", "order": {"p[50]": "desc"}},
        "aggs": {"p": {"percentiles": {"field": "points", "percents": [50]}}},
    },
    "drafts_by_count": {
        "terms": {"field": "draft", "order": [{"n": "asc"}, {"_key": "asc"}]},
        "aggs": {"n": {"value_count": {"field": "year"}}},
    },
    "steps_by_latest": {
        "histogram": {"field": "year", "interval": 5, "order": {"latest": "desc"}},
        "aggs": {"latest": {"max": {"field": "when"}}},
    },
    "days_by_latest": {
        "terms": {"field": "date", "size": 3, "order": {"latest": "desc"}},
        "aggs": {"latest": {"max": {"field": "when"}}},
    },
    "first": {"min": {"field": "when"}},
    "last": {"max": {"field": "when", "format": "yyyy-MM-dd"}},
    "mean": {"avg": {"field": "when", "missing": "2024-06-01T12:00:00Z"}},
    "spread": {"stats": {"field": "when"}},
    "quartiles": {"percentiles": {"field": "when", "percents": [25, 50]}},
    "median_day": {
        "percentiles": {"field": "date", "percents": [50], "keyed": False, "format": "epoch_millis"}
    },
    "days": {"terms": {"field": "date", "size": 5}},
    "whens": {"terms": {"field": "when", "size": 8, "order": {"_key": "asc"}}},
    "when_kinds": {"cardinality": {"field": "when"}},
    "when_values": {"value_count": {"field": "when"}},
    # Some langs' documents hold "when" as epoch milliseconds only, some no date at all.
    "langs_by_first": {
        "terms": {"field": "lang", "size": 4, "order": {"first": "desc"}},
        "aggs": {"first": {"min": {"field": "when"}}},
    },
}


def _reference_date_value(value: Any) -> tuple[str, Any]:
    """A value of a date field as the reference keys it: a date by its epoch milliseconds."""
    instant = None if isinstance(value, float) else _reference_instant(value)
    if isinstance(value, float) and not isinstance(value, bool):
        return ("date", floor(value))
    if instant is None:
        return next(iter(_agg_values({"v": value}, "v")))
    return ("date", (instant - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1))


def _reference_is_dated(docs: list[dict[str, Any]], body: dict[str, Any]) -> bool:
    values = [
        v for doc in docs for v in document_values(_with_missing_value(doc, body), body["field"])
    ]
    return "format" in body or any(
        isinstance(v, str) and not v.isdigit() and _reference_instant(v) is not None for v in values
    )


def _reference_written(millis: float, body: dict[str, Any]) -> str | None:
    """A date written as Elasticsearch writes one; None: past the year 9999 (a sum)."""
    if body.get("format") == "epoch_millis":
        return str(int(millis))
    if millis >= 253402300800000:
        return None
    time = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=int(millis))
    if body.get("format") == "yyyy-MM-dd":
        return time.strftime("%Y-%m-%d")
    return time.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _reference_date_metric(docs: list[dict[str, Any]], kind: str, body: dict[str, Any]) -> Any:
    every = [
        _reference_date_value(v)
        for doc in docs
        for v in document_values(_with_missing_value(doc, body), body["field"])
    ]
    numbers = sorted(float(v) for k, v in every if k == "date")

    def value(number: float | None, name: str = "value") -> dict[str, Any]:
        written = None if number is None else _reference_written(number, body)
        shown = {} if written is None else {f"{name}_as_string": written}
        return {name: number, **shown}

    def percentile(p: float) -> float:
        rank = p / 100 * (len(numbers) - 1)
        low, high = numbers[floor(rank)], numbers[ceil(rank)]
        return low + (high - low) * (rank - floor(rank))

    if kind == "percentiles":
        found = [(float(p), percentile(p) if numbers else None) for p in body["percents"]]
        if body.get("keyed", True):
            return {"values": {k: v for p, n in found for k, v in value(n, str(p)).items()}}
        return {"values": [{"key": p, **value(n)} for p, n in found]}
    mean = fsum(numbers) / len(numbers) if numbers else None
    if kind == "stats":
        stats = {"count": len(numbers)}
        for name, number in (
            ("min", min(numbers, default=None)), ("max", max(numbers, default=None)),
            ("avg", mean), ("sum", fsum(numbers)),
        ):  # fmt: skip
            stats.update(value(number, name) if numbers else {name: number})
        return stats
    return (
        value({"min": min, "max": max}[kind](numbers) if numbers else None)
        if kind in ("min", "max")
        else value(mean)
    )


def _reference_date_count(docs: list[dict[str, Any]], kind: str, body: dict[str, Any]) -> Any:
    """A date field's cardinality (distinct instants and other values) or value_count (each
    date every time, a word once a document)."""
    held = [[_reference_date_value(v) for v in document_values(d, body["field"])] for d in docs]
    if kind == "cardinality":
        return {"value": len({key for keys in held for key in keys})}
    return {
        "value": sum(
            len({k for k in keys if k[0] == "string"}) + sum(k[0] != "string" for k in keys)
            for keys in held
        )
    }


def _reference_ordered_or_dated(
    docs: list[dict[str, Any]], spec: dict[str, Any], over: list[dict[str, Any]] | None = None
) -> Any:
    """An aggregation over ``docs``, its buckets (each bucket's sub-aggregations computed over
    its documents) ordered by the values of those sub-aggregations, before the size cut; a
    field read as dates where it is over all the documents of the top aggregation (``over``)."""
    ((kind, body),) = [(k, v) for k, v in spec.items() if k not in ("aggs", "aggregations")]
    subs = spec.get("aggs", {})
    over = docs if over is None else over
    dated = _reference_is_dated(over, body)
    if kind in ("min", "max", "avg", "stats", "percentiles") and dated:
        return _reference_date_metric(docs, kind, body)
    if kind in ("cardinality", "value_count") and dated:
        return _reference_date_count(docs, kind, body)
    if kind not in ("terms", "histogram"):
        return _reference_nested(docs, spec)
    whole = {**body, "size": 10_000, "order": {"_key": "asc"}}
    if kind == "histogram":
        answer = _reference_histogram(docs, whole)
    else:
        answer = _reference_dated_terms(docs, whole)
    buckets = answer["buckets"]
    for bucket in buckets:
        inside = [doc for doc in docs if _reference_holds(doc, kind, body, bucket)]
        bucket.update(
            {n: _reference_ordered_or_dated(inside, sub, over) for n, sub in subs.items()}
        )
    order = body.get("order", {"_count": "desc"})
    for item in reversed([order] if isinstance(order, dict) else order):  # stable: last first
        ((path, direction),) = item.items()

        def rank(bucket: dict[str, Any], path: str = path) -> Any:
            return _reference_rank(bucket, path, subs)

        known = [b for b in buckets if rank(b) is not None]
        known.sort(key=rank, reverse=direction == "desc")
        buckets[:] = known + [b for b in buckets if rank(b) is None]
    if kind == "histogram":
        return answer
    size = body.get("size", 10)
    answer["sum_other_doc_count"] = sum(b["doc_count"] for b in buckets[size:])
    answer["buckets"] = buckets[:size]
    return answer


def _reference_path_value(bucket: dict[str, Any], path: str) -> Any:
    """A bucket's value of an order path (a pytest.approx's value: what the reference found)."""
    found = _reference_path_found(bucket, path)
    return getattr(found, "expected", found)


def _reference_rank(bucket: dict[str, Any], path: str, subs: dict[str, Any]) -> Any:
    """A bucket's rank by an order path: its value, where a min or max has none
    Elasticsearch's infinity (+ for a min, - for a max); None (a NaN): last either way."""
    value = _reference_path_value(bucket, path)
    if value is not None or path in ("_count", "_key") or path.endswith("]"):
        return value
    name, _, key = path.partition(".")
    (kind,) = subs[name]
    return {"min": inf, "max": -inf}.get(kind if key in ("", "value") else key)


def _reference_path_found(bucket: dict[str, Any], path: str) -> Any:
    if path in ("_count", "_key"):
        return bucket["doc_count"] if path == "_count" else _reference_bucket_rank(bucket)
    if path.endswith("]"):
        name, percent = path[:-1].split("[")
        return bucket[name]["values"][str(float(percent))]
    name, _, key = path.partition(".")
    return bucket[name][key or "value"]


def _reference_bucket_rank(bucket: dict[str, Any]) -> Any:
    key = bucket["key"]
    rank = (
        0 if bucket.get("key_as_string") in ("true", "false") else 2 if isinstance(key, str) else 1
    )
    return (rank, key)


def _reference_dated_terms(docs: list[dict[str, Any]], body: dict[str, Any]) -> dict[str, Any]:
    if not _reference_is_dated(docs, body):
        return _reference_terms(docs, body)
    counts: dict[tuple[str, Any], int] = {}
    for doc in docs:
        for key in _reference_keys(doc, body):
            counts[key] = counts.get(key, 0) + 1
    rank = {"bool": 0, "date": 1, "string": 2}
    kept = sorted(counts.items(), key=lambda item: (rank[item[0][0]], item[0][1]))
    if body.get("order", {"_count": "desc"}) == {"_count": "desc"}:
        kept.sort(key=lambda item: -item[1])

    def bucket(kind: str, value: Any, n: int) -> dict[str, Any]:
        if kind == "bool":
            return {"key": int(value), "key_as_string": str(value).lower(), "doc_count": n}
        if kind == "date":
            return {"key": value, "key_as_string": _reference_written(value, body), "doc_count": n}
        return {"key": value, "doc_count": n}

    size = body.get("size", 10)
    return {
        "doc_count_error_upper_bound": 0,
        "sum_other_doc_count": sum(n for _, n in kept[size:]),
        "buckets": [bucket(kind, value, n) for (kind, value), n in kept[:size]],
    }


def _reference_keys(doc: dict[str, Any], body: dict[str, Any]) -> set[tuple[str, Any]]:
    values = document_values(_with_missing_value(doc, body), body["field"])
    return {_reference_date_value(v) for v in values}


def _reference_holds(
    doc: dict[str, Any], kind: str, body: dict[str, Any], bucket: dict[str, Any]
) -> bool:
    if (
        kind == "histogram"
        or "key_as_string" not in bucket
        or bucket["key_as_string"] in ("true", "false")
    ):
        return _reference_in_bucket(doc, kind, body, 0, bucket)
    return ("date", bucket["key"]) in _reference_keys(doc, body)


@pytest.mark.parametrize("within", AGG_WITHIN, ids=[str(n) for n in range(len(AGG_WITHIN))])
def test_orders_by_sub_aggregations_and_date_metrics_agree_on_postgresql_embedded_and_reference(
    filtered,  # type: ignore[no-untyped-def]
    local_twin,
    within: Any,
) -> None:
    """Terms and histograms ordered by a metric below them (computed for every bucket before
    the size cut), min/max/avg/stats/percentiles of dates (with value_as_string) and terms
    keyed by a date's instant, bucket for bucket against a reference computing every bucket's
    metrics and ordering them itself."""
    on_postgres = _agree_with_reference(
        filtered, local_twin, within, ORDERED_AND_DATED_AGGS, _reference_ordered_or_dated
    )
    if within == {"match_all": {}}:  # the corpus tells them apart
        assert on_postgres["langs_by_avg_year"]["sum_other_doc_count"] > 0
        assert on_postgres["first"]["value_as_string"].endswith("Z")
        assert any(b["doc_count"] > 1 for b in on_postgres["whens"]["buckets"])
