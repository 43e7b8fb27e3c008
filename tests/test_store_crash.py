"""Crash safety: SIGKILL an ingest mid-way; the index opens, answers, and keeps every
document of the batches it had committed."""

from __future__ import annotations

import calendar
import json
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


def test_after_a_restore_the_rebuilt_search_files_are_read_again_not_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from semrank.store import _local

    folder = _make(tmp_path, "r", [_doc(0), _doc(1)])
    backup = tmp_path / "backup.sqlite"
    shutil.copy(folder / "documents.sqlite", backup)
    for i in range(2, 6):  # the abandoned history runs ahead, its newest files saved
        with open_index("r", home=tmp_path) as index:
            index.upsert([_doc(i)])
            index.refresh()
    for leftover in folder.glob("documents.sqlite-*"):
        leftover.unlink()
    shutil.copy(backup, folder / "documents.sqlite")
    with open_index("r", home=tmp_path) as index:
        index.upsert([_doc(9)])  # builds and saves this history's files (refresh)
    builds: list[int] = []
    build = _local.BM25Index.build  # counted, still run: the store under test is not replaced

    def counted(*args: object, **kwargs: object) -> object:
        builds.append(1)
        return build(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(_local.BM25Index, "build", counted)
    assert _bm25_ids(tmp_path, "r", "word9") == ["doc-9"]  # later processes read them
    assert _bm25_ids(tmp_path, "r", "word9") == ["doc-9"]
    # Before: the other history's newer file hid them, so every process built them again.
    assert builds == []


def test_search_answers_when_its_files_cannot_be_saved(tmp_path: Path) -> None:
    folder = _make(tmp_path, "ro", [_doc(0)])
    with open_index("ro", home=tmp_path) as index:
        index.upsert([_doc(1)])  # no refresh: the next search builds the files
    shutil.rmtree(folder / "derived")
    (folder / "derived").write_text("not a folder")  # any write there fails, even as root
    assert _bm25_ids(tmp_path, "ro", "word1") == ["doc-1"]


@pytest.mark.usefixtures("windows_fsync")
def test_search_files_are_saved_where_fsync_needs_a_writable_file(tmp_path: Path) -> None:
    """Windows flushes no file opened read-only: the search files were flushed through one,
    so they were never saved there (every search rebuilt them, `index prepare` failed)."""
    folder = _make(tmp_path, "win", [_doc(i) for i in range(3)])
    (saved,) = (folder / "derived").glob("bm25-all.g*")
    assert (saved / "snapshot.json").is_file() and (saved / "ids.json").is_file()
    assert _bm25_ids(tmp_path, "win", "word2") == ["doc-2"]


def test_a_full_disk_is_a_storage_error_and_the_handle_keeps_working(tmp_path: Path) -> None:
    from semrank.errors import StorageError

    _make(tmp_path, "full", [_doc(0)])
    with open_index("full", home=tmp_path) as index:
        db = index.db  # type: ignore[attr-defined]
        pages = db._writer.execute("PRAGMA page_count").fetchone()[0]
        db._writer.execute(f"PRAGMA max_page_count={pages}")  # SQLite's own "disk is full"
        with pytest.raises(StorageError, match=r"'full' cannot be used here .*disk"):
            index.upsert([{"id": f"big-{i}", "text": "word " * 2000} for i in range(20)])
        db._writer.execute("PRAGMA max_page_count=1073741823")
        assert index.info().documents == 1  # nothing half-written; the next write works
        index.upsert([_doc(1)])
        assert index.info().documents == 2


# `semrank index create --from` in a process that is SIGKILLed after two committed batches.
KILLED_CLI = textwrap.dedent(
    """
    import os, signal, sys
    from semrank.cli import main
    from semrank.store._local import LocalStore

    write, batches = LocalStore._write_batch_given, []

    def killed_after_two(self, batch, progress, vectors):
        batches.append(len(batch))
        if len(batches) > 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return write(self, batch, progress, vectors)

    LocalStore._write_batch_given = killed_after_two
    sys.argv = ["semrank", *sys.argv[1:]]
    main()
    """
)


def test_a_killed_create_is_marked_incomplete_until_added_again(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from semrank.cli import app
    from semrank.errors import IndexExistsError
    from test_store_cli import run

    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps(_doc(i)) + "\n" for i in range(100)))
    home = str(tmp_path / "home")
    args = ["index", "create", "k", "--from", str(corpus), "--batch-size", "20", "--no-dense"]
    child = subprocess.run(
        [sys.executable, "-c", KILLED_CLI, *args, "--home", home], capture_output=True, timeout=120
    )
    assert child.returncode == -signal.SIGKILL, child.stderr

    listed = run("index", "list", "--home", home)
    assert listed.startswith("k\t40 documents\tbm25 only\tincomplete: it holds 40 documents, but ")
    # The commands name the home: without it they finished (or dropped) the default home's k.
    finish = f"run `semrank index add k {corpus} --home {home}` to finish it (ids are upserted"
    assert f"the ingest of {corpus} (started " in listed and "was interrupted" in listed
    assert finish in listed and f"`semrank index drop k --home {home}` to start over" in listed
    assert finish in run("index", "info", "k", "--home", home)
    marks = json.loads(run("index", "info", "k", "--json", "--home", home))["unfinished_ingests"]
    assert list(marks) == [str(corpus)] and marks[str(corpus)]["running"] is False
    with pytest.raises(IndexExistsError, match=r"already exists at .*: it holds 40 documents.*"):
        run(*args, "--home", home)
    with pytest.raises(IndexExistsError) as exists:
        run(*args, "--home", home)
    assert finish in str(exists.value)
    searched = CliRunner().invoke(app, ["search", "k", "word7", "--json", "--home", home])
    assert json.loads(searched.stdout)["hits"][0]["id"] == "doc-7"  # it answers all the same
    assert searched.stderr.startswith("warning: index 'k' is incomplete: it holds 40 documents")
    assert finish in searched.stderr

    assert "index 'k' holds 100" in run("index", "add", "k", str(corpus), "--home", home)
    assert run("index", "list", "--home", home) == "k\t100 documents\tbm25 only\n"
    info = json.loads(run("index", "info", "k", "--json", "--home", home))
    assert info["unfinished_ingests"] == {}


