"""Dynamic batching of pair scoring across concurrent requests.

Each request runs the ordinary ``Reranker.rerank`` in a worker thread. The Reranker's scorer is a
``BatchingScorer``: its ``score_pairs`` hands the pairs to the model's ``PairBatcher`` on the event
loop and blocks until they are scored. The batcher collects the pairs that arrive within a few
milliseconds (and everything that queued up while the model was busy), up to a pair and token
budget, and calls the real scorer in its own model thread. A request bigger than one call's
budget is scored in slices, taking turns with the requests queued behind it, so one large request
cannot hold the model while small ones time out; and the slices of a request that is over (past
its deadline, client gone) are dropped. So the re-ranking logic is the library's, unchanged, and
only the model calls are merged or split (a pair's score does not depend on its batch).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from semrank import _tracing
from semrank._request import REQUEST_DEADLINE, REQUEST_GONE
from semrank.errors import (
    BackendUnavailableError,
    ClientDisconnectedError,
    DeadlineExceededError,
    OverloadedError,
)
from semrank.runtime.base import query_token_limit
from semrank.server._cache import ScoreCache, pair_keys
from semrank.server._metrics import Metrics

Pair = tuple[str, str]
ScoreFn = Callable[[Sequence[Pair]], np.ndarray]

CHARS_PER_TOKEN = 4  # rough estimate used for the batch token budget only
MAX_THREAD_WAIT_S = 600.0
SHUTTING_DOWN = "the server is shutting down; retry on another instance"


@dataclass(frozen=True, kw_only=True)
class BatcherLimits:
    wait_s: float = 0.002
    max_pairs: int = 512
    token_budget: int = 16_384


@dataclass(kw_only=True, eq=False)
class _Job:
    """One ``score`` call, scored in one or more slices ``pairs[start:end]``."""

    pairs: list[Pair]
    ends: list[int]  # ends[i]: estimated tokens of pairs[:i] (len(pairs) + 1 entries)
    deadline: float | None
    gone: threading.Event | None
    future: asyncio.Future[np.ndarray] = field(repr=False)
    scores: np.ndarray = field(repr=False)
    start: int = 0  # the first pair not scored yet
    turn: int = -1  # the model call that last took a slice of this job
    wait: _tracing.QueueWait | None = None  # its queue-wait span, where the request is traced

    def expired(self, now: float) -> bool:
        return self.deadline is not None and now >= self.deadline

    def abandoned(self) -> bool:
        return self.future.done() or (self.gone is not None and self.gone.is_set())

    def left(self) -> tuple[int, int]:
        """Pairs and estimated tokens not scored yet."""
        return len(self.pairs) - self.start, self.ends[-1] - self.ends[self.start]

    def cut(self, pairs: int, tokens: int) -> int:
        """End of the longest slice from ``start`` within ``pairs`` pairs and ``tokens`` tokens."""
        by_tokens = bisect.bisect_right(self.ends, self.ends[self.start] + tokens) - 1
        return min(len(self.pairs), self.start + pairs, by_tokens)


def _abandoned() -> ClientDisconnectedError:
    # Nobody reads this answer (the request is over); it only ends the request's worker thread.
    return ClientDisconnectedError(
        "the request ended (deadline passed, client disconnected or server shutting down) before "
        "it was scored; its remaining model work was dropped"
    )


class PairBatcher:
    """Merges ``score`` calls that arrive close together into one call of ``score_fn``, and
    splits a call bigger than the limits into slices that take turns with the other calls."""

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
        self._task: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._accepting = False
        self._closed = False
        self._jobs: list[_Job] = []  # arrival order; a job stays here until fully scored
        self._turn = 0  # model calls collected so far
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()

    @property
    def running(self) -> bool:
        return self._accepting

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"semrank-model-{self.model}")
        self._accepting = True
        # Made here, not in __init__: an asyncio.Event belongs to the loop that first waits on it.
        self._wakeup, self._idle = asyncio.Event(), asyncio.Event()
        self._idle.set()
        self._task = asyncio.create_task(self._run(), name=f"semrank-batcher-{self.model}")

    async def close(self, timeout_s: float | None = None) -> None:
        """Stop taking work and give what is queued up to ``timeout_s`` seconds (None: no limit)
        to finish. Jobs still waiting then fail with BackendUnavailableError (503). A model call
        in progress cannot be interrupted: it ends on its own thread, which is not waited for
        (it is one bounded slice)."""
        self._accepting = False
        self._closed = True
        if self._task is not None and not self._task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout_s)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for job in list(self._jobs):
            self._finish(job, BackendUnavailableError(f"{SHUTTING_DOWN} (the request was queued)"))
        self._set_depth()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def score(
        self,
        pairs: Sequence[Pair],
        deadline: float | None = None,
        gone: threading.Event | None = None,
    ) -> np.ndarray:
        """Raw scores of ``pairs`` in input order, computed in one or more model calls."""
        if not self._accepting or self._loop is None:
            raise OverloadedError(SHUTTING_DOWN)
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        tokens = (self._estimate_tokens(pair) for pair in pairs)
        job = _Job(
            pairs=list(pairs),
            ends=[0, *itertools.accumulate(tokens)],
            deadline=deadline,
            gone=gone,
            future=self._loop.create_future(),
            scores=np.zeros(len(pairs), dtype=np.float32),
            wait=_tracing.queued(self.model, len(pairs), len(self._jobs)),
        )
        self._jobs.append(job)
        self._idle.clear()
        self._wakeup.set()
        self._set_depth()
        return await job.future

    def score_blocking(
        self,
        pairs: Sequence[Pair],
        deadline: float | None = None,
        gone: threading.Event | None = None,
    ) -> np.ndarray:
        """``score`` for a worker thread; scores directly when no event loop can take the job."""
        if gone is not None and gone.is_set():
            raise _abandoned()
        if self._closed:  # a thread left over at shutdown must not start model work of its own
            raise OverloadedError(SHUTTING_DOWN)
        loop = self._loop
        usable = self._accepting and loop is not None and not loop.is_closed()
        if not usable or threading.get_ident() == self._loop_thread:
            return self._score_fn(list(pairs))
        assert loop is not None
        future = asyncio.run_coroutine_threadsafe(self.score(pairs, deadline, gone), loop)
        # The batcher always answers (deadlines are enforced between model calls); the timeout
        # only stops a thread from waiting forever on an event loop torn down underneath it.
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
        if self._metrics is not None:
            self._metrics.queue_depth.labels(self.model).set(len(self._jobs))

    async def _run(self) -> None:
        while True:
            if not self._jobs:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                if len(self._jobs) == 1 and self._limits.wait_s > 0:
                    await asyncio.sleep(self._limits.wait_s)  # let concurrent requests join
            taken: list[tuple[_Job, int, int]] = []
            try:
                taken = self._collect()
                if taken:
                    await self._flush(taken)
            except Exception as exc:
                # The batcher must outlive any one call: fail this call's jobs rather than leave
                # every later request waiting on a batcher that died.
                for job in {job for job, _, _ in taken if job in self._jobs}:
                    self._finish(job, exc)
            self._set_depth()

    def _collect(self) -> list[tuple[_Job, int, int]]:
        """The next model call, as (job, start, end) slices. Jobs that fit in one call go whole
        (or wait for the next call); a bigger job gives slices that fill the budget. Jobs that
        had a slice in the previous call go last, so a big job takes turns with the jobs queued
        behind it instead of holding the model until it is done."""
        self._drop_finished()
        self._turn += 1
        max_pairs, budget = self._limits.max_pairs, self._limits.token_budget
        taken: list[tuple[_Job, int, int]] = []
        pairs = tokens = 0
        # Least recently served first (new jobs have turn -1; the sort is stable, so arrival
        # order breaks ties): two big jobs cannot take every call between them.
        for job in sorted(self._jobs, key=lambda job: job.turn):
            left_pairs, left_tokens = job.left()
            if job.start == 0 and left_pairs <= max_pairs and left_tokens <= budget:
                if pairs + left_pairs > max_pairs or tokens + left_tokens > budget:
                    continue  # it fits in a call of its own: whole in a later one, not split
                end = len(job.pairs)
            else:  # a big job (or the rest of one already split): a slice that fills the call
                # A lone pair over the token budget may already fill the call past it.
                end = job.cut(max(0, max_pairs - pairs), max(0, budget - tokens))
                if end == job.start and not taken:
                    end += 1  # one pair over the token budget still runs, alone
                if end == job.start:
                    continue
            taken.append((job, job.start, end))
            job.turn = self._turn
            pairs += end - job.start
            tokens += job.ends[end] - job.ends[job.start]
        return taken

    async def _flush(self, taken: list[tuple[_Job, int, int]]) -> None:
        pairs = [pair for job, start, end in taken for pair in job.pairs[start:end]]
        assert self._loop is not None
        started = time.perf_counter()
        waits = [job.wait for job, _, _ in taken]
        try:
            with _tracing.model_call(
                self._score_fn, waits, model=self.model, pairs=len(pairs)
            ) as score_fn:
                scores = await self._loop.run_in_executor(self._executor, score_fn, pairs)
            if len(scores) != len(pairs):
                raise RuntimeError(f"the model returned {len(scores)} scores for {len(pairs)}")
        except Exception as exc:  # the model failed: every request in the call gets the error
            for job, _, _ in taken:
                self._finish(job, exc)
            return
        self._observe(len(taken), len(pairs), time.perf_counter() - started)
        offset = 0
        for job, start, end in taken:
            job.scores[start:end] = np.asarray(scores[offset : offset + end - start])
            offset += end - start
            job.start = end
            if end == len(job.pairs):
                self._finish(job)

    def _finish(self, job: _Job, error: BaseException | None = None) -> None:
        """Take ``job`` off the queue and answer its caller (unless the caller gave up)."""
        self._jobs.remove(job)
        if job.wait is not None and error is not None:
            job.wait.dropped(error)
        if job.future.done():
            return
        if error is None:
            job.future.set_result(job.scores)
        else:
            job.future.set_exception(error)

    def _drop_finished(self) -> None:
        """Skip jobs whose request is over and fail those past their deadline (saves the model);
        checked before every model call, so this also stops a big job between its slices."""
        now = time.monotonic()
        for job in list(self._jobs):
            if job.abandoned():
                self._finish(job, _abandoned())
            elif job.expired(now):
                self._finish(
                    job,
                    DeadlineExceededError(
                        "the request deadline passed while it waited for the model"
                    ),
                )

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
        cache_scope: Hashable | None = None,
    ) -> None:
        self.inner = inner
        self.model = model  # its name in metrics
        self.cache = cache
        # Whose scores these are in the shared cache (default: the name).
        self.cache_scope = model if cache_scope is None else cache_scope
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

    def query_token_limit(self, doc_tokens: int | None = None) -> int | None:
        return query_token_limit(self.inner, doc_tokens=doc_tokens)

    def __getattr__(self, name: str) -> Any:
        # Anything else a backend offers (embed, backend name...) comes from the real scorer.
        return getattr(self.inner, name)

    def score_pairs(self, pairs: Sequence[Pair]) -> np.ndarray:
        pairs = list(pairs)
        with _tracing.span("score", model=self.model, pairs=len(pairs)) as traced:
            return self._score_pairs(pairs, traced)

    def _score_pairs(self, pairs: list[Pair], traced: Any) -> np.ndarray:
        keys = pair_keys(self.cache_scope, pairs)
        cached = self.cache.get_many(keys)
        missing = [i for i, value in enumerate(cached) if value is None]
        _tracing.set_attributes(traced, cache_hits=len(pairs) - len(missing))
        out = np.array([0.0 if value is None else value for value in cached], dtype=np.float32)
        if self._metrics is not None and self.cache.enabled:
            self._metrics.cache_hits.labels(self.model).inc(len(pairs) - len(missing))
            self._metrics.cache_misses.labels(self.model).inc(len(missing))
        if missing:
            todo = [pairs[i] for i in missing]
            scores = self.batcher.score_blocking(todo, REQUEST_DEADLINE.get(), REQUEST_GONE.get())
            out[missing] = scores
            self.cache.put_many([keys[i] for i in missing], scores.tolist())
        return out
