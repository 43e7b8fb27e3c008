"""Document versions under real concurrency: read-modify-write from several processes (the
library's conditional writes and the code Elasticsearch's _bulk runs), an index of schema 1
upgraded by one process while another reads it, and a version at the top of its range. The
PostgreSQL runs of these checks are in test_postgres_versions.py."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from semrank.errors import InvalidInputError
from semrank.store import create_index, open_index
from semrank.store._base import Expected, NewVersion, Store
from test_versions import _as_before_versions, _docs, _ndjson, _versions

JSON = {"content-type": "application/json"}
NDJSON = {"content-type": "application/x-ndjson"}
TOP = 2**63 - 1  # the highest version: a Java long, as Elasticsearch's

# One process's increments of document n's count: read it with its seq_no, write count + 1 on
# the condition that it is still at that seq_no (retried on a conflict), through the library
# ("library": update_versioned with Expected) or the code _bulk runs ("bulk": apply_writes of
# an index action with if_seq_no). Prints each write's (version, seq_no) and the conflicts met.
INCREMENTS = """
import json, sys, time
from semrank.errors import VersionConflictError
from semrank.store import open_index
from semrank.store._base import Expected, NewVersion
from semrank.server._es_writes import WriteAction, apply_writes, parse_condition

how, where, start, each = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
place = {"store": where} if where.startswith("postgresql") else {"home": where}

def library(index, seq_no, fields):
    def change(found):
        Expected(seq_no=seq_no).check("n", found["n"] and found["n"].version)
        return {"n": NewVersion(fields=fields)}
    try:
        written = index.update_versioned(["n"], change).versions["n"]
    except VersionConflictError:
        return None
    return written.version, written.seq_no

def bulk(index, seq_no, fields):
    condition = parse_condition({"if_seq_no": seq_no, "if_primary_term": 1}, "", "index")
    action = WriteAction(op="index", index="v", id="n", body=fields, number=1, condition=condition)
    (outcome,), _ = apply_writes(index, [action])
    if isinstance(outcome.error, VersionConflictError):
        return None
    assert outcome.error is None and outcome.result == "updated", outcome
    return outcome.version.version, outcome.version.seq_no

write = {"library": library, "bulk": bulk}[how]
written, conflicts = [], 0
with open_index("v", **place) as index:
    while time.time() < start:
        time.sleep(0.001)
    for _ in range(each):
        while True:
            (doc,) = index.get_versioned(["n"])
            fields = {"text": "n", "count": doc.fields["count"] + 1}
            done = write(index, doc.version.seq_no, fields)
            if done is not None:
                written.append(done)
                break
            conflicts += 1
print(json.dumps({"written": written, "conflicts": conflicts}))
"""


def check_increments_from_processes(
    where: str, how: str, processes: int = 3, each: int = 20
) -> int:
    """``processes`` processes each add 1 to document n of index v (in ``where``: a home or a
    DSN) ``each`` times: no increment is lost, each write's version is one more than the
    write's before it (in seq_no order) and every write has its own seq_no. Returns the
    conflicts met (retried)."""
    place = {"store": where} if where.startswith("postgresql") else {"home": where}
    with open_index("v", **place) as index:  # type: ignore[arg-type]
        index.upsert([{"id": "n", "text": "n", "count": 0}])
        (start_doc,) = index.get_versioned(["n"])
    start = str(time.time() + 3)  # every process loaded and waiting
    command = [sys.executable, "-c", INCREMENTS, how, where, start, str(each)]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE) for _ in range(processes)]
    said = [json.loads(worker.communicate(timeout=300)[0]) for worker in workers]
    assert all(worker.returncode == 0 for worker in workers)
    writes = sorted(tuple(w) for one in said for w in one["written"])  # (version, seq_no)
    for one in said:  # each process saw its own writes' versions and seq_nos increase
        assert one["written"] == sorted(one["written"])
    total = processes * each
    first = start_doc.version
    assert [version for version, _ in writes] == list(
        range(first.version + 1, first.version + total + 1)
    )
    seq_nos = [seq_no for _, seq_no in writes]
    assert seq_nos == sorted(seq_nos) and len(set(seq_nos)) == total  # versions follow seq_nos
    assert seq_nos[0] > first.seq_no
    with open_index("v", **place) as index:  # type: ignore[arg-type]
        (doc,) = index.get_versioned(["n"])
    assert doc is not None and doc.fields["count"] == total  # no increment lost
    assert (doc.version.version, doc.version.seq_no) == writes[-1]
    return sum(one["conflicts"] for one in said)


@pytest.mark.parametrize("how", ["library", "bulk"])
def test_embedded_increments_from_processes_lose_none(tmp_path: Path, how: str) -> None:
    create_index("v", home=tmp_path, embedding_model=None).close()
    check_increments_from_processes(str(tmp_path), how)


# --- an index of schema 1 upgraded while another process reads it ------------------------------

# Reads documents a and b of index old over and over from a start time on, for ``seconds``:
# each read's (version, seq_no) of a never goes back, b stays (1, 0). Prints how many reads.
READS_DURING_UPGRADE = """
import sys, time
from semrank.store import open_index

home, start, seconds = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
while time.time() < start:
    time.sleep(0.001)
reads, last = 0, (0, -1)
with open_index("old", home=home) as index:
    while time.time() < start + seconds:
        a, b = index.get_versioned(["a", "b"])
        now = (a.version.version, a.version.seq_no)
        assert now >= last, (now, last)
        assert (b.version.version, b.version.seq_no) == (1, 0), b
        assert a.fields["text"].startswith("w"), a
        last, reads = now, reads + 1