def test_another_file_at_an_interrupted_ingests_path_is_told_of_the_gap(tmp_path: Path) -> None:
    """cron writes each day's file to one path: an interrupted day's mark was cleared by the
    next day's ingest of another file there, and the missing records went unsaid."""
    from typer.testing import CliRunner

    from semrank.cli import app

    spool = tmp_path / "daily.jsonl"
    spool.write_text("".join(json.dumps(_doc(i)) + "\n" for i in range(10)))
    home = tmp_path / "home"
    with create_index("d", home=home, embedding_model=None) as index:
        index.upsert([_doc(i) for i in range(4)])  # day 1 was killed after 4 of 10 records
        assert index.begin_ingest(spool.resolve(), id_field="id") is None
    again = CliRunner().invoke(app, ["index", "add", "d", str(spool), "--home", str(home)])
    assert again.exit_code == 0 and "earlier ingest" not in again.stderr  # the same file
    with open_index("d", home=home) as index:
        index.begin_ingest(spool.resolve(), id_field="id")  # killed again
    spool.write_text("".join(json.dumps(_doc(i)) + "\n" for i in range(20, 22)))  # day 2
    day2 = CliRunner().invoke(app, ["index", "add", "d", str(spool), "--home", str(home)])
    assert day2.exit_code == 0, day2.output
    assert f"warning: an earlier ingest of {spool.resolve()} (started " in day2.stderr
    assert "the file has changed since" in day2.stderr


def test_an_unfinished_ingest_says_whether_it_still_runs_and_how_to_go_on(
    tmp_path: Path,
) -> None:
    from semrank._process import process_start_time
    from semrank.store._base import ingest_running

    spaced, numbered = tmp_path / "a b.jsonl", tmp_path / "numbered.csv"
    with create_index("n", home=tmp_path, embedding_model=None) as index:
        index.upsert([_doc(0)])
        index.begin_ingest(spaced, id_field="id")
        index.begin_ingest(numbered, id_field=None)  # record-number ids: no resuming
        note = index.unfinished_note()
        assert note is not None and note.startswith("it holds 1 document, but the ingest")
        assert f"`semrank index add n '{spaced}'` to finish it" in note
        assert "its records have no ids to resume by: `semrank index drop n`" in note
        # Begun by this process, which is past it (an ingest runs to its end before a read).
        assert not index.unfinished_ingests()[str(spaced)]["running"]
        index.end_ingest(numbered)
        assert list(index.unfinished_ingests()) == [str(spaced)]

        sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:  # as if that process had begun the ingest
            index._change_ingests(  # type: ignore[attr-defined]
                lambda marks: {
                    f: {**m, "pid": sleeper.pid, "process_started": process_start_time(sleeper.pid)}
                    for f, m in marks.items()
                }
            )
            assert index.unfinished_note() == (
                f"it holds 1 document, but the ingest of {spaced} (started "
                f"{index.unfinished_ingests()[str(spaced)]['started']}) is still running in "
                f"process {sleeper.pid}"
            )
        finally:
            sleeper.kill()
            sleeper.wait()
        assert not ingest_running(index.unfinished_ingests()[str(spaced)])  # gone
        index.end_ingest(spaced)
        assert index.unfinished_note() is None


