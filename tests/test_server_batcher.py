"""The model batcher under load: big requests are scored in slices that take turns with the
requests behind them, work for requests that are over is dropped, and shutdown is bounded.

The fake scorers record every model call and hold the first one until the test lets it go, so
the order of calls is fixed by the test, not by timing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from semrank.errors import (
    BackendUnavailableError,
    ClientDisconnectedError,
    DeadlineExceededError,
    OverloadedError,
    http_status_for,
)
from semrank.server import ServerConfig, create_app
from semrank.server._batcher import BatcherLimits, PairBatcher
from semrank.server._metrics import Metrics

pytestmark = pytest.mark.anyio

Pair = tuple[str, str]
WAIT_S = 30.0  # upper bound on any wait here; only reached when something is broken


class GatedScorer:
    """Records each call's pairs; the first call runs ``on_first`` and then waits for ``release``.
    Scores come from ``inner`` (default: the document's length)."""

    def __init__(
        self,
        inner: Callable[[Sequence[Pair]], np.ndarray] | None = None,
        on_first: Callable[[], None] | None = None,
    ) -> None:
        self.inner = inner
        self.on_first = on_first
        self.calls: list[list[Pair]] = []
        self.release = threading.Event()

    def __call__(self, pairs: Sequence[Pair]) -> np.ndarray:
        self.calls.append(list(pairs))
        if len(self.calls) == 1:
            if self.on_first is not None:
                self.on_first()
            self.release.wait(WAIT_S)
        if self.inner is not None:
            return self.inner(pairs)
        return np.array([float(len(doc)) for _, doc in pairs], dtype=np.float32)


async def _until(condition: Callable[[], bool]) -> None:
    """Wait (bounded) until ``condition()`` holds; it is set by another thread or task."""
    for _ in range(int(WAIT_S / 0.002)):
        if condition():
            return
        await asyncio.sleep(0.002)
    raise AssertionError("condition not reached")


def _batcher(scorer: Any, **limits: float) -> PairBatcher:
    return PairBatcher(
        scorer,
        model="m",
        max_length=512,
        limits=BatcherLimits(**{"wait_s": 0, **limits}),
        metrics=Metrics(),
    )


def _pairs(query: str, count: int) -> list[Pair]:
    return [(query, "d" * (i + 1)) for i in range(count)]


async def test_a_big_job_is_sliced_and_a_job_behind_it_runs_between_its_slices() -> None:
    scorer = GatedScorer()
    batcher = _batcher(scorer, max_pairs=4)
    await batcher.start()
    big, small = _pairs("big", 10), [("small", "sss")]
    finished: list[str] = []
    big_task = asyncio.create_task(batcher.score(big))
    big_task.add_done_callback(lambda _: finished.append("big"))
    await _until(lambda: len(scorer.calls) == 1)  # the first slice is in the model
    small_task = asyncio.create_task(batcher.score(small))
    small_task.add_done_callback(lambda _: finished.append("small"))
    await asyncio.sleep(0)  # the small job queues (its task runs up to its await)
    scorer.release.set()
    big_scores, small_scores = await asyncio.gather(big_task, small_task)
    await batcher.close()
    # Before slicing, the whole big job was one call and the small one waited for all of it.
    assert scorer.calls == [big[:4], small + big[4:7], big[7:]]
    assert finished == ["small", "big"]
    np.testing.assert_array_equal(big_scores, [len(doc) for _, doc in big])
    np.testing.assert_array_equal(small_scores, [3.0])


async def _served_in_turn(first: list[Pair], *behind: list[Pair]) -> list[list[Pair]]:
    """The model calls when ``first`` is in the model and ``behind`` queue up (slices of 3)."""
    scorer = GatedScorer()
    batcher = _batcher(scorer, max_pairs=3)
    await batcher.start()
    tasks = [asyncio.create_task(batcher.score(first))]
    await _until(lambda: len(scorer.calls) == 1)
    tasks += [asyncio.create_task(batcher.score(pairs)) for pairs in behind]
    await asyncio.sleep(0)
    scorer.release.set()
    await asyncio.gather(*tasks)
    await batcher.close()
    return scorer.calls


async def test_two_big_jobs_take_turns() -> None:
    calls = await _served_in_turn(_pairs("a", 6), _pairs("b", 6))
    assert [{query for query, _ in call} for call in calls] == [{"a"}, {"b"}, {"a"}, {"b"}]


async def test_a_small_job_behind_two_big_ones_is_not_left_until_they_finish() -> None:
    calls = await _served_in_turn(_pairs("a", 12), _pairs("b", 12), [("small", "s")])
    served = [query for call in calls for query, _ in call]
    # Least recently served first: the small job gets the third call, not the last.
    assert served.index("small") < 9 and len(calls) <= 10


async def test_pairs_each_over_the_token_budget_are_scored_one_by_one() -> None:
    scorer = GatedScorer()
    scorer.release.set()
    batcher = _batcher(scorer, max_pairs=512, token_budget=10)  # every pair is ~100 tokens
    await batcher.start()
    docs = {name: [(name, name + str(i) + "x" * 400) for i in range(3)] for name in "ab"}
    a, b = (asyncio.create_task(batcher.score(docs[name])) for name in "ab")
    scores = await asyncio.wait_for(asyncio.gather(a, b), WAIT_S)
    await batcher.close()
    for got, name in zip(scores, "ab", strict=True):  # before: the batcher task died
        np.testing.assert_array_equal(got, [len(doc) for _, doc in docs[name]])
    assert [len(call) for call in scorer.calls] == [1] * 6


async def test_the_token_budget_slices_too_and_slices_score_as_one_call(reranker: Any) -> None:
    # The real model: a pair's score must not depend on how its request was split.
    rng = np.random.default_rng(7)
    words = ["flea", "blood", "dog", "cat", "paris", "ocean", "fish", "music", "piano", "river"]
    docs = [" ".join(rng.choice(words, size=int(rng.integers(2, 60)))) for _ in range(40)]
    pairs = [("what do fleas eat", doc) for doc in docs]
    whole = reranker.scorer.score_pairs(pairs)
    for limits in ({"max_pairs": 3}, {"token_budget": 150}):
        scorer = GatedScorer(inner=reranker.scorer.score_pairs)
        scorer.release.set()
        batcher = _batcher(scorer, **limits)
        await batcher.start()
        sliced = await batcher.score(pairs)
        await batcher.close()
        assert len(scorer.calls) > 1 and sum(len(call) for call in scorer.calls) == len(pairs)
        np.testing.assert_array_equal(sliced, whole)


async def test_a_job_past_its_deadline_stops_between_slices() -> None:
    # Far enough ahead that the first slice starts before it, even on a busy machine.
    deadline = time.monotonic() + 1.0

    def wait_for_deadline() -> None:  # the first slice ends after the deadline
        while time.monotonic() <= deadline:
            time.sleep(0.005)

    scorer = GatedScorer(on_first=wait_for_deadline)
    scorer.release.set()
    batcher = _batcher(scorer, max_pairs=4)
    await batcher.start()
    with pytest.raises(DeadlineExceededError):
        await batcher.score(_pairs("q", 10), deadline=deadline)
    await batcher.close()
    assert [len(call) for call in scorer.calls] == [4]


async def test_a_job_whose_request_is_over_stops_between_slices() -> None:
    gone = threading.Event()
    scorer = GatedScorer(on_first=gone.set)  # the request ends during its first slice
    scorer.release.set()
    batcher = _batcher(scorer, max_pairs=4)
    await batcher.start()
    with pytest.raises(ClientDisconnectedError, match="dropped"):
        await batcher.score(_pairs("q", 10), gone=gone)
    # A thread of a request that is over queues nothing more.
    with pytest.raises(ClientDisconnectedError, match="dropped"):
        await asyncio.to_thread(batcher.score_blocking, _pairs("q", 2), None, gone)
    await batcher.close()
    assert [len(call) for call in scorer.calls] == [4]


async def test_close_is_bounded_and_fails_the_jobs_left_with_a_503() -> None:
    scorer = GatedScorer()
    batcher = _batcher(scorer, max_pairs=4)
    await batcher.start()
    running = asyncio.create_task(batcher.score(_pairs("a", 6)))
    await _until(lambda: len(scorer.calls) == 1)  # the model is busy and stays busy
    queued = asyncio.create_task(batcher.score(_pairs("b", 2)))
    await asyncio.sleep(0)
    try:
        # Before: close() waited for the model call in progress and everything queued.
        await asyncio.wait_for(batcher.close(timeout_s=0.05), WAIT_S)
        outcomes = await asyncio.gather(running, queued, return_exceptions=True)
        failed = [o for o in outcomes if isinstance(o, BackendUnavailableError)]
        assert len(failed) == 2, outcomes
        assert {http_status_for(o) for o in failed} == {503}
        # A request thread left over must not score on its own after shutdown.
        with pytest.raises(OverloadedError, match="shutting down"):
            await asyncio.to_thread(batcher.score_blocking, _pairs("c", 1))
    finally:
        scorer.release.set()
    assert len(scorer.calls) == 1


# --- through the app ------------------------------------------------------------------------

DOCS = [f"Fleas are small insects number {i} that feed on blood." for i in range(8)]


def _queue_depth(metrics: str) -> float:
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == "semrank_queue_depth":
                return float(sample.value)
    return 0.0


def _app_with_a_gated_model(
    reranker: Any, monkeypatch: pytest.MonkeyPatch, *, max_pairs: int
) -> tuple[Any, GatedScorer]:
    """The app, its model calls held by a GatedScorer (the real model behind it), so a test
    decides when the first call returns."""
    config = ServerConfig(batch_max_pairs=max_pairs, batch_wait_ms=0, cache_size=0)
    app = create_app(config, rerankers={"minilm": reranker})
    batcher = app.state.registry.engines["minilm"].scorer.batcher
    scorer = GatedScorer(inner=reranker.scorer.score_pairs)
    monkeypatch.setattr(batcher, "_score_fn", scorer)
    return app, scorer


async def test_a_small_request_is_answered_between_a_big_requests_slices(
    reranker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    app, scorer = _app_with_a_gated_model(reranker, monkeypatch, max_pairs=4)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as c:
            big = asyncio.create_task(
                c.post("/v1/rerank", json={"query": "big", "documents": DOCS})
            )
            await _until(lambda: len(scorer.calls) == 1)
            small_body = {"query": "small", "documents": DOCS[:2]}
            small = asyncio.create_task(c.post("/v1/rerank", json=small_body))
            for _ in range(int(WAIT_S / 0.005)):  # until the small request waits in the queue
                if _queue_depth((await c.get("/metrics")).text) == 2:
                    break
                await asyncio.sleep(0.005)
            scorer.release.set()
            big_response, small_response = await asyncio.gather(big, small)
    # Before slicing: one call of all 8 pairs, then the small request's 2.
    assert [len(call) for call in scorer.calls] == [4, 4, 2]
    assert {query for query, _ in scorer.calls[1]} == {"small", "big"}
    for response, query, documents in (
        (big_response, "big", DOCS),
        (small_response, "small", DOCS[:2]),
    ):
        want = reranker.rerank(query, documents)
        got = response.json()["results"]
        assert [(r["index"], r["relevance_score"]) for r in got] == [
            (r.index, r.relevance_score) for r in want
        ]


# timeout_ms: the deadline passes while the model call the request waits behind still runs
# (2 s after the request began, long after its client left): that was counted as a deadline
# rejection, or not, depending on whether the model call ended first.
@pytest.mark.parametrize("timeout_ms", [None, 2000])
async def test_a_client_that_disconnects_stops_its_model_work(
    reranker: Any, monkeypatch: pytest.MonkeyPatch, timeout_ms: int | None
) -> None:
    app, scorer = _app_with_a_gated_model(reranker, monkeypatch, max_pairs=2)
    fields = {"query": "q", "documents": DOCS, "timeout_ms": timeout_ms}
    body = httpx.Request("POST", "http://t", json=fields).read()
    disconnect = asyncio.Event()
    said_disconnect = False
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:  # the body, then the client goes away on cue
        nonlocal said_disconnect, body
        if body:
            message, body = {"type": "http.request", "body": body, "more_body": False}, b""
            return message
        await disconnect.wait()
        said_disconnect = True
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = _rerank_scope()
    async with app.router.lifespan_context(app):
        request = asyncio.create_task(app(scope, receive, send))
        await _until(lambda: len(scorer.calls) == 1)
        disconnect.set()
        await _until(lambda: said_disconnect)
        if timeout_ms is not None:  # the request ends at its deadline, the model call still held
            await asyncio.wait_for(asyncio.shield(request), WAIT_S)
        scorer.release.set()
        await asyncio.wait_for(request, WAIT_S)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            metrics = (await client.get("/metrics")).text
    # One slice of four ran; the other three were dropped (before: one call of all 8 pairs).
    assert [len(call) for call in scorer.calls] == [2]
    start = next(m for m in sent if m["type"] == "http.response.start")
    assert start["status"] == 499  # what the access log and metrics record
    assert 'reason="deadline"' not in metrics  # a client that left is no deadline passed


async def test_a_client_gone_before_its_body_ended_is_a_499_not_a_422(reranker: Any) -> None:
    app = create_app(ServerConfig(), rerankers={"minilm": reranker})
    parts = [
        {"type": "http.request", "body": b'{"query": "q", "docu', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return parts.pop(0) if parts else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = _rerank_scope()
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app(scope, receive, send), WAIT_S)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            metrics = (await client.get("/metrics")).text
    assert sent == []  # nobody to answer
    assert 'status="499"' in metrics and 'status="422"' not in metrics


def _rerank_scope() -> dict[str, Any]:
    """An ASGI scope for POST /v1/rerank, for tests that play the client message by message."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/rerank",
        "raw_path": b"/v1/rerank",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), (b"host", b"t")],
        "client": ("127.0.0.1", 1),
        "server": ("t", 80),
    }


async def test_a_client_gone_before_the_deadline_passed_is_no_deadline_rejection() -> None:
    """Work still waiting (behind a long model call) when the deadline passed was a 504 and a
    deadline rejection in the metrics, though its client had left before: now a 499."""
    from concurrent.futures import ThreadPoolExecutor

    from semrank._request import REQUEST_GONE
    from semrank.server._engines import run_in_thread

    held, gone = threading.Event(), threading.Event()  # held: a long model call
    token = REQUEST_GONE.set(gone)
    threads = ThreadPoolExecutor(2)
    try:
        gone.set()  # the client left; the deadline passes while the work is still held
        with pytest.raises(ClientDisconnectedError):
            await run_in_thread(threads, time.monotonic() + 0.05, held.wait, "late")
        gone.clear()  # a client still there: the deadline it is
        with pytest.raises(DeadlineExceededError, match=r"^late$"):
            await run_in_thread(threads, time.monotonic() + 0.05, held.wait, "late")
    finally:
        held.set()  # the threads end before the executor is shut down
        threads.shutdown()
        REQUEST_GONE.reset(token)


async def test_a_deadline_the_work_itself_saw_pass_answers_the_routes_text_with_its_fix() -> None:
    """The thread's own check (its next model call or search) often saw the deadline first:
    the 504 then carried that check's text, which names no fix."""
    from concurrent.futures import ThreadPoolExecutor

    from semrank.server._engines import run_in_thread

    def work() -> None:
        raise DeadlineExceededError("the request deadline passed while it waited for the model")

    with ThreadPoolExecutor(1) as threads:
        for deadline in (time.monotonic() + 30, None):
            with pytest.raises(DeadlineExceededError, match=r"^raise timeout_ms$"):
                await run_in_thread(threads, deadline, work, "raise timeout_ms")
