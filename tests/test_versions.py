"""Document versions and optimistic concurrency control: the embedded store's versions and
conditional writes, an index made before versions, and Elasticsearch's if_seq_no / version."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from semrank.errors import VersionConflictError
from semrank.store import Expected, Store, VersionedDocument, create_index, open_index

JSON = {"content-type": "application/json"}
NDJSON = {"content-type": "application/x-ndjson"}

pytestmark = pytest.mark.anyio


def _versions(index: Store, ids: list[str]) -> list[tuple[int, int] | None]:
    return [
        None if doc is None else (doc.version.version, doc.version.seq_no)
        for doc in index.get_versioned(ids)
    ]


def check_versions_count_writes(index: Store) -> None:
    """Shared with the PostgreSQL tests: the same answers from both stores."""
    index.upsert([{"id": "a", "text": "one"}, {"id": "b", "text": "two"}])
    assert _versions(index, ["a", "b", "c"]) == [(1, 1), (1, 2), None]
    index.upsert([{"id": "a", "text": "one"}])  # unchanged: not written, no new version
    index.upsert([{"id": "a", "text": "one more"}])
    assert _versions(index, ["a"]) == [(2, 3)]
    index.delete(["b"])  # a delete takes a sequence number too
    index.upsert([{"id": "b", "text": "back"}])
    assert _versions(index, ["b"]) == [(1, 5)]


def check_conditional_writes(index: Store) -> None:
    index.upsert([{"id": "a", "text": "one"}])
    (read,) = index.get_versioned(["a"])
    assert read is not None
    seq_no = read.version.seq_no
    index.upsert([{"id": "a", "text": "mine"}], expected={"a": Expected(seq_no=seq_no)})
    with pytest.raises(VersionConflictError, match=r"required seqNo \[\d+\].*current document"):
        index.upsert([{"id": "a", "text": "lost"}], expected={"a": Expected(seq_no=seq_no)})
    with pytest.raises(VersionConflictError, match="no document was found"):
        index.upsert([{"id": "z", "text": "new"}], expected={"z": Expected(seq_no=0)})
    assert index.get(["a", "z"]) == [{"text": "mine"}, None]
    with pytest.raises(VersionConflictError, match=r"current version \[2\]"):
        index.delete_expected({"a": Expected(version=1)})
    changed = index.update_documents(
        ["a"], lambda found: {"a": {"text": "updated"}}, expected={"a": Expected(version=2)}
    )
    assert changed.written == 1 and _versions(index, ["a"])[0][0] == 3  # type: ignore[index]
    assert index.delete_expected({"a": Expected(version=3)}) == 1
    assert index.get(["a"]) == [None]


def race_increments(open_store: Any, writers: int = 2, each: int = 15) -> int:
    """``writers`` threads, each with its own handle, add 1 to a counter ``each`` times by
    read, then a write conditioned on the seq_no read (retried on a conflict): returns how
    many conflicts they met. No increment may be lost."""
    conflicts = [0]
    errors: list[BaseException] = []

    def work() -> None:
        with open_store() as index:
            try:
                for _ in range(each):
                    while True:
                        (doc,) = index.get_versioned(["n"])
                        value = doc.fields["count"] + 1
                        condition = {"n": Expected(seq_no=doc.version.seq_no)}
                        try:
                            index.upsert(
                                [{"id": "n", "text": "n", "count": value}], expected=condition
                            )
                            break
                        except VersionConflictError:
                            conflicts[0] += 1
            except BaseException as exc:  # pragma: no cover - shown below
                errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    with open_store() as index:
        (doc,) = index.get_versioned(["n"])
        assert doc.fields["count"] == writers * each  # no lost update
        assert doc.version.version == writers * each + 1
    return conflicts[0]


def check_two_writers_one_wins(index: Store, other: Store) -> None:
    """Both read the same version, both write on it: exactly one write lands."""
    index.upsert([{"id": "d", "text": "start"}])
    (mine,), (theirs,) = index.get_versioned(["d"]), other.get_versioned(["d"])
    assert mine is not None and theirs is not None and mine.version == theirs.version
    index.upsert(
        [{"id": "d", "text": "first"}], expected={"d": Expected(seq_no=mine.version.seq_no)}
    )
    with pytest.raises(VersionConflictError):
        other.upsert(
            [{"id": "d", "text": "second"}], expected={"d": Expected(seq_no=theirs.version.seq_no)}
        )
    assert other.get(["d"]) == [{"text": "first"}]


def test_embedded_versions_count_writes(tmp_path: Path) -> None:
    with create_index("v", home=tmp_path, embedding_model=None) as index:
        check_versions_count_writes(index)


def test_embedded_conditional_writes(tmp_path: Path) -> None:
    with create_index("v", home=tmp_path, embedding_model=None) as index:
        check_conditional_writes(index)


def test_the_readme_read_modify_write_runs_with_the_public_names(tmp_path: Path) -> None:
    # README (Upgrading) tells users to build Expected(...) themselves: it must be importable
    # from semrank.store, not only from a private module.
    with create_index("v", home=tmp_path, embedding_model=None, id_field="id") as index:
        index.upsert([{"id": "1", "text": "theirs", "tag": "draft"}])
        (read,) = index.get_versioned(["1"])
        assert isinstance(read, VersionedDocument)
        condition = {"1": Expected(seq_no=read.version.seq_no)}
        index.upsert([{"id": "1", **read.fields, "text": "mine"}], expected=condition)
        with pytest.raises(VersionConflictError):
            index.upsert([{"id": "1", **read.fields, "text": "lost"}], expected=condition)
        assert index.get(["1"]) == [{"text": "mine", "tag": "draft"}]


def test_embedded_two_writers_racing_lose_no_update(tmp_path: Path) -> None:
    with create_index("v", home=tmp_path, embedding_model=None) as index:
        index.upsert([{"id": "n", "text": "n", "count": 0}])
        with open_index("v", home=tmp_path) as other:
            check_two_writers_one_wins(index, other)
    race_increments(lambda: open_index("v", home=tmp_path))


def test_an_index_made_before_versions_opens_at_version_1_and_is_written(tmp_path: Path) -> None:
    with create_index("old", home=tmp_path, embedding_model=None) as index:
        index.upsert([{"id": "a", "text": "one"}, {"id": "b", "text": "two"}])
    db = tmp_path / "old" / "documents.sqlite"
    with sqlite3.connect(db) as conn:  # the index as the semrank before versions left it
        conn.execute("ALTER TABLE documents DROP COLUMN version")
        conn.execute("ALTER TABLE documents DROP COLUMN seq_no")
        conn.execute("DELETE FROM meta WHERE key='seq_no'")
        conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    with open_index("old", home=tmp_path) as index:
        assert _versions(index, ["a", "b"]) == [(1, 0), (1, 0)]
        index.upsert([{"id": "a", "text": "changed"}], expected={"a": Expected(seq_no=0)})
        assert _versions(index, ["a", "b"]) == [(2, 1), (1, 0)]
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    assert json.loads(row[0]) == 2  # an older semrank now refuses it: it would keep no versions


# --- Elasticsearch's document APIs -----------------------------------------------------------


@pytest.fixture
def client(index_client: httpx.AsyncClient) -> httpx.AsyncClient:
    return index_client


async def _docs(client: httpx.AsyncClient) -> None:
    made = await client.put("/docs", json={"mappings": {"properties": {"text": {"type": "text"}}}})
    assert made.status_code == 200, made.text


def _ndjson(*lines: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


async def test_es_if_seq_no_lets_one_of_two_writers_win(client: httpx.AsyncClient) -> None:
    await _docs(client)
    made = (await client.put("/docs/_doc/1", json={"text": "a"}, headers=JSON)).json()
    assert (made["_version"], made["_primary_term"]) == (1, 1)
    got = (await client.get("/docs/_doc/1")).json()
    assert (got["_version"], got["_seq_no"]) == (1, made["_seq_no"])
    where = f"if_seq_no={got['_seq_no']}&if_primary_term=1"
    first = await client.put(f"/docs/_doc/1?{where}", json={"text": "b"}, headers=JSON)
    assert first.status_code == 200 and first.json()["_version"] == 2
    assert first.json()["_seq_no"] > got["_seq_no"]
    second = await client.put(f"/docs/_doc/1?{where}", json={"text": "c"}, headers=JSON)
    assert second.status_code == 409
    error = second.json()["error"]
    assert error["type"] == "version_conflict_engine_exception"
    assert f"required seqNo [{got['_seq_no']}]" in error["reason"]
    assert (await client.get("/docs/_doc/1")).json()["_source"] == {"text": "b"}
    update = await client.post(f"/docs/_update/1?{where}", json={"doc": {"text": "d"}})
    assert update.status_code == 409
    gone = await client.delete(
        f"/docs/_doc/1?if_seq_no={first.json()['_seq_no']}&if_primary_term=1"
    )
    assert gone.status_code == 200 and gone.json()["_version"] == 3


async def test_es_external_versions_and_bulk_conditions(client: httpx.AsyncClient) -> None:
    await _docs(client)
    put = await client.put("/docs/_doc/e?version=10&version_type=external", json={"text": "a"})
    assert put.status_code == 201 and put.json()["_version"] == 10
    stale = await client.put("/docs/_doc/e?version=10&version_type=external", json={"text": "b"})
    assert stale.status_code == 409 and "higher or equal to the one provided [10]" in stale.text
    same = await client.put("/docs/_doc/e?version=10&version_type=external_gte", json={"text": "c"})
    assert same.status_code == 200 and same.json()["_version"] == 10
    seq_no = (await client.get("/docs/_doc/e")).json()["_seq_no"]
    body = _ndjson(
        {"index": {"_id": "e", "if_seq_no": seq_no + 100, "if_primary_term": 1}}, {"text": "x"},
        {"update": {"_id": "e", "if_seq_no": seq_no, "if_primary_term": 1}}, {"doc": {"text": "y"}},
        {"index": {"_id": "f"}}, {"text": "f"},
    )  # fmt: skip
    items = (await client.post("/docs/_bulk", content=body, headers=NDJSON)).json()["items"]
    assert items[0]["index"]["status"] == 409
    assert items[0]["index"]["error"]["type"] == "version_conflict_engine_exception"
    assert items[1]["update"]["_version"] == 11 and items[1]["update"]["result"] == "updated"
    assert items[2]["index"]["_version"] == 1
    assert items[2]["index"]["_seq_no"] > items[1]["update"]["_seq_no"] > seq_no
    docs = (await client.post("/docs/_mget", json={"ids": ["e", "f"]})).json()["docs"]
    assert [(d["_version"], d["_seq_no"]) for d in docs] == [
        (11, items[1]["update"]["_seq_no"]),
        (1, items[2]["index"]["_seq_no"]),
    ]
    both = await client.post("/docs/_update/e?if_seq_no=1&if_primary_term=1&retry_on_conflict=3",
                             json={"doc": {"text": "z"}})  # fmt: skip
    assert both.status_code == 400 and "retry_on_conflict" in both.text


# --- versions on search hits -----------------------------------------------------------------


def _hit_versions(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    keys = ("_version", "_seq_no", "_primary_term")
    return {hit["_id"]: {k: hit[k] for k in keys if k in hit} for hit in answer["hits"]["hits"]}


async def test_es_search_hits_carry_versions_where_asked(client: httpx.AsyncClient) -> None:
    await _docs(client)
    for doc_id, text in (("1", "a"), ("2", "b"), ("1", "a again")):
        await client.put(f"/docs/_doc/{doc_id}", json={"text": text}, headers=JSON)
    got = {i: (await client.get(f"/docs/_doc/{i}")).json() for i in ("1", "2")}
    stored = {
        i: {k: g[k] for k in ("_version", "_seq_no", "_primary_term")} for i, g in got.items()
    }
    everything = {"query": {"match_all": {}}}
    both = await client.post("/docs/_search", json={**everything, "version": True,
                                                   "seq_no_primary_term": True})  # fmt: skip
    assert both.status_code == 200, both.text
    assert _hit_versions(both.json()) == stored
    assert stored["1"]["_version"] == 2 and stored["1"]["_seq_no"] > stored["2"]["_seq_no"]
    plain = await client.post("/docs/_search", json=everything)
    assert _hit_versions(plain.json()) == {"1": {}, "2": {}}  # as Elasticsearch: not unasked
    only = await client.post("/docs/_search?version=true", json=everything)
    assert _hit_versions(only.json()) == {i: {"_version": v["_version"]} for i, v in stored.items()}
    seq = await client.post("/docs/_search?seq_no_primary_term", json={**everything,
                                                                      "version": True})  # fmt: skip
    assert _hit_versions(seq.json()) == stored
    off = await client.post("/docs/_search?version=false", json={**everything, "version": True})
    assert _hit_versions(off.json()) == {"1": {}, "2": {}}  # the query string wins
    bad = await client.post("/docs/_search?version=yes", json=everything)
    assert bad.status_code == 400 and "version='yes' must be true or false" in bad.text
    # A hit's _seq_no conditions a write of what the hit showed: once.
    hit = next(h for h in both.json()["hits"]["hits"] if h["_id"] == "1")
    where = f"if_seq_no={hit['_seq_no']}&if_primary_term={hit['_primary_term']}"
    mine = {"text": hit["_source"]["text"] + "!"}
    assert (await client.put(f"/docs/_doc/1?{where}", json=mine)).status_code == 200
    assert (await client.put(f"/docs/_doc/1?{where}", json=mine)).status_code == 409


async def test_es_scroll_and_msearch_hits_carry_versions(client: httpx.AsyncClient) -> None:
    await _docs(client)
    for doc_id in ("1", "2"):
        await client.put(f"/docs/_doc/{doc_id}", json={"text": doc_id}, headers=JSON)
    await client.put("/docs/_doc/2", json={"text": "two"}, headers=JSON)
    stored = {}
    for doc_id in ("1", "2"):
        got = (await client.get(f"/docs/_doc/{doc_id}")).json()
        stored[doc_id] = {k: got[k] for k in ("_seq_no", "_primary_term")}
    body = {"size": 1, "query": {"match_all": {}}, "seq_no_primary_term": True}
    first = (await client.post("/docs/_search?scroll=1m", json=body)).json()
    scroll_id = first["_scroll_id"]
    second = (await client.post("/_search/scroll", json={"scroll_id": scroll_id})).json()
    paged = _hit_versions(first) | _hit_versions(second)
    assert paged == stored
    searches = _ndjson({"index": "docs"}, {"query": {"match_all": {}}, "version": True})
    answer = await client.post("/_msearch", content=searches, headers=NDJSON)
    (response,) = answer.json()["responses"]
    assert {i: v["_version"] for i, v in _hit_versions(response).items()} == {"1": 1, "2": 2}


# --- conditions Elasticsearch refuses, values out of range -----------------------------------


async def test_es_create_takes_no_condition(client: httpx.AsyncClient) -> None:
    """A create writes only an id not there: Elasticsearch refuses compare-and-set and
    external versions on it (400), which semrank took and checked against nothing."""
    await _docs(client)
    said = "create operations do not support compare and set"
    for path in (
        "/docs/_create/c?if_seq_no=0&if_primary_term=1",
        "/docs/_create/c?version=5&version_type=external",
        "/docs/_doc/c?op_type=create&version=5&version_type=external_gte",
    ):
        refused = await client.put(path, json={"text": "c"}, headers=JSON)
        assert refused.status_code == 400 and said in refused.text, (path, refused.text)
    body = _ndjson({"create": {"_id": "c", "if_seq_no": 0, "if_primary_term": 1}}, {"text": "c"})
    bulk = await client.post("/docs/_bulk", content=body, headers=NDJSON)
    assert bulk.status_code == 400 and said in bulk.text
    assert (await client.get("/docs/_doc/c")).status_code == 404


@pytest.mark.parametrize(
    "query",
    [
        "version=9223372036854775808&version_type=external",  # past a long: was a 500
        "version=%C2%B2&version_type=external",  # "²" passed isdigit(): was a 500
        "version=-1&version_type=external",
        "version=1.5&version_type=external",
        "if_seq_no=%D9%A1&if_primary_term=1",  # an Arabic-Indic one
    ],
)
async def test_es_condition_values_out_of_range_are_refused(
    client: httpx.AsyncClient, query: str
) -> None:
    await _docs(client)
    refused = await client.put(f"/docs/_doc/x?{query}", json={"text": "x"}, headers=JSON)
    assert refused.status_code == 400, refused.text
    assert "must be an integer from 0 to 9223372036854775807" in refused.text


async def test_es_external_versions_at_the_ends_of_the_range(client: httpx.AsyncClient) -> None:
    await _docs(client)
    zero = await client.put("/docs/_doc/z?version=0&version_type=external", json={"text": "z"})
    assert zero.status_code == 201 and zero.json()["_version"] == 0
    top = 9223372036854775807
    most = await client.put(f"/docs/_doc/m?version={top}&version_type=external", json={"text": "m"})
    assert most.status_code == 201 and most.json()["_version"] == top
    assert (await client.get("/docs/_doc/m")).json()["_version"] == top


# --- several actions on one id in one _bulk ----------------------------------------------------


async def test_es_bulk_numbers_writes_in_the_order_of_its_actions(
    client: httpx.AsyncClient,
) -> None:
    """The ids' sequence numbers followed a set's order (flaky: PYTHONHASHSEED), not the
    actions'; Elasticsearch numbers the actions in order."""
    await _docs(client)
    ids = [f"id-{n}" for n in range(12)]
    body = _ndjson(*(line for i in ids for line in ({"index": {"_id": i}}, {"text": i})))
    items = (await client.post("/docs/_bulk", content=body, headers=NDJSON)).json()["items"]
    seq_nos = [item["index"]["_seq_no"] for item in items]
    assert seq_nos == sorted(seq_nos) and len(set(seq_nos)) == len(ids)


