"""An index opened once and searched from many threads at once (a web app's first burst)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest

from semrank._locks import KeyedLocks
from semrank.store import create_index, open_index
from test_postgres_store import HashingEmbedder


def test_an_index_loads_its_embedding_model_once_for_all_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each thread that found the model not loaded yet loaded (and compiled) its own copy:
    twelve threads, twelve loads and four times the memory."""
    import semrank.runtime

    pytest.importorskip("bm25s")
    with create_index("docs", home=tmp_path, embedder=HashingEmbedder()) as index:
        index.upsert([{"id": "a", "text": "fleas bite"}, {"id": "b", "text": "Paris"}])
    loads: list[int] = []

    def slow_load(*args: Any, **kwargs: Any) -> HashingEmbedder:
        loads.append(threading.get_ident())
        time.sleep(0.3)  # loading takes seconds: every thread arrives meanwhile
        return HashingEmbedder()

    monkeypatch.setattr(semrank.runtime, "load_embedder", slow_load)
    with open_index("docs", home=tmp_path) as index:
        start = threading.Barrier(8)
        found: list[object] = []

        def first_use() -> None:
            start.wait()
            found.append(index.embedder)

        threads = [threading.Thread(target=first_use) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(loads) == 1
    assert len({id(embedder) for embedder in found}) == 1


def test_loading_one_re_ranker_does_not_hold_up_searches_with_another(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Searches look their re-ranker up by name; the lookup lock was held while a model loaded
    (seconds), so searches with models already loaded waited for it."""
    import semrank.rerank
    from semrank.pipeline import _context

    built: list[str] = []

    class SlowToLoad:
        def __init__(self, name: str | None) -> None:
            built.append(str(name))
            time.sleep(1.0 if name == "slow" else 0.0)

    monkeypatch.setattr(semrank.rerank, "Reranker", SlowToLoad)
    monkeypatch.setattr(_context, "_RERANKERS", OrderedDict())
    monkeypatch.setattr(_context, "_LOADING", KeyedLocks())
    ready = _context.load_reranker("ready")
    loaders = [threading.Thread(target=_context.load_reranker, args=("slow",)) for _ in range(3)]
    for thread in loaders:
        thread.start()
    time.sleep(0.2)  # "slow" is loading now
    started = time.monotonic()
    assert _context.load_reranker("ready") is ready
    assert time.monotonic() - started < 0.5
    for thread in loaders:
        thread.join()
    assert built.count("slow") == 1  # three searches at once, one load


def test_index_size_is_read_while_derived_folders_come_and_go(tmp_path: Path) -> None:
    """Index info summed the files of a walk that writes and searches changed under it: a
    derived folder renamed or removed meanwhile was a FileNotFoundError (HTTP 500)."""
    import shutil

    from semrank.store._base import index_dir_size

    stop = threading.Event()

    def churn() -> None:
        n = 0
        while not stop.is_set():
            staging = tmp_path / "derived" / f".tmp-{n}"
            staging.mkdir(parents=True)
            for i in range(20):
                (staging / f"f{i}").write_bytes(b"x")
            done = staging.rename(tmp_path / "derived" / f"g{n}")
            shutil.rmtree(done)
            n += 1

    worker = threading.Thread(target=churn)
    worker.start()
    try:
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            assert index_dir_size(tmp_path) >= 0
    finally:
        stop.set()
        worker.join()


def test_opening_an_index_that_a_drop_moved_away_is_not_found(tmp_path: Path) -> None:
    """A search opening the index while `index drop` moved its folder away got SQLite's raw
    'unable to open database file' (a 500) or a 503 about permissions and disk space."""
    from semrank.errors import IndexNotFoundError
    from semrank.store._sqlite import DB_NAME, DocumentDB

    folder = tmp_path / "gone"
    with pytest.raises(IndexNotFoundError, match="'gone' was dropped"):
        DocumentDB(folder / DB_NAME)


def test_models_trees_name_are_kept_by_folder_and_files_and_few_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Keyed by the name as typed, Rerank("best") read another folder's model after a chdir,
    and a model retrained in place kept its old weights; every model named stayed loaded."""
    import semrank.rerank
    from semrank.pipeline import _context

    class Loaded:
        def __init__(self, name: str | None) -> None:
            self.name = name

    monkeypatch.setattr(semrank.rerank, "Reranker", Loaded)
    monkeypatch.setattr(_context, "_RERANKERS", OrderedDict())
    monkeypatch.setattr(_context, "_LOADING", KeyedLocks())
    for run in ("a", "b"):
        (tmp_path / run / "best").mkdir(parents=True)
        (tmp_path / run / "best" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path / "a")
    first = _context.load_reranker("best")
    assert _context.load_reranker("best") is first
    monkeypatch.chdir(tmp_path / "b")
    assert _context.load_reranker("best") is not first  # another folder
    monkeypatch.chdir(tmp_path / "a")
    (tmp_path / "a" / "best" / "config.json").write_text('{"retrained": true}')
    second = _context.load_reranker("best")
    assert second is not first  # its files changed
    (tmp_path / "a" / "best" / "cross-encoder").mkdir()
    (tmp_path / "a" / "best" / "cross-encoder" / "w").write_text("weights")
    third = _context.load_reranker("best")
    assert third is not second
    time.sleep(0.01)
    # A blend's part rewritten in place: its folder's own entry does not change.
    (tmp_path / "a" / "best" / "cross-encoder" / "w").write_text("retrained")
    assert _context.load_reranker("best") is not third
    for name in ("m1", "m2", "m3", "m4", "m5"):
        _context.load_reranker(name)
    assert len(_context._RERANKERS) == 4


def test_models_asked_for_leave_no_loading_lock_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lock per model name (or retrained folder) ever asked for was kept for the process's
    life, unknown names too: a service naming models from its users' trees grew with each."""
    import semrank.rerank
    from semrank.errors import ModelNotFoundError
    from semrank.pipeline import _context

    class Loaded:
        def __init__(self, name: str | None) -> None:
            if name and name.startswith("unknown"):
                raise ModelNotFoundError(f"no model {name!r}")
            self.name = name

    monkeypatch.setattr(semrank.rerank, "Reranker", Loaded)
    monkeypatch.setattr(_context, "_RERANKERS", OrderedDict())
    monkeypatch.setattr(_context, "_LOADING", KeyedLocks())
    for number in range(20):
        _context.load_reranker(f"model-{number}")
        with pytest.raises(ModelNotFoundError):
            _context.load_reranker(f"unknown-{number}")
    assert len(_context._LOADING) == 0
    assert _context.load_reranker("model-19").name == "model-19"  # still loaded, kept


def test_a_failed_load_leaves_one_load_at_a_time(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A load that failed removed its lock while other threads still waited on it: a search
    arriving then made a new lock and loaded the model beside one of them."""
    import semrank.rerank
    from semrank.pipeline import _context

    loading, most = [0], [0]
    guard = threading.Lock()

    class FailsFirst:
        calls = 0

        def __init__(self, name: str | None) -> None:
            with guard:
                FailsFirst.calls += 1
                first = FailsFirst.calls == 1
                loading[0] += 1
                most[0] = max(most[0], loading[0])
            time.sleep(0.3)
            with guard:
                loading[0] -= 1
            if first:
                raise RuntimeError("the first load fails")

    monkeypatch.setattr(semrank.rerank, "Reranker", FailsFirst)
    monkeypatch.setattr(_context, "_RERANKERS", OrderedDict())
    monkeypatch.setattr(_context, "_LOADING", KeyedLocks())

    def load() -> None:
        with contextlib.suppress(RuntimeError):
            _context.load_reranker("flaky")

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(0.35)  # the first load has failed; the second thread waits on its lock...
    late = threading.Thread(target=load)  # ...when a third search arrives
    late.start()
    for thread in [*threads, late]:
        thread.join()
    assert most[0] == 1 and len(_context._LOADING) == 0


_ADD_ALIASES = """
import sys
from semrank.store import update_aliases
for n in range(8):
    update_aliases([{"add": {"index": "docs", "alias": f"{sys.argv[1]}-{n}"}}], home=sys.argv[2])
"""


def test_aliases_added_by_processes_and_threads_at_once_are_all_kept(tmp_path: Path) -> None:
    """Each change reads, changes and rewrites the home's alias file: unlocked, two writers
    read the same file and the second's write lost the first's alias."""
    import subprocess
    import sys

    from semrank.store import list_aliases, update_aliases

    create_index("docs", home=tmp_path, embedding_model=None).close()
    command = [sys.executable, "-c", _ADD_ALIASES]
    workers = [subprocess.Popen([*command, f"p{n}", str(tmp_path)]) for n in range(3)]

    def add(prefix: str) -> None:
        for n in range(8):
            update_aliases([{"add": {"index": "docs", "alias": f"{prefix}-{n}"}}], home=tmp_path)

    threads = [threading.Thread(target=add, args=(f"t{n}",)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(worker.wait(timeout=120) == 0 for worker in workers)
    expected = {f"{who}{n}-{i}" for who in "pt" for n in range(3) for i in range(8)}
    assert set(list_aliases(tmp_path)) == expected


# One server process's partial updates (Elasticsearch's _update) of document d1, each adding
# its own field, from a start time all writers wait for.
PARTIAL_UPDATES = """
import sys, time
sys.path.insert(0, sys.argv[4])
from semrank.server._es_writes import WriteAction, apply_writes
from semrank.store import open_index
from test_postgres_store import HashingEmbedder

prefix, where, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
place = {"store": where} if where.startswith("postgresql") else {"home": where}
with open_index("docs", **place, embedder=HashingEmbedder()) as index:
    while time.time() < start:
        time.sleep(0.001)
    for n in range(25):
        update = {"doc": {f"{prefix}{n}": n}}
        action = WriteAction(op="update", index="docs", id="d1", body=update, number=1)
        (outcome,), _ = apply_writes(index, [action])
        assert outcome.result == "updated", outcome
"""


def check_updates_from_processes(where: str) -> None:
    """Two processes' partial updates of d1 ("fleas bite") of index docs in ``where`` (a home
    or a DSN): every field lands, and d1 is still found by its text and its vector."""
    import subprocess
    import sys

    start = str(time.time() + 2)  # both processes loaded and waiting
    command = [sys.executable, "-c", PARTIAL_UPDATES]
    tests = str(Path(__file__).parent)
    workers = [subprocess.Popen([*command, prefix, where, start, tests]) for prefix in "ab"]
    assert all(worker.wait(timeout=120) == 0 for worker in workers)
    place = {"store": where} if where.startswith("postgresql") else {"home": where}
    with open_index("docs", **place, embedder=HashingEmbedder()) as index:  # type: ignore[arg-type]
        (fields,) = index.get(["d1"])
        hits = index.search_vector(HashingEmbedder().embed(["fleas bite"])[0], k=1)
        assert list(hits.ids) == ["d1"] and hits.scores[0] == pytest.approx(1.0, abs=1e-4)
        assert list(index.search_bm25("fleas", k=1).ids) == ["d1"] and len(index) == 1
    expected = {"text"} | {f"{prefix}{n}" for prefix in "ab" for n in range(25)}
    assert set(fields or {}) == expected


def test_partial_updates_of_one_document_from_two_processes_all_land(tmp_path: Path) -> None:
    """Each update read the document, merged its field in and wrote it back, locked only
    within its process: two server processes (--workers 2) both read one version and the
    second's write lost the first's field (46 of 50 kept), though both answered "updated"."""
    with create_index("docs", home=tmp_path, embedder=HashingEmbedder()) as index:
        index.upsert([{"id": "d1", "text": "fleas bite"}])
    check_updates_from_processes(str(tmp_path))


def test_a_text_rewritten_between_an_updates_read_and_its_lock_is_embedded(
    tmp_path: Path,
) -> None:
    """update_documents embeds what a first read's change gives, outside the write lock; a
    text another writer changed meanwhile is written without a vector, then embedded."""
    with (
        create_index("docs", home=tmp_path, embedder=HashingEmbedder()) as index,
        open_index("docs", home=tmp_path, embedder=HashingEmbedder()) as other,
    ):
        index.upsert([{"id": "d1", "text": "fleas bite"}])
        reads: list[Any] = []

        def tag(found: dict[str, Any]) -> dict[str, Any]:
            if not reads:  # another writer lands between the first read and the lock
                other.upsert([{"id": "d1", "text": "paris museums"}])
            reads.append(found["d1"])
            return {"d1": {**found["d1"], "tag": "x"}}

        counts = index.update_documents(["d1"], tag)
        assert reads == [{"text": "fleas bite"}, {"text": "paris museums"}]
        assert (counts.documents, counts.written) == (1, 1)
        assert index.get(["d1"]) == [{"text": "paris museums", "tag": "x"}]
        query = HashingEmbedder().embed(["paris museums"])[0]
        hits = index.search_vector(query, k=1)
        assert list(hits.ids) == ["d1"] and hits.scores[0] == pytest.approx(1.0, abs=1e-5)