print(reads)
"""


def test_an_index_of_schema_1_upgraded_while_another_process_reads_it(tmp_path: Path) -> None:
    with create_index("old", home=tmp_path, embedding_model=None) as index:
        index.upsert([{"id": "a", "text": "w0"}, {"id": "b", "text": "two"}])
    _as_before_versions(tmp_path / "old" / "documents.sqlite")
    start = time.time() + 3
    command = [sys.executable, "-c", READS_DURING_UPGRADE, str(tmp_path), str(start), "4"]
    readers = [subprocess.Popen(command, stdout=subprocess.PIPE) for _ in range(2)]
    while time.time() < start:
        time.sleep(0.001)
    with open_index("old", home=tmp_path) as index:  # upgrades it, unless a reader did
        for n in range(1, 31):
            (a,) = index.get_versioned(["a"])
            index.upsert(
                [{"id": "a", "text": f"w{n}"}], expected={"a": Expected(seq_no=a.version.seq_no)}
            )
    outputs = [reader.communicate(timeout=120)[0] for reader in readers]
    assert [reader.returncode for reader in readers] == [0, 0]
    assert all(int(out) > 0 for out in outputs)
    with open_index("old", home=tmp_path) as index:
        assert _versions(index, ["a", "b"]) == [(31, 30), (1, 0)]
        assert index.get(["a"]) == [{"text": "w30"}]


# --- a document at the highest version -----------------------------------------------------------


def check_writes_past_the_highest_version_are_refused(index: Store) -> None:
    """A write without a version of its own on a document at 2^63 - 1 cannot give it + 1: it
    is refused, naming the document and what to do, and nothing of the call is written (the
    embedded store stored the float 2^63, PostgreSQL failed with "bigint out of range")."""
    top = TOP
    index.update_versioned(["a"], lambda _: {"a": NewVersion(fields={"text": "x"}, version=top)})
    (stored,) = _versions(index, ["a"])
    assert stored is not None and stored[0] == top
    writes = [
        lambda: index.upsert([{"id": "a", "text": "y"}]),
        lambda: index.upsert([{"id": "b", "text": "b"}, {"id": "a", "text": "y"}]),
        lambda: index.update_documents(
            ["a", "b"], lambda _: {"a": {"text": "y"}, "b": {"text": "b"}}
        ),
        lambda: index.upsert([{"id": "a", "text": "y"}], expected={"a": Expected(version=top)}),
    ]
    for write in writes:
        with pytest.raises(InvalidInputError, match=rf"\[a\]: the document is at version {top}, "):
            write()
        assert _versions(index, ["a", "b"]) == [stored, None]  # the whole call written or not
        assert index.get(["a"]) == [{"text": "x"}]
    with pytest.raises(InvalidInputError, match="version 9223372036854775808 is out of range"):
        index.update_versioned(
            ["a"], lambda _: {"a": NewVersion(fields={"text": "q"}, version=top + 1)}
        )
    # Its own version, or a delete, is written; written again, the document starts at 1.
    index.update_versioned(["a"], lambda _: {"a": NewVersion(fields={"text": "z"}, version=top)})
    assert index.get(["a"]) == [{"text": "z"}]
    assert index.delete_expected({"a": Expected(version=top)}) == 1
    index.upsert([{"id": "a", "text": "again"}])
    assert [v and v[0] for v in _versions(index, ["a"])] == [1]


def test_embedded_writes_past_the_highest_version_are_refused(tmp_path: Path) -> None:
    with create_index("v", home=tmp_path, embedding_model=None) as index:
        check_writes_past_the_highest_version_are_refused(index)


@pytest.fixture
def client(index_client: httpx.AsyncClient) -> httpx.AsyncClient:
    return index_client


@pytest.mark.anyio
async def test_es_writes_past_the_highest_version_are_refused(client: httpx.AsyncClient) -> None:
    """_doc, _update and _bulk without a version on a document at 2^63 - 1 were a 500: now a
    400 naming the document (per item in a _bulk, whose other items are written)."""
    await _docs(client)
    top = TOP
    made = await client.put(f"/docs/_doc/m?version={top}&version_type=external", json={"text": "m"})
    assert made.status_code == 201, made.text
    refusals: list[Any] = [
        await client.put("/docs/_doc/m", json={"text": "n"}, headers=JSON),
        await client.post("/docs/_update/m", json={"doc": {"text": "n"}}, headers=JSON),
    ]
    for refused in refusals:
        assert refused.status_code == 400, refused.text
        assert f"the document is at version {top}, the highest" in refused.text
    body = _ndjson({"index": {"_id": "m"}}, {"text": "n"}, {"index": {"_id": "o"}}, {"text": "o"})
    answer = (await client.post("/docs/_bulk", content=body, headers=NDJSON)).json()
    items = [item["index"] for item in answer["items"]]
    assert answer["errors"] is True
    assert [item["status"] for item in items] == [400, 201], items
    assert "the highest a version may be" in json.dumps(items[0]["error"])
    kept = (await client.get("/docs/_doc/m")).json()
    assert (kept["_version"], kept["_source"]) == (top, {"text": "m"})
    same = f"/docs/_doc/m?version={top}&version_type=external_gte"
    assert (await client.put(same, json={"text": "g"}, headers=JSON)).status_code == 200
    gone = await client.delete("/docs/_doc/m")
    assert gone.status_code == 200 and gone.json()["result"] == "deleted", gone.text
    again = await client.put("/docs/_doc/m", json={"text": "again"}, headers=JSON)
    assert again.status_code == 201 and again.json()["_version"] == 1
