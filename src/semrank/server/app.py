"""The FastAPI application: ``create_app(config)``.

Startup loads the models (in a thread) and starts one batcher per model. Under uvicorn
(``semrank serve``) the listening socket opens only after that, so while models load clients get
"connection refused" (``/health`` too), never ``/ready``'s 503 "starting". On SIGTERM or SIGINT
uvicorn closes the socket at once (new connections are refused, so ``/ready``'s 503 "draining"
is not seen either), waits up to ``--shutdown-timeout`` for the requests in flight (their
answers say ``Connection: close``: ``HeaderDeadlineProtocol.shutdown``) and cancels those still
running (they get a 503). Only then does the app's shutdown run: the batchers drop
the queued work of requests that are over, get at most ``--shutdown-timeout`` again for the rest
(normally nothing is left) and fail it. A model call in progress cannot be interrupted: the
process exits once it ends (one slice, bounded by ``--batch-token-budget``). ``/ready``'s 503
answers matter only where a host serves the app while its lifespan starts or stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from fastapi import FastAPI
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from semrank import __version__
from semrank._request import REQUEST_GONE
from semrank._tracing import Tracing, TracingConfig
from semrank.errors import BackendUnavailableError, SemrankError
from semrank.server._edge import CLIENT_CLOSED_REQUEST, EdgeMiddleware
from semrank.server._engines import ModelRegistry
from semrank.server._errors import install_error_handlers, route_path, send_error
from semrank.server._es_byquery import router as elasticsearch_by_query_router
from semrank.server._es_cat import router as elasticsearch_cat_router
from semrank.server._es_docs import router as elasticsearch_documents_router
from semrank.server._es_msearch import router as elasticsearch_msearch_router
from semrank.server._es_probes import router as elasticsearch_probes_router
from semrank.server._es_routes import ElasticsearchAnswers, IndexProbeRoute
from semrank.server._es_routes import router as elasticsearch_router
from semrank.server._es_scroll import router as elasticsearch_scroll_router
from semrank.server._es_unserved import router as elasticsearch_unserved_router
from semrank.server._index_routes import router as index_router
from semrank.server._logging import LOGGER_NAME, configure_logging, log_fields
from semrank.server._metrics import MULTIPROC_ENV, Metrics
from semrank.server._rerank_routes import router as rerank_router
from semrank.server._search_contexts import SearchContexts
from semrank.server._service import RerankService
from semrank.server._system_routes import models_router, probes
from semrank.server.config import ENV_CONFIG_JSON, ServerConfig, from_environment

logger: logging.Logger = logging.getLogger(LOGGER_NAME)

DESCRIPTION = """Self-hosted re-ranking with Cohere-, Jina-, Voyage-, Together- and
TEI-compatible endpoints, plus semrank's batch and search APIs. Errors are
`{"error": "...", "error_type": "...", "message": "...", "detail": "..."}` (one text, under each
key vendors' clients read)."""
# After the body, a server only sends http.disconnect; bound the loop in case one sends more.
MAX_MESSAGES_AFTER_BODY = 8


def create_app(
    config: ServerConfig | None = None,
    *,
    rerankers: Mapping[str, Any] | None = None,
    every_worker: bool | None = None,
    tracer_provider: Any = None,
) -> FastAPI:
    """The app for ``config``; ``rerankers`` serves ready-made Reranker objects instead of
    loading ``config.models`` (tests, embedding the server in another program).
    ``every_worker``: ``/metrics`` sums the values every worker process writes under
    ``$PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode, for gunicorn's
    ``-w N``); by default only under ``semrank serve --workers N``, which sets that up.
    ``tracer_provider``: an OpenTelemetry TracerProvider the spans go to (a host program's own)
    instead of the OTLP exporter ``config.otlp_endpoint`` sets up (docs/server.md, Tracing)."""
    config = config or ServerConfig()
    tracing = _tracing_of(config, tracer_provider)
    if every_worker is None:
        every_worker = config.workers > 1
    # Only where the folder is set: prometheus_client writes values there only then.
    metrics = Metrics(every_worker=every_worker and bool(os.environ.get(MULTIPROC_ENV)))
    registry = ModelRegistry(config, metrics)
    for name, reranker in (rerankers or {}).items():
        registry.add(name, reranker)

    app = FastAPI(
        title="semrank",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan(config, registry, metrics, tracing if tracer_provider is None else None),
        redirect_slashes=False,  # TrailingSlashServed serves those paths instead
    )
    app.state.config = config
    app.state.metrics = metrics
    app.state.registry = registry
    app.state.service = RerankService(config, registry, metrics)
    app.state.phase = "starting"
    app.state.private_names = _private_names(config)  # shown to clients as <index home>
    app.state.search_contexts = SearchContexts(
        max_open=config.max_search_contexts, max_hits=config.max_search_context_hits
    )
    install_error_handlers(
        app, retry_after_s=config.retry_after_s, private_names=app.state.private_names
    )
    # Inside EdgeMiddleware (added last, so outermost): the edge reads the body first and
    # records the status this one sets.
    app.add_middleware(RequestLifetime)
    routers = (
        probes,
        models_router,
        rerank_router,
        index_router,
        elasticsearch_router,
        elasticsearch_documents_router,
        elasticsearch_scroll_router,
        elasticsearch_by_query_router,
        elasticsearch_msearch_router,
        elasticsearch_probes_router,
        elasticsearch_cat_router,
        elasticsearch_unserved_router,  # last: the APIs served under its prefixes first
    )
    # The routes as declared (FastAPI's own app.routes nests included routers from 0.13x on).
    app.state.declared_routes = [route for router in routers for route in router.routes]
    app.add_middleware(HeadAsGet, routes=app.state.declared_routes)
    # FastAPI's own pages: labelled by their path in the metrics ("unmatched" put their 200s
    # with the 404s of unknown paths); GET /{index} is not theirs (IndexProbeRoute).
    own_pages = _page_routes(app)
    app.state.page_paths = frozenset(route.path for route in own_pages)
    app.add_middleware(
        EdgeMiddleware,
        max_body_bytes=config.max_body_bytes,
        metrics=metrics,
        tracing=tracing,
        # Not HEAD /{index}'s template, which every one-segment path (/docs) would match.
        routes=[
            *(r for r in app.state.declared_routes if not isinstance(r, IndexProbeRoute)),
            *own_pages,
        ],
    )
    # Outside the edge: its own refusals (a body over the limit) are reshaped too.
    app.add_middleware(ElasticsearchAnswers)
    # The edge's metrics see the route. Only the rerank routes are served from a doubled
    # slash: collapsed elsewhere, DELETE /v1/indexes//documents would name the index "documents".
    rerank_paths = frozenset(getattr(route, "path", "") for route in rerank_router.routes)
    app.add_middleware(TrailingSlashServed, rerank_paths=rerank_paths)
    app.add_middleware(ClosedWhileDraining, state=app.state)  # outermost: every answer
    for router in routers:
        app.include_router(router)
    _probes_before_pages(app)
    return app


def _probes_before_pages(app: FastAPI) -> None:
    """FastAPI's own pages after semrank's routes, which FastAPI routes first: a HEAD of
    ``/docs`` is elasticsearch-py's ``es.indices.exists(index="docs")`` (``HEAD /{index}``), and
    the Swagger page answered it 200 whether the index was there or not. A GET of a page finds
    no route of semrank's (the probe takes HEAD, PUT and DELETE), so it is the page still."""
    own = _page_routes(app)
    others = [route for route in app.router.routes if route not in own]
    app.router.routes[:] = [*others, *own]


def _page_routes(app: FastAPI) -> list[Any]:
    """FastAPI's own pages: the schema, Swagger UI, ReDoc."""
    pages = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    return [route for route in app.router.routes if getattr(route, "path", None) in pages]


class ClosedWhileDraining:
    """Every answer sent while the server drains says ``Connection: close`` (uvicorn then
    closes the connection after it): without it a keep-alive client or load balancer sent its
    next request on a connection about to close, and saw it fail instead of going elsewhere."""

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            # Read at the answer, not the request: a drain may begin while a request runs.
            if message["type"] == "http.response.start" and self.state.phase == "draining":
                headers = [h for h in message.get("headers", []) if h[0].lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)


class TrailingSlashServed:
    """A path ending in a slash is served as the path without it (no route ends in one).
    Starlette answered such a request with a redirect, which clients that follow none for a
    POST (httpx, so Cohere's SDK given a base URL ending in a slash) reported as an error, and
    whose Location was built from the request's Host header (so pointed where a client said).

    A rerank route written with doubled slashes is served too: clients that add "/rerank" to a
    base URL ending in a slash (Voyage's, LlamaIndex's JinaRerank) post to /v1//rerank."""

    def __init__(self, app: ASGIApp, *, rerank_paths: frozenset[str] = frozenset()) -> None:
        self.app = app
        self.rerank_paths = rerank_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = self._without_trailing_slashes(_encoded_slashes_kept(scope))
            scope = self._doubled_slashes_merged(scope)
        await self.app(scope, receive, send)

    def _doubled_slashes_merged(self, scope: Scope) -> Scope:
        path, raw = scope.get("path", ""), scope.get("raw_path")
        routed = route_path(scope)  # a mounted app's routes follow its mount's prefix
        merged = _DOUBLED_SLASHES.sub("/", routed)
        if merged == routed or merged not in self.rerank_paths:
            return scope
        served = {**scope, "path": path[: len(path) - len(routed)] + merged}
        if isinstance(raw, bytes):
            served["raw_path"] = re.sub(rb"/{2,}", b"/", raw)
        return served

    @staticmethod
    def _without_trailing_slashes(scope: Scope) -> Scope:
        """Only slashes the client wrote as such: an encoded one (``victim%2F``) is part of a
        name, and stripping it after decoding made DELETE /v1/indexes/victim%2F drop "victim"."""
        path, raw = scope.get("path", ""), scope.get("raw_path")
        written = raw if isinstance(raw, bytes) else path.encode()
        count = len(written) - len(written.rstrip(b"/"))
        routed = route_path(scope)  # a mounted app's "/" is its mount's prefix and a slash
        if count == 0 or len(routed) <= 1:
            return scope
        count = min(count, len(routed) - 1)  # "/" itself stays
        stripped = {**scope, "path": path[:-count]}
        if isinstance(raw, bytes):
            stripped["raw_path"] = raw[:-count]
        return stripped


_ENCODED_SLASH = re.compile(r"(%2[fF]|%5[cC])")
_DOUBLED_SLASHES = re.compile(r"/{2,}")


def _encoded_slashes_kept(scope: Scope) -> Scope:
    """An encoded slash or backslash stays part of the path segment it was written in: decoded
    first, /v1/indexes/movies%2Fsearch was routed as the search route, past a proxy that filters
    on paths as written (it is now the index name "movies%2Fsearch", refused as a name)."""
    raw = scope.get("raw_path")
    if not isinstance(raw, bytes) or b"%" not in raw:
        return scope
    written = raw.decode("latin-1")
    if not _ENCODED_SLASH.search(written):
        return scope
    pieces = _ENCODED_SLASH.split(written)
    path = "".join(p if i % 2 else unquote(p) for i, p in enumerate(pieces))
    return {**scope, "path": path}


class HeadAsGet:
    """HEAD answered wherever GET is, as the GET's status and headers without its body: HTTP
    servers must (RFC 9110 9.1), uptime monitors probe so, and FastAPI's routes answer only the
    methods they name (a 405 otherwise)."""

    def __init__(self, app: ASGIApp, routes: list[Any]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD" or not self._has_get(scope):
            await self.app(scope, receive, send)
            return

        async def without_body(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, without_body)

    def _has_get(self, scope: Scope) -> bool:
        as_get = {**scope, "method": "GET"}
        # HEAD /{index} is a route of its own (whether an index exists), not GET /{index}'s.
        return any(
            "GET" in (getattr(route, "methods", None) or ())
            and not isinstance(route, IndexProbeRoute)
            and route.matches(as_get)[0] == Match.FULL
            for route in self.routes
        )


class RequestLifetime:
    """Tells the model batcher when a request is over, so the model work its threads still
    queue is dropped rather than computed for nobody.

    The request runs with its own ``REQUEST_GONE`` event, set when the client disconnects
    (``http.disconnect`` after the body, watched while the request runs) and when the handler
    ends in any way (answered, 504 while its thread still works, cancelled at shutdown). A
    request whose client left is recorded as 499. One cancelled before it answered (uvicorn
    does that at the end of ``--shutdown-timeout``) answers a 503 JSON error and ends there."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        gone = threading.Event()
        started = False
        watcher: asyncio.Task[None] | None = None

        async def receive_watched() -> Message:
            nonlocal watcher
            if watcher is not None:  # the body was read: the watcher owns receive() now
                await asyncio.shield(watcher)  # a cancelled caller must not cancel the watch
                if gone.is_set():
                    return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.disconnect":
                gone.set()
            elif not message.get("more_body", False):
                watcher = asyncio.create_task(_watch_disconnect(receive, gone))
            return message

        async def send_status(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if gone.is_set():
                    message = {**message, "status": CLIENT_CLOSED_REQUEST}
            await send(message)

        token = REQUEST_GONE.set(gone)
        try:
            await self.app(scope, receive_watched, send_status)
        except asyncio.CancelledError:
            if started:  # a response under way cannot be finished: let the server close it
                raise
            # uvicorn cancels what runs past --shutdown-timeout. Answered with a 503, the request
            # is over: returning (not re-raising) keeps uvicorn from logging it as a crash.
            await _send_cancelled(send_status, scope)  # and logs it
        finally:
            gone.set()
            REQUEST_GONE.reset(token)
            if watcher is not None:
                watcher.cancel()


async def _watch_disconnect(receive: Receive, gone: threading.Event) -> None:
    for _ in range(MAX_MESSAGES_AFTER_BODY):
        if (await receive())["type"] == "http.disconnect":
            gone.set()
            return


async def _send_cancelled(send: Send, scope: Scope) -> None:
    """A 503 JSON body for a request cancelled before it answered, instead of uvicorn's plain
    500 (uvicorn still logs the cancellation)."""
    error = BackendUnavailableError(
        "the server is shutting down and stopped this request before it finished "
        "(--shutdown-timeout); retry on another instance"
    )
    config = getattr(getattr(scope.get("app"), "state", None), "config", None)
    with contextlib.suppress(Exception):  # the connection may be gone already
        await send_error(send, error, retry_after_s=getattr(config, "retry_after_s", None))
    request_id = scope.get("state", {}).get("request_id")
    logger.warning(
        "request cancelled at shutdown", extra=log_fields(request_id=request_id, status=503)
    )


def app_from_environment() -> FastAPI:
    """The app factory each ``--workers`` process imports (config from the parent's env), and
    the one an ASGI server started by other means calls (gunicorn, ``uvicorn --factory``).

    There, with no config handed over, it reads ``SEMRANK_API_KEYS`` and ``SEMRANK_STORE`` as
    ``semrank serve`` does (it read neither: a server given keys answered every client without
    one), and ``/metrics`` sums every worker's values when ``$PROMETHEUS_MULTIPROC_DIR`` is set
    (it showed the one worker a scrape reached, and a recycled worker's counts were lost)."""
    text = os.environ.get(ENV_CONFIG_JSON)
    if text:
        return _app_of(ServerConfig.from_json(text))
    config = from_environment()
    app = _app_of(config, every_worker=True)
    from semrank.server._run import log_auth

    log_auth(config, os.environ)
    return app


def _app_of(config: ServerConfig, *, every_worker: bool | None = None) -> FastAPI:
    configure_logging(config.log_level, json_lines=config.log_json)
    _thread_lock_for_progress_bars()
    return create_app(config, every_worker=every_worker)


def _thread_lock_for_progress_bars() -> None:
    """tqdm's default lock holds a multiprocessing one, a named semaphore (bm25s makes a bar,
    shown or not, for every search's tokenizing): a worker stopped by the supervisor left it
    behind, and Python's resource tracker warned of a leak, in plain text, at every shutdown.
    A worker's bars need only a thread lock."""
    try:
        from tqdm import tqdm
    except ImportError:  # the runtime-only install has none
        return
    tqdm.set_lock(threading.RLock())


# + pid: a file each worker of `--workers N` leaves once ready, or once its start failed
WORKER_STARTED, WORKER_FAILED = "started-", "failed-"


def _say_worker(outcome: str) -> None:
    """Tell the parent of ``--workers N`` how this worker's start went: uvicorn's parent exits
    0 when every worker failed to start, so the parent reads these files. Only to that parent:
    a folder set for gunicorn got one more file at every worker it recycled."""
    shared = os.environ.get(MULTIPROC_ENV)
    if shared and os.environ.get(ENV_CONFIG_JSON):
        (Path(shared) / f"{outcome}{os.getpid()}").touch()


def _tracing_of(config: ServerConfig, provider: Any) -> Tracing | None:
    """The app's tracing: spans to ``provider``, else exported to ``config.otlp_endpoint``."""
    if provider is not None:
        return Tracing(provider)
    if config.otlp_endpoint is None:
        return None
    return Tracing.exporting(
        TracingConfig(endpoint=config.otlp_endpoint, service_name=config.otlp_service_name)
    )


def _lifespan(
    config: ServerConfig, registry: ModelRegistry, metrics: Metrics, tracing: Tracing | None
) -> Any:
    """Load and start the models (and hold the index store's pool) before serving; drain and
    let go of them at shutdown (and send the spans still buffered, where the app exports)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        registry.startup_ran = True
        try:
            if not registry.engines:
                await asyncio.to_thread(registry.load)
            await registry.start()
            release_store_pool = await asyncio.to_thread(_hold_store_pool, config)
        except Exception:  # not a stop during startup (CancelledError): that is no failure
            _say_worker(WORKER_FAILED)
            raise
        app.state.phase = "ready"
        _log_ready(config, registry)
        _say_worker(WORKER_STARTED)
        sweeper = asyncio.create_task(sweep_dropped_indexes())
        try:
            yield
        finally:
            sweeper.cancel()
            app.state.phase = "draining"
            await registry.close(config.shutdown_timeout_s)
            if release_store_pool is not None:
                release_store_pool()
            metrics.worker_stopped()
            if tracing is not None:
                await asyncio.to_thread(tracing.shutdown)
            logger.info("stopped")

    return lifespan


def _log_ready(config: ServerConfig, registry: ModelRegistry) -> None:
    """A line per served model (what it was loaded from, its backend, its inference threads),
    then "ready" with where the indexes live: the log named only the served names, so an
    operator could not tell which backend the automatic choice took, how many threads a CPU
    quota or ``--workers`` left each model, or which folder the index routes served."""
    threads = _inference_threads(config)
    each = "one per core, the runtime's default" if threads is None else f"{threads}"
    for name, engine in registry.engines.items():
        model = getattr(engine.reranker, "model", None)
        source = getattr(model, "name", None) or name
        backend = getattr(engine.scorer, "backend", None)
        logger.info(
            f"serving model {name!r}: {source} ({engine.kind}, backend {backend}, "
            f"inference threads: {each})",
            extra=log_fields(
                model=name, source=source, kind=engine.kind, backend=backend, threads=threads
            ),
        )
    logger.info("ready", extra=log_fields(models=sorted(registry.engines), **_store_fields(config)))


def _inference_threads(config: ServerConfig) -> int | None:
    """The threads each model was given (``Reranker(threads=...)``): None leaves it to the
    runtime, which starts one per core."""
    from semrank.runtime._select import default_threads

    threads = config.inference_threads()
    return threads if threads is not None else default_threads()


def _store_fields(config: ServerConfig) -> dict[str, object]:
    if config.postgres_dsn is not None:
        from semrank.store.postgres import redact

        return {"store": "postgresql", "database": redact(config.postgres_dsn)}
    from semrank.store import resolve_home

    return {"store": "embedded", "index_home": str(resolve_home(config.index_home))}


# How often a running server looks for held indexes that another process dropped.
DROPPED_SWEEP_S = 10.0


async def sweep_dropped_indexes(every_s: float = DROPPED_SWEEP_S) -> None:
    """Let go of held indexes another process dropped (the CLI, another worker), for as long as
    the server runs: index requests look for them too, but a server that only re-ranks, or sits
    idle, kept their deleted files open (disk space, descriptors) until one came."""
    from semrank.pipeline import let_go_of_dropped_indexes

    while True:
        await asyncio.sleep(every_s)
        try:
            await asyncio.to_thread(let_go_of_dropped_indexes)
        except Exception as exc:  # a sweep that failed must not end the sweeping
            logger.warning(f"looking for dropped indexes failed: {exc}")


def _hold_store_pool(config: ServerConfig) -> Callable[[], None] | None:
    """Keep the PostgreSQL store's connection pool open while the server runs (returns what
    lets go of it): otherwise every index list, create or drop made a pool and two connections
    and closed them again. A database down at start is logged; requests then answer 503."""
    dsn = config.postgres_dsn
    if dsn is None:
        return None
    from semrank.store.postgres import acquire_pool, release_pool

    try:
        acquire_pool(dsn)
    except SemrankError as exc:
        logger.warning(f"the index store is not reachable yet: {exc}")
        return None
    return lambda: release_pool(dsn)


def _private_names(config: ServerConfig) -> tuple[tuple[str, str], ...]:
    """What answers show in place of the server's index folder or database: (text, shown),
    longest first."""
    from semrank.store import resolve_home

    if config.postgres_dsn is not None:
        from semrank.store.postgres import redact

        dsns = {config.postgres_dsn, redact(config.postgres_dsn)}
        return tuple((dsn, "<index store>") for dsn in sorted(dsns, key=len, reverse=True))
    home = resolve_home(config.index_home)
    # Absolute forms only: a relative "idx" would also match inside index names.
    paths = {str(p) for p in (home.absolute(), home.resolve()) if str(p) != "/"}
    return tuple((path, "<index home>") for path in sorted(paths, key=len, reverse=True))
