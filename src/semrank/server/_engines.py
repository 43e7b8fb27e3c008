"""The served models: one Reranker per model, its scorer wrapped for cross-request batching."""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from semrank._request import REQUEST_DEADLINE, REQUEST_GONE
from semrank._tracing import span
from semrank.errors import (
    BackendUnavailableError,
    ClientDisconnectedError,
    DeadlineExceededError,
    ModelNotFoundError,
    OverloadedError,
)
from semrank.server._batcher import BatcherLimits, BatchingScorer, PairBatcher
from semrank.server._cache import ScoreCache
from semrank.server._metrics import Metrics
from semrank.server.config import ServerConfig

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class RerankCall:
    """Arguments of one ``Reranker.rerank`` call (top_n and min_score are applied afterwards)."""

    query: str
    documents: Sequence[Any]
    rank_fields: Sequence[str] | None = None
    max_tokens_per_doc: int | None = None
    return_documents: bool = True
    chunking: Any = None  # ChunkingConfig | bool | None
    raw_scores: bool = False


class ModelEngine:
    """One model: its Reranker (for the scoring logic) and its batcher (for the model calls)."""

    def __init__(
        self,
        name: str,
        reranker: Any,
        scorer: BatchingScorer,
        threads: ThreadPoolExecutor,
        pruner: BatchingScorer | None = None,
    ):
        self.name = name
        self.reranker = reranker
        self.scorer = scorer
        self.threads = threads
        self.pruner = pruner  # a cascade's first stage, batched (and dropped) like the model

    @property
    def batchers(self) -> list[PairBatcher]:
        return [s.batcher for s in (self.scorer, self.pruner) if s is not None]

    @property
    def kind(self) -> str:
        return str(self.scorer.kind)

    @property
    def max_length(self) -> int:
        return self.scorer.max_length

    def count_tokens(self, text: str) -> int:
        return int(self.scorer.tokenizer.count_tokens(text))

    async def rerank(self, call: RerankCall, deadline: float | None) -> tuple[list[Any], Any]:
        """``Reranker.rerank`` in a request thread (all results, best first) and how the query
        was read (``Reranker.query_reading``), within ``deadline``. The query's tokens are
        counted in the same thread: in asyncio's default pool, shared with no deadline, they
        held answers scored in time for seconds behind other requests' work."""

        def work() -> tuple[list[Any], Any]:
            with span("rerank", model=self.name, documents=len(call.documents)):
                results = self.reranker.rerank(
                    call.query,
                    call.documents,
                    rank_fields=call.rank_fields,
                    max_tokens_per_doc=call.max_tokens_per_doc,
                    return_documents=call.return_documents,
                    chunking=call.chunking,
                    raw_scores=call.raw_scores,
                )
                return results, self.reranker.query_reading(call.query, results)

        late = (
            "re-ranking did not finish within the request deadline; raise timeout_ms, send "
            "fewer documents, or set fail_open to get the input order back instead"
        )
        return await run_in_thread(self.threads, deadline, work, late)

    async def count_tokens_until(
        self, texts: Sequence[str], limit: int, deadline: float | None
    ) -> int:
        """The tokens of ``texts``, counted until they pass ``limit`` (then a number above it),
        in a request thread under ``deadline`` that stops once the client has gone."""

        def work() -> int:
            gone, total = REQUEST_GONE.get(), 0
            for text in texts:
                if gone is not None and gone.is_set():
                    raise ClientDisconnectedError("the client went away while tokens were counted")
                if deadline is not None and time.monotonic() > deadline:
                    break  # run_in_thread answers the deadline
                total += self.count_tokens(text)
                if total > limit:
                    break
            return total

        late = (
            "counting the request's tokens did not finish within the request deadline; raise "
            "timeout_ms, send fewer or shorter documents, or set fail_open to get the input "
            "order back instead"
        )
        return await run_in_thread(self.threads, deadline, work, late)


async def run_in_thread(
    threads: ThreadPoolExecutor, deadline: float | None, work: Callable[[], T], late: str
) -> T:
    """``work()`` in a request thread that sees ``deadline`` (the batcher enforces it too);
    ``DeadlineExceededError(late)`` once it passes, whether the wait here or the work's own check
    (its next model call or search, reached first) saw it pass: one text, with its fix. The
    thread itself cannot be stopped: it ends at its next model call or search, which fails for
    being past the deadline or for its request being over (REQUEST_GONE, which it sees too).
    A client that left before that is ``ClientDisconnectedError`` (a 499), not a deadline."""
    context = contextvars.copy_context()
    context.run(REQUEST_DEADLINE.set, deadline)
    future = asyncio.get_running_loop().run_in_executor(threads, context.run, work)
    try:
        if deadline is None:
            return await future
        return await asyncio.wait_for(future, max(0.0, deadline - time.monotonic()))
    except (TimeoutError, DeadlineExceededError) as exc:
        gone = REQUEST_GONE.get()
        # A client that left while its work waited behind a long model call would otherwise
        # count as a deadline rejection whenever the deadline passed before that call ended.
        if gone is not None and gone.is_set():
            raise ClientDisconnectedError("the client went away before the work finished") from exc
        raise DeadlineExceededError(late) from exc