async def test_es_a_document_deleted_then_indexed_starts_at_1_in_or_out_of_a_bulk(
    client: httpx.AsyncClient,
) -> None:
    """Indexed again after its delete in the same _bulk it went on from the deleted one's
    version (4), while two requests start it again at 1: now 1 either way."""
    await _docs(client)
    for text in ("a", "b"):
        await client.put("/docs/_doc/d", json={"text": text}, headers=JSON)
    body = _ndjson({"delete": {"_id": "d"}}, {"index": {"_id": "d"}}, {"text": "back"})
    items = (await client.post("/docs/_bulk", content=body, headers=NDJSON)).json()["items"]
    assert [items[0]["delete"]["_version"], items[1]["index"]["_version"]] == [3, 1]
    assert items[1]["index"]["result"] == "created"
    assert (await client.get("/docs/_doc/d")).json()["_version"] == 1
    await client.delete("/docs/_doc/d")
    again = await client.put("/docs/_doc/d", json={"text": "again"}, headers=JSON)
    assert again.json()["_version"] == 1


# --- an index from before versions ---------------------------------------------------------------


def _as_before_versions(db: Path) -> None:
    with sqlite3.connect(db) as conn:  # the index as the semrank before versions left it
        conn.execute("ALTER TABLE documents DROP COLUMN version")
        conn.execute("ALTER TABLE documents DROP COLUMN seq_no")
        conn.execute("DELETE FROM meta WHERE key='seq_no'")
        conn.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    conn.close()


