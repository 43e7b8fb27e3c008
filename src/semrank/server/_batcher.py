"""Dynamic batching of pair scoring across concurrent requests.

Each request runs the ordinary ``Reranker.rerank`` in a worker thread. The Reranker's scorer is a
``BatchingScorer``: its ``score_pairs`` hands the pairs to the model's ``PairBatcher`` on the event
loop and blocks until they are scored. The batcher collects the pairs that arrive within a few
milliseconds (and everything that queued up while the model was busy), up to a pair and token
budget, and calls the real scorer once, in its own model thread. So the re-ranking logic is the
library's, unchanged, and only the model calls are merged.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from semrank.errors import DeadlineExceededError, OverloadedError
from semrank.server._cache import ScoreCache, pair_key
from semrank.server._metrics import Metrics

Pair = tuple[str, str]
ScoreFn = Callable[[Sequence[Pair]], np.ndarray]

# The deadline (time.monotonic seconds) of the request a worker thread is serving. Set by the
# engine before it starts the thread; read by BatchingScorer.score_pairs inside that thread.
REQUEST_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "semrank_request_deadline", default=None
)
CHARS_PER_TOKEN = 4  # rough estimate used for the batch token budget only
MAX_THREAD_WAIT_S = 600.0


@dataclass(frozen=True, kw_only=True)
class BatcherLimits:
    wait_s: float = 0.002
    max_pairs: int = 512
    token_budget: int = 65_536


@dataclass(kw_only=True)
class _Job:
    pairs: list[Pair]
    tokens: int
    deadline: float | None
    future: asyncio.Future[np.ndarray] = field(repr=False)

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline


class PairBatcher:
    """Merges ``score`` calls that arrive close together into one call of ``score_fn``."""

    def __init__(
        self,
        score_fn: ScoreFn,
        *,
        model: str,
        max_length: int,
        limits: BatcherLimits,
        metrics: Metrics | None = None,
    ) -> None:
        self.model = model
        self._score_fn = score_fn
        self._max_length = max_length
        self._limits = limits
        self._metrics = metrics
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._accepting = False
        self._carry: _Job | None = None

    @property
    def running(self) -> bool:
        return self._accepting

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"semrank-model-{self.model}")
        self._accepting = True
        self._task = asyncio.create_task(self._run(), name=f"semrank-batcher-{self.model}")

    async def close(self) -> None:
        """Stop taking work, finish what is queued, release the model thread."""
        self._accepting = False
        if self._queue is not None:
            await self._queue.join()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def score(self, pairs: Sequence[Pair], deadline: float | None = None) -> np.ndarray:
        """Raw scores of ``pairs`` in input order, computed in some merged model call."""
        if not self._accepting or self._queue is None or self._loop is None:
            raise OverloadedError("the server is shutting down; retry on another instance")
        job = _Job(
            pairs=list(pairs),
            tokens=sum(self._estimate_tokens(pair) for pair in pairs),
            deadline=deadline,
            future=self._loop.create_future(),
        )
        self._queue.put_nowait(job)
        self._set_depth()
        return await job.future

    def score_blocking(self, pairs: Sequence[Pair], deadline: float | None = None) -> np.ndarray:
        """``score`` for a worker thread; scores directly when no event loop can take the job."""
        loop = self._loop
        usable = self._accepting and loop is not None and not loop.is_closed()
        if not usable or threading.get_ident() == self._loop_thread:
            return self._score_fn(list(pairs))
        assert loop is not None
        future = asyncio.run_coroutine_threadsafe(self.score(pairs, deadline), loop)
        # The batcher always answers (deadlines are enforced at flush); the timeout only stops a
        # thread from waiting forever on an event loop that was torn down underneath it.
        wait = MAX_THREAD_WAIT_S if deadline is None else max(0.0, deadline - time.monotonic()) + 5
        try:
            return future.result(timeout=wait)
        except TimeoutError as exc:
            future.cancel()
            raise DeadlineExceededError("no answer from the model batcher in time") from exc

    def _estimate_tokens(self, pair: Pair) -> int:
        estimate = (len(pair[0]) + len(pair[1])) // CHARS_PER_TOKEN + 3
        return min(self._max_length, estimate)

    def _set_depth(self) -> None:
        if self._metrics is not None and self._queue is not None:
            self._metrics.queue_depth.labels(self.model).set(self._queue.qsize())

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            first = self._carry or await self._queue.get()
            self._carry = None
            if self._queue.empty() and self._limits.wait_s > 0:
                await asyncio.sleep(self._limits.wait_s)  # let concurrent requests join
            batch = self._collect(first)
            try:
                await self._flush(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()
                self._set_depth()

    def _collect(self, first: _Job) -> list[_Job]:
        """``first`` plus queued jobs while the pair and token budgets allow."""
        assert self._queue is not None
        batch, pairs, tokens = [first], len(first.pairs), first.tokens
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if (
                pairs + len(job.pairs) > self._limits.max_pairs
                or tokens + job.tokens > self._limits.token_budget
            ):
                self._carry = job  # first of the next batch
                break
            batch.append(job)
            pairs, tokens = pairs + len(job.pairs), tokens + job.tokens
        return batch

    async def _flush(self, batch: list[_Job]) -> None:
        live = self._drop_finished(batch)
        if not live:
            return
        pairs = [pair for job in live for pair in job.pairs]
        assert self._loop is not None
        started = time.perf_counter()
        try:
            scores = await self._loop.run_in_executor(self._executor, self._score_fn, pairs)
        except Exception as exc:  # the model failed: every request in the batch gets the error
            for job in live:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        self._observe(len(live), len(pairs), time.perf_counter() - started)
        offset = 0
        for job in live:
            part = np.asarray(scores[offset : offset + len(job.pairs)], dtype=np.float32)
            offset += len(job.pairs)
            if not job.future.done():
                job.future.set_result(part)

    def _drop_finished(self, batch: list[_Job]) -> list[_Job]:
        """Skip jobs whose caller gave up and fail those past their deadline (saves the model)."""
        now = time.monotonic()
        live = []
        for job in batch:
            if job.future.done():
                continue
            if job.expired(now):
                job.future.set_exception(
                    DeadlineExceededError(
                        "the request deadline passed while it waited for the model"
                    )
                )
                continue
            live.append(job)
        return live

    def _observe(self, requests: int, pairs: int, seconds: float) -> None:
        if self._metrics is None:
            return
        self._metrics.batch_requests.labels(self.model).observe(requests)
        self._metrics.batch_pairs.labels(self.model).observe(pairs)
        self._metrics.model_latency.labels(self.model).observe(seconds)


class BatchingScorer:
    """A ``PairScorer`` that answers from the cache and sends the rest through the batcher."""

    def __init__(
        self,
        inner: Any,
        *,
        model: str,
        cache: ScoreCache,
        limits: BatcherLimits,
        metrics: Metrics | None = None,
    ) -> None:
        self.inner = inner
        self.model = model
        self.cache = cache
        self._metrics = metrics
        self.batcher = PairBatcher(
            inner.score_pairs,
            model=model,
            max_length=int(inner.max_length),
            limits=limits,
            metrics=metrics,
        )

    # The PairScorer protocol: everything but score_pairs is the real scorer's.
    @property
    def kind(self) -> Any:
        return self.inner.kind

    @property
    def activation(self) -> Any:
        return self.inner.activation

    @property
    def max_length(self) -> int:
        return int(self.inner.max_length)

    @property
    def tokenizer(self) -> Any:
        return self.inner.tokenizer

    def doc_token_budget(self, query: str) -> int:
        return int(self.inner.doc_token_budget(query))

    def __getattr__(self, name: str) -> Any:
        # Anything else a backend offers (embed, backend name...) comes from the real scorer.
        return getattr(self.inner, name)

    def score_pairs(self, pairs: Sequence[Pair]) -> np.ndarray:
        pairs = list(pairs)
        keys = [pair_key(self.model, query, doc) for query, doc in pairs]
        cached = self.cache.get_many(keys)
        missing = [i for i, value in enumerate(cached) if value is None]
        out = np.array([0.0 if value is None else value for value in cached], dtype=np.float32)
        if self._metrics is not None and self.cache.enabled:
            self._metrics.cache_hits.labels(self.model).inc(len(pairs) - len(missing))
            self._metrics.cache_misses.labels(self.model).inc(len(missing))
        if missing:
            todo = [pairs[i] for i in missing]
            scores = self.batcher.score_blocking(todo, REQUEST_DEADLINE.get())
            out[missing] = scores
            self.cache.put_many([keys[i] for i in missing], scores.tolist())
        return out