def load_rerankers(config: ServerConfig) -> dict[str, Any]:
    """A Reranker per configured model (the default model when none is), by serving name.
    Names of the same model (``--model rerank-v3.5=M --model rerank-english-v3.0=M``, a folder
    given as ./M and /abs/M) share one Reranker: each held its own copy of the weights (150 MB
    for the default, 1 GB for a bge-reranker) for the same scores. It is thread-safe, and each
    name still gets its own batcher, cache scope and metrics (``ModelRegistry.add``)."""
    from semrank.models import resolve
    from semrank.rerank import CascadeConfig, Reranker  # heavy (ONNX Runtime): serving only

    cascade = CascadeConfig(keep=config.cascade_keep) if config.cascade_keep else None
    loaded: dict[str, Any] = {}
    by_model: dict[Any, Any] = {}  # the same files read the same way: one Reranker
    for entry in config.models or (None,):
        model = resolve(entry.source if entry is not None else None)
        same = dataclasses.replace(model, name="", path=model.path.resolve())
        if same not in by_model:
            by_model[same] = Reranker(
                model,
                backend=config.backend,
                device=config.device,
                cascade=cascade,
                feedback=config.feedback,
                threads=config.inference_threads(),
            )
        reranker = by_model[same]
        loaded[entry.name if entry is not None else reranker.name] = reranker
    return loaded


# An app mounted in another (app.mount) never runs its own lifespan, so it loaded no model and
# answered every request "still loading; retry shortly", for good. One handed ready-made
# rerankers scored them unbatched, with no drain at shutdown, while /ready said "starting" for
# good (a readiness probe never let traffic in): it is refused the same way.
MOUNTED_WITHOUT_STARTUP = (
    "the semrank app's startup (which loads its models) has not run: an app mounted in another "
    "(app.mount) does not run its own; run it from the host app's lifespan with "
    "`async with reranking.router.lifespan_context(reranking): yield` (see docs/server.md)"
)


class ModelRegistry:
    """Loads the configured models at startup and finds them by the request's ``model``."""

    def __init__(self, config: ServerConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.engines: dict[str, ModelEngine] = {}
        self.default_name: str | None = None
        # Threads for the blocking parts of requests: re-ranking logic, and apart from it the
        # index routes' (store, pipeline), whose searches wait while an index is built again
        # after a write (minutes for a large HNSW graph): sharing one pool, they took every
        # thread and /v1/rerank calls of two documents timed out behind them.
        self.threads = ThreadPoolExecutor(
            config.request_threads, thread_name_prefix="semrank-request"
        )
        self.index_threads = ThreadPoolExecutor(
            config.request_threads, thread_name_prefix="semrank-index"
        )
        self.cache = ScoreCache(config.cache_size)
        self.startup_ran = False  # the app's lifespan began (see MOUNTED_WITHOUT_STARTUP)

    @property
    def ready(self) -> bool:
        batchers = [b for e in self.engines.values() for b in e.batchers]
        return bool(self.engines) and all(b.running for b in batchers)

    def load(self) -> None:
        """Load every configured model (blocking; call from a thread). The first is the default."""
        for name, reranker in load_rerankers(self.config).items():
            self.add(name, reranker)

    def add(self, name: str, reranker: Any) -> ModelEngine:
        """Serve ``reranker`` as ``name``: its scorer gets the batching, caching proxy."""
        limits = BatcherLimits(
            wait_s=self.config.batch_wait_ms / 1000.0,
            max_pairs=self.config.batch_max_pairs,
            token_budget=self.config.batch_token_budget,
        )
        scorer = BatchingScorer(
            reranker.scorer,
            model=name,
            cache=self.cache,
            limits=limits,
            metrics=self.metrics,
            cache_scope=(name, "model"),
        )
        # A cascade's pruner goes through a batcher of its own: merged across requests, on one
        # model thread, and its work for a request that is over dropped, as the model's is.
        # Its scores are cached apart from the model's, and from those of a model served as
        # "<name>:pruner" (its metrics name): that model was answered the pruner's scores.
        pruner = None
        if reranker.pruner is not None:
            pruner = BatchingScorer(
                reranker.pruner,
                model=f"{name}:pruner",
                cache=self.cache,
                limits=limits,
                metrics=self.metrics,
                cache_scope=(name, "pruner"),
            )
        # A new Reranker around the proxies: the caller's keeps its own scorers.
        served = type(reranker)(
            reranker.model or name,
            scorer=scorer,
            chunking=reranker.chunking,
            cascade=reranker.cascade,
            pruner=pruner,
            feedback=reranker.feedback is not None,
        )
        served.served_name = name  # what an index search's warnings call it, as /v1/rerank's do
        engine = ModelEngine(name, served, scorer, self.threads, pruner)
        self.engines[name] = engine
        self.default_name = self.default_name or name
        return engine

    async def start(self) -> None:
        for engine in self.engines.values():
            for batcher in engine.batchers:
                await batcher.start()

    async def close(self, timeout_s: float | None = None) -> None:
        """Close every batcher, together, within ``timeout_s`` (None: when their work is done)."""
        batchers = [b for e in self.engines.values() for b in e.batchers]
        await asyncio.gather(*(batcher.close(timeout_s) for batcher in batchers))
        # Request threads still running end at their next model call, which the closed batchers
        # refuse; they are not waited for here.
        self.threads.shutdown(wait=False, cancel_futures=True)
        self.index_threads.shutdown(wait=False, cancel_futures=True)

    def get(self, name: str | None) -> ModelEngine:
        if not self.startup_ran:
            raise BackendUnavailableError(MOUNTED_WITHOUT_STARTUP)
        if not self.engines:
            raise OverloadedError("models are still loading; retry shortly (see GET /ready)")
        if name is None or name == "":
            assert self.default_name is not None
            return self.engines[self.default_name]
        engine = self.engines.get(name)
        if engine is None:
            served = ", ".join(sorted(self.engines))
            raise ModelNotFoundError(
                f"model {name!r} is not served here; choose one of: {served} (GET /v1/models), "
                f"or serve a model under that name: --model {name}=SOURCE "
                "(e.g. =semrank-minilm-l6; vendors' clients send their own model names)"
            )
        return engine
