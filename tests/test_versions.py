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
from semrank.store import create_index, open_index
from semrank.store._base import Expected, Store

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
