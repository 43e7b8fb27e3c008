"""An index opened once and searched from many threads at once (a web app's first burst)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

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
    monkeypatch.setattr(_context, "_RERANKERS", {})
    monkeypatch.setattr(_context, "_LOADING", {})
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
