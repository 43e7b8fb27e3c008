"""Crash safety: SIGKILL an ingest mid-way; the index opens, answers, and keeps every
document of the batches it had committed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from semrank.store import create_index, open_index

BATCH = 20
TOTAL = 2000  # far more than the child gets through before it is killed
KILL_AFTER = 3  # committed batches

CHILD = textwrap.dedent(
    """
    import sys
    from semrank.store import open_index

    home, batch, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    docs = ({"id": f"doc-{i}", "title": f"title {i}", "text": f"alpha beta word{i} gamma"}
            for i in range(total))
    index = open_index("crash", home=home)
    committed = 0

    def report(n):
        global committed
        committed += n
        print(f"committed {committed}", flush=True)

    index.upsert(docs, batch_size=batch, progress=report)
    print("finished", flush=True)
    """
)


def _doc(i: int) -> dict[str, str]:
    return {"id": f"doc-{i}", "title": f"title {i}", "text": f"alpha beta word{i} gamma"}


@pytest.mark.parametrize("dense", [False, True], ids=["bm25-only", "with-embeddings"])
def test_killed_ingest_keeps_committed_batches(tmp_path: Path, dense: bool) -> None:
    create_index("crash", home=tmp_path, embedding_model="default" if dense else None).close()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(tmp_path), str(BATCH), str(TOTAL)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert child.stdout is not None
    committed = 0
    for line in child.stdout:
        if line.startswith("committed"):
            committed = int(line.split()[1])
            if committed >= KILL_AFTER * BATCH:
                break
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert committed >= KILL_AFTER * BATCH, "the child died before committing"

    index = open_index("crash", home=tmp_path)
    count = len(index)
    assert committed <= count < TOTAL
    assert count % BATCH == 0, "a batch was committed partly"
    wanted = [f"doc-{i}" for i in range(committed)]
    assert all(doc is not None for doc in index.get(wanted))
    # The derived BM25 index was never written by the child: it is rebuilt on first use.
    assert index.search_bm25("word7", k=3).ids.tolist() == ["doc-7"]
    if dense:
        vector = index.embed_queries(["title 5 alpha beta word5 gamma"])[0]
        hits = index.search_vector(vector, k=count)
        assert len(hits) == count and hits.ids[0] == "doc-5"
        assert np.all(np.diff(hits.scores) <= 1e-6)

    # Re-running the ingest completes it; already committed documents are skipped.
    index.upsert((_doc(i) for i in range(count + 40)), batch_size=BATCH)
    assert len(index) == count + 40
    assert index.search_bm25(f"word{count + 39}", k=1).ids.tolist() == [f"doc-{count + 39}"]
    index.close()


def _bm25_ids(tmp_path: Path, name: str, query: str) -> list[str]:
    with open_index(name, home=tmp_path) as index:  # a fresh handle reads the files on disk
        return list(index.search_bm25(query, k=10).ids)


def _make(tmp_path: Path, name: str, docs: list[dict[str, str]]) -> Path:
    with create_index(name, home=tmp_path, embedding_model=None) as index:
        index.upsert(docs)
        index.refresh()
    return tmp_path / name


@pytest.mark.parametrize("damage", ["truncate", "remove"])
def test_damaged_search_files_are_rebuilt_from_the_documents(tmp_path: Path, damage: str) -> None:
    folder = _make(tmp_path, "hurt", [_doc(i) for i in range(5)])
    (saved,) = (folder / "derived").glob("bm25-all.g*")
    ids = saved / "ids.json"
    if damage == "truncate":
        ids.write_bytes(ids.read_bytes()[:7])
    else:
        ids.unlink()
    assert _bm25_ids(tmp_path, "hurt", "word3") == ["doc-3"]
    assert ids.is_file() and len(ids.read_text()) > 7  # replaced by a whole one
    assert _bm25_ids(tmp_path, "hurt", "word4") == ["doc-4"]


def test_a_restored_database_never_reads_search_files_of_the_abandoned_history(
    tmp_path: Path,
) -> None:
    folder = _make(tmp_path, "r", [_doc(0), _doc(1)])
    backup = tmp_path / "backup.sqlite"
    shutil.copy(folder / "documents.sqlite", backup)
    for i in (2, 3):  # two more generations, searched (so saved) at the last one
        with open_index("r", home=tmp_path) as index:
            index.upsert([_doc(i)])
            index.refresh()
    for leftover in folder.glob("documents.sqlite-*"):
        leftover.unlink()
    shutil.copy(backup, folder / "documents.sqlite")  # the restore
    for i in (4, 5):  # the restored history reaches the same generation number again
        with open_index("r", home=tmp_path) as index:
            index.upsert([_doc(i)])
    assert _bm25_ids(tmp_path, "r", "word5") == ["doc-5"]
    assert _bm25_ids(tmp_path, "r", "word3") == []


def test_search_answers_when_its_files_cannot_be_saved(tmp_path: Path) -> None:
    folder = _make(tmp_path, "ro", [_doc(0)])
    with open_index("ro", home=tmp_path) as index:
        index.upsert([_doc(1)])  # no refresh: the next search builds the files
    shutil.rmtree(folder / "derived")
    (folder / "derived").write_text("not a folder")  # any write there fails, even as root
    assert _bm25_ids(tmp_path, "ro", "word1") == ["doc-1"]


def test_a_full_disk_is_a_storage_error_and_the_handle_keeps_working(tmp_path: Path) -> None:
    from semrank.errors import StorageError

    _make(tmp_path, "full", [_doc(0)])
    with open_index("full", home=tmp_path) as index:
        db = index.db  # type: ignore[attr-defined]
        pages = db._conn.execute("PRAGMA page_count").fetchone()[0]
        db._conn.execute(f"PRAGMA max_page_count={pages}")  # SQLite's own "disk is full"
        with pytest.raises(StorageError, match=r"'full' cannot be used here .*disk"):
            index.upsert([{"id": f"big-{i}", "text": "word " * 2000} for i in range(20)])
        db._conn.execute("PRAGMA max_page_count=1073741823")
        assert index.info().documents == 1  # nothing half-written; the next write works
        index.upsert([_doc(1)])
        assert index.info().documents == 2
