"""Indexes kept open across searches (``semrank.pipeline.using_index``): a drop, or a newer
handle replacing a stale one, never closes a handle under a search still using it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from semrank.errors import IndexNotFoundError, StorageError
from semrank.pipeline import forget_open_indexes, open_cached, search, using_index
from semrank.store import create_index, drop_index, open_index

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


def test_an_index_another_process_dropped_is_let_go_at_the_next_request(home: Path) -> None:
    """Dropped by the CLI or another server worker, an index no request names again kept its
    deleted files open (disk space, file descriptors) for as long as the server ran."""
    with create_index("gone", home=home, fields=("text",), embedding_model=None) as index:
        index.upsert(DOCS)
    held = open_cached("gone", home)
    assert _ids(search(held, "fleas", k=1)) == ["a"]
    drop_index("gone", home=home)  # as another process does: this one's handle is not told
    time.sleep(1.1)  # requests look for such handles about once a second
    assert _ids(search("docs", "fleas", k=1, home=home)) == ["a"]  # any other index's request
    with pytest.raises(Exception, match="closed"):
        search(held, "fleas", k=1)
    descriptors = Path("/proc/self/fd")  # Linux: what this process holds open
    if descriptors.is_dir():
        held_open = [link for link in descriptors.iterdir() if "gone" in _target(link)]
        assert not held_open, "the dropped index's files are still open"


def test_a_server_lets_go_of_an_index_another_process_dropped_without_index_requests(
    home: Path,
) -> None:
    """A server that only re-ranks (or sits idle) kept a dropped index's deleted files open
    until an index request came."""
    import asyncio

    pytest.importorskip("fastapi")
    from semrank.server.app import sweep_dropped_indexes

    with create_index("gone", home=home, fields=("text",), embedding_model=None) as index:
        index.upsert(DOCS)
    held = open_cached("gone", home)
    assert _ids(search(held, "fleas", k=1)) == ["a"]
    drop_index("gone", home=home)  # as another process does: this one's handle is not told

    async def serve_a_while() -> None:
        sweeper = asyncio.create_task(sweep_dropped_indexes(every_s=0.1))
        await asyncio.sleep(1.5)  # past the once-a-second limit on sweeps
        sweeper.cancel()

    asyncio.run(serve_a_while())
    with pytest.raises(Exception, match="closed"):
        search(held, "fleas", k=1)


def test_past_the_held_limit_the_least_recently_used_idle_index_is_closed(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every index a server opened stayed open for good: at ~200 indexes a server under the
    usual 1,024-descriptor limit could not open another file nor accept a connection."""
    from semrank.pipeline import _open

    monkeypatch.setattr(_open, "MAX_HELD", 2)
    for name in ("one", "two"):
        with create_index(name, home=home, fields=("text",), embedding_model=None) as index:
            index.upsert(DOCS)
    first = open_cached("docs", home)
    with using_index("one", home) as in_use:
        second = open_cached("two", home)  # a third index held: "docs" is the oldest idle one
        assert _ids(search(in_use, "fleas", k=1)) == ["a"]  # one in use is never closed
    with pytest.raises(Exception, match="closed"):
        search(first, "fleas", k=1)
    assert open_cached("two", home) is second  # the recently used ones stay open
    assert _ids(search("docs", "fleas", k=1, home=home)) == ["a"]  # opened again when asked


def _target(link: Path) -> str:
    try:
        return str(link.readlink())
    except OSError:
        return ""


def test_a_handle_is_shared_while_its_index_is_unchanged(home: Path) -> None:
    with using_index("docs", home) as first, using_index("docs", home) as second:
        assert first is second
    assert open_cached("docs", home) is first


def test_a_hit_rewritten_while_the_search_ran_is_not_returned_as_its_new_version(
    home: Path,
) -> None:
    """The ranking read one version and the documents were read after a write: a search for
    "alpha" returned documents that said "beta". The search runs again on the new state."""
    index = create_index("race", home=home, embedding_model=None)
    index.upsert([{"id": f"d{i}", "text": f"alpha report {i}"} for i in range(3)])
    index.upsert([{"id": "other", "text": "gamma notes"}])
    real_search = index.search_bm25
    writes = iter([[{"id": f"d{i}", "text": f"beta report {i}"} for i in range(3)]])

    def search_while_a_writer_commits(*args: object, **kwargs: object) -> object:
        found = real_search(*args, **kwargs)  # type: ignore[arg-type]
        for documents in writes:  # once: the concurrent writer's commit lands here
            index.upsert(documents)
        return found

    index.search_bm25 = search_while_a_writer_commits  # type: ignore[method-assign]
    results = search(index, "alpha", k=10)
    assert [h.document for h in results.hits if "alpha" not in h.document["text"]] == []
    assert results.ids == []  # run again on the state after the write: no "alpha" left
    assert sorted(search(index, "beta", k=10).ids) == ["d0", "d1", "d2"]
    index.close()