def test_an_ingest_mark_is_stamped_in_utc_so_hosts_in_other_zones_read_it_alike(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Kolkata")  # +05:30: local time would differ from UTC
    time.tzset()
    try:
        with create_index("z", home=tmp_path, embedding_model=None) as index:
            before = time.time()
            index.begin_ingest(tmp_path / "a.jsonl", id_field="id")
            stamp = index.unfinished_ingests()[str(tmp_path / "a.jsonl")]["started"]
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert stamp.endswith(" UTC")
    parsed = time.strptime(stamp.removesuffix(" UTC"), "%Y-%m-%d %H:%M:%S")
    assert abs(calendar.timegm(parsed) - before) < 5


def test_a_reused_pid_does_not_make_an_interrupted_ingest_look_running() -> None:
    import socket

    from semrank._process import process_start_time
    from semrank.store._base import ingest_running

    parent = os.getppid()  # alive, and not this process
    mark = {"pid": parent, "host": socket.gethostname()}
    assert ingest_running({**mark, "process_started": process_start_time(parent)})
    if process_start_time(parent) is None:
        pytest.skip("no /proc: start times cannot be read here")
    # The same pid, started at another time: the ingest's process ended and the pid moved on.
    assert not ingest_running({**mark, "process_started": process_start_time(parent) + 1})


def test_on_windows_a_process_is_looked_up_by_handle_never_signalled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`os.kill(pid, 0)` is CTRL_C_EVENT on Windows: `index info` (and a /metrics scrape under
    --workers) asking whether a process runs could interrupt the console's processes."""
    import errno
    import types

    from semrank._process import process_alive

    running, ended, other_users = 101, 102, 103  # no such id: 104
    opened, closed, signalled = [], [], []

    def open_process(access: int, inherit: bool, pid: int) -> str:
        opened.append((access, inherit, pid))
        if pid == other_users:
            raise OSError(errno.EACCES, "Access is denied")  # a PermissionError, as on Windows
        if pid not in (running, ended):
            raise OSError(errno.EINVAL, "The parameter is incorrect")
        return f"handle-{pid}"

    def wait(handle: str, timeout_ms: int) -> int:
        assert timeout_ms == 0  # asks, never waits
        return 258 if handle == f"handle-{running}" else 0  # WAIT_TIMEOUT / WAIT_OBJECT_0

    winapi = types.SimpleNamespace(
        OpenProcess=open_process, WaitForSingleObject=wait, CloseHandle=closed.append
    )
    monkeypatch.setitem(sys.modules, "_winapi", winapi)
    monkeypatch.setattr(os, "kill", lambda pid, sig: signalled.append((pid, sig)))
    with monkeypatch.context() as windows:
        windows.setattr(os, "name", "nt")
        answers = [process_alive(pid) for pid in (running, ended, other_users, 104)]
    assert answers == [True, False, True, False]
    assert signalled == []
    # SYNCHRONIZE | PROCESS_QUERY_LIMITED_INFORMATION: rights any user has on another's process
    assert opened == [(0x00101000, False, pid) for pid in (101, 102, 103, 104)]
    assert closed == ["handle-101", "handle-102"]


def test_search_files_saved_after_a_drop_do_not_bring_the_folder_back(tmp_path: Path) -> None:
    """A search rebuilding its files while the index is dropped: publishing them re-created
    the index folder (search files, no database), and creating the name again was refused."""
    from semrank.store import _snapshots as snap

    gone = tmp_path / "dropped"
    with pytest.raises(FileNotFoundError):
        snap.publish(gone, "bm25-all", 1, lambda folder: {})
    assert not gone.exists()


def test_simultaneous_drops_of_one_index_are_one_drop_and_not_found(tmp_path: Path) -> None:
    """Each drop checks the database file and then renames the folder: the loser of that race
    got a FileNotFoundError (HTTP 500), not "index not found" (404)."""
    pytest.importorskip("bm25s")
    for round_ in range(40):
        name = f"x{round_}"
        create_index(name, home=tmp_path, fields=("text",), embedding_model=None).close()
        outcomes = _drops_at_once(name, tmp_path, 4)
        assert sorted(outcomes) == ["dropped"] + ["not found"] * 3, outcomes


def _drops_at_once(name: str, home: Path, count: int) -> list[str]:
    import threading

    from semrank.errors import IndexNotFoundError
    from semrank.store import drop_index

    outcomes: list[str] = []
    start = threading.Barrier(count)

    def drop() -> None:
        start.wait()
        try:
            drop_index(name, home=home)
            outcomes.append("dropped")
        except IndexNotFoundError:
            outcomes.append("not found")
        except Exception as exc:  # what the test is about: nothing else may come out
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=drop) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_reads_do_not_wait_for_a_write_waiting_on_another_process(tmp_path: Path) -> None:
    """A write waiting for the lock of another process (an ingest) held the one connection
    every read needed: a server's searches and index info stalled behind it until the write
    got the lock or gave up (60 s), and its request threads ran out."""
    import sqlite3
    import threading
    import time

    from semrank.store import DB_NAME

    _make(tmp_path, "busy", [_doc(0)])
    holder = sqlite3.connect(tmp_path / "busy" / DB_NAME, isolation_level=None)
    with open_index("busy", home=tmp_path) as index:
        holder.execute("BEGIN IMMEDIATE")  # another process's write transaction
        writer = threading.Thread(target=index.upsert, args=([_doc(1)],))
        writer.start()
        time.sleep(0.5)  # the upsert now waits for the lock
        started = time.monotonic()
        assert index.info().documents == 1
        assert list(index.search_bm25("alpha", k=5).ids) == ["doc-0"]
        assert time.monotonic() - started < 5.0
        holder.execute("COMMIT")
        writer.join(timeout=60)
        assert index.info().documents == 2
    holder.close()