def test_a_handle_opened_while_another_upgraded_the_index_reads_its_versions(
    tmp_path: Path,
) -> None:
    """A handle that could not add the version columns at its open (another process held the
    write lock) read every document as version 1, seq_no 0 for good, after another handle had
    added them and written: a GET answered a _seq_no the document did not have."""
    with create_index("old", home=tmp_path, embedding_model=None) as index:
        index.upsert([{"id": "a", "text": "one"}])
    db = tmp_path / "old" / "documents.sqlite"
    _as_before_versions(db)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's write, during the open below
    try:
        late = open_index("old", home=tmp_path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with late, open_index("old", home=tmp_path) as upgraded:
        upgraded.upsert([{"id": "a", "text": "two"}])
        assert _versions(upgraded, ["a"]) == [(2, 1)]
        assert _versions(late, ["a"]) == [(2, 1)]


def test_an_index_from_before_versions_this_user_may_not_write_is_read_at_version_1() -> None:
    """Its database file root's (0644): the columns cannot be added, and every document reads
    as version 1, seq_no 0, as an upgraded index would answer it."""
    import os
    import shutil
    import tempfile

    from test_store_roundtrip import _acting_as

    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("needs root, to make the index as one user and open it as another")
    home = Path(tempfile.mkdtemp(prefix="semrank-versions-"))  # not under root's 0700 tmp_path
    try:
        with create_index("old", home=home, embedding_model=None) as index:
            index.upsert([{"id": "a", "text": "one"}, {"id": "b", "text": "two"}])
        _as_before_versions(home / "old" / "documents.sqlite")
        for path in (home, *(home.rglob("*"))):
            path.chmod(0o644 if path.is_file() else 0o777)  # folders shared, files not
        with _acting_as(65534), open_index("old", home=home) as index:
            assert _versions(index, ["a", "b"]) == [(1, 0), (1, 0)]
            assert index.get(["a"]) == [{"text": "one"}]
    finally:
        shutil.rmtree(home, ignore_errors=True)