def test_a_search_whose_hits_keep_changing_says_so_after_its_last_run(home: Path) -> None:
    index = create_index("busy", home=home, embedding_model=None)
    index.upsert([{"id": "d0", "text": "alpha report"}])
    real_search = index.search_bm25
    version = 0

    def search_while_a_writer_commits(*args: object, **kwargs: object) -> object:
        nonlocal version
        version += 1  # "alpha" before every run, rewritten once the run has read the index
        index.upsert([{"id": "d0", "text": f"alpha report {version}"}])
        found = real_search(*args, **kwargs)  # type: ignore[arg-type]
        index.upsert([{"id": "d0", "text": f"beta report {version}"}])
        return found

    index.search_bm25 = search_while_a_writer_commits  # type: ignore[method-assign]
    results = search(index, "alpha", k=10)
    assert version == 3  # CONSISTENT_TRIES runs, then the answer as read
    assert "1 hits were rewritten while the search ran" in results.warnings[0]
    index.close()


def _child_writes_by_name(home: Path, ids: list[str]) -> None:
    from semrank.store import open_index as reopen

    for doc_id in ids:  # by name, as a worker of a user's pool does
        open_cached("docs", home).upsert([{"id": doc_id, "text": "written by a child"}])
    with reopen("docs", home=home) as index:
        assert len(index) >= len(DOCS) + len(ids)


def _child_uses_the_parents_handle(handle: object, failed: Any) -> None:
    try:
        handle.upsert([{"id": "lost", "text": "x"}])  # type: ignore[attr-defined]
    except StorageError as exc:
        failed.value = int("opened in another process" in str(exc))


def test_a_forked_child_opens_its_own_handles_and_its_writes_are_kept(home: Path) -> None:
    """A child forked after the parent searched an index reused the parent's SQLite
    connections: once the parent closed its handle (thinking itself the last user, it deleted
    the write-ahead log) 60 of the children's 80 acknowledged upserts were gone."""
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    held = open_cached("docs", home)
    assert _ids(search("docs", "fleas", k=1, home=home)) == ["a"]
    children = [
        fork.Process(target=_child_writes_by_name, args=(home, [f"c{n}-{i}" for i in range(5)]))
        for n in range(2)
    ]
    for child in children:
        child.start()
    forget_open_indexes()  # the parent is done with the index meanwhile
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    with open_index("docs", home=home) as index:
        assert len(index) == len(DOCS) + 10
    flag = fork.Value("i", 0)
    with open_index("docs", home=home) as mine:
        child = fork.Process(target=_child_uses_the_parents_handle, args=(mine, flag))
        child.start()
        child.join(60)
        assert flag.value == 1  # named, not written through the parent's connection
        assert mine.get(["lost"]) == [None]
    del held


def test_the_held_limit_follows_a_low_open_files_limit() -> None:
    """At 11-12 descriptors a dense, prepared index, 100 held indexes ran a server with a
    1,024-descriptor limit out of descriptors at 85."""
    import subprocess
    import sys

    resource = pytest.importorskip("resource")
    code = (
        "import resource; from semrank.pipeline._open import _held_limit; "
        "resource.setrlimit(resource.RLIMIT_NOFILE, (1024, resource.getrlimit("
        "resource.RLIMIT_NOFILE)[1])); print(_held_limit())"
    )
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 1024:
        pytest.skip("hard open-files limit below 1,024")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(done.stdout) == (1024 - 256) // 12


def test_a_fork_while_another_thread_queries_an_index_leaves_the_child_running(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The child closed its copies of the parent's connections at fork, and one whose SQLite
    mutex another thread of the parent held (mid-query) made the child wait for good. A fork
    now waits a little for such queries; past that, the child refuses to open that index (its
    copied lock records made a new connection lose writes)."""
    import os
    import threading

    from semrank.store import _sqlite

    monkeypatch.setattr(_sqlite, "FORK_WAIT_S", 0.3)  # shorter than the query below

    held = open_index("docs", home=home)
    started = threading.Event()
    slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 20000000) "

    def query() -> None:
        with held.db._reading() as conn:  # type: ignore[attr-defined]  # as a search reads
            started.set()
            conn.execute(slow + "SELECT count(*) FROM c").fetchone()

    thread = threading.Thread(target=query)
    thread.start()
    started.wait(10)
    time.sleep(0.2)  # inside SQLite's step now
    child = os.fork()
    if child == 0:
        try:
            open_index("docs", home=home)
        except StorageError as exc:
            os._exit(0 if "cannot be opened in this process" in str(exc) else 2)
        os._exit(3)  # opened: its writes could be lost
    deadline = time.monotonic() + 20
    status = (0, 0)
    while time.monotonic() < deadline and status == (0, 0):
        status = os.waitpid(child, os.WNOHANG)
        time.sleep(0.05)
    if status == (0, 0):
        os.kill(child, 9)
        os.waitpid(child, 0)
    thread.join()
    held.close()
    assert status != (0, 0), "the forked child hung in semrank's at-fork handler"
    assert os.waitstatus_to_exitcode(status[1]) == 0  # refused, naming why


def test_a_drop_in_the_library_lets_go_of_the_searched_index_at_once(home: Path) -> None:
    """drop_index after search() left the dropped index's files open: its disk space was
    freed only by a later search (a notebook that drops a large index and idles held it)."""
    import contextlib
    import os

    def held_deleted() -> list[str]:
        links = []
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
                links.append(os.readlink(f"/proc/self/fd/{fd}"))
        return [link for link in links if str(home) in link and link.endswith("(deleted)")]

    assert _ids(search("docs", "fleas", k=1, home=home)) == ["a"]
    drop_index("docs", home=home)
    assert held_deleted() == []
