"""The HTTP edge, as plain ASGI middleware: request ids, the body size limit, timing headers,
request metrics and the access log; and the route class that reads JSON bodies strictly."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from semrank._checks import unique_keys
from semrank._tracing import Tracing, request_finished
from semrank.errors import (
    BodyTimeoutError,
    InternalError,
    RequestTooLargeError,
    missing_extra,
)
from semrank.server._errors import route_path, send_error
from semrank.server._logging import ACCESS_LOGGER_NAME, LOGGER_NAME, REQUEST_ID, log_fields
from semrank.server._metrics import Metrics

access_logger = logging.getLogger(ACCESS_LOGGER_NAME)
error_logger = logging.getLogger(LOGGER_NAME)
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
MAX_REQUEST_ID = 128
TIMINGS_KEY = "timings"  # request.state.timings: {"rerank": seconds, ...} for Server-Timing
CLIENT_CLOSED_REQUEST = 499  # nginx's code for a client that left before the answer
DISCARD_FACTOR = 4  # a body over the limit is read (and dropped) up to 4x the limit, then cut
DISCARD_SECONDS = 10.0  # ... and for at most this long
CLIENT_GONE = b"\0client-gone"  # _read_body's answer for a body cut short by a disconnect
# A body arrives whole within this, plus its size at MIN_BODY_RATE: one dripped a byte at a time
# held its connection for good, before any key check, and a thousand such connections stopped
# the server accepting others.
BODY_SECONDS = 60.0
MIN_BODY_RATE = 64 * 1024  # bytes per second: 80 s more for the default 5 MB limit


def _body_timeout(seconds: float) -> BodyTimeoutError:
    return BodyTimeoutError(
        f"the request body did not arrive within {seconds:.3g} s; send it whole and at once "
        "(behind a slow link, let a proxy in front of the server buffer the upload)"
    )


def _declares_body(headers: Headers) -> bool:
    """Whether a request of a method that takes no body (GET, DELETE) sends one all the same."""
    length = headers.get("content-length", "")
    return (length.isdigit() and int(length) > 0) or "transfer-encoding" in headers


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        metrics: Metrics,
        routes: Sequence[Any] = (),
        tracing: Tracing | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.tracing = tracing  # None: no spans, and opentelemetry never imported
        # (path regex, template) of the app's routes: the label of a request this edge answers
        # itself (a 413 body, a 499), before routing has run.
        self.templates = [(route.path_regex, route.path) for route in routes]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.tracing is None:
            await self._serve(scope, receive, send, None)
            return
        # Outside the body read: a slow upload or a 413 is part of the request's span too.
        with self.tracing.request(scope["method"], Headers(scope=scope)) as server_span:
            await self._serve(scope, receive, send, server_span)

    async def _serve(self, scope: Scope, receive: Receive, send: Send, server_span: Any) -> None:
        started = time.perf_counter()
        headers = Headers(scope=scope)
        request_id = _request_id(headers.get("x-request-id"))
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        logged_as = REQUEST_ID.set(request_id)  # for every line logged while it is served
        status = {"code": 500}

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                status["started"] = 1
                _add_headers(message, request_id, started, state.get(TIMINGS_KEY, {}))
            await send(message)

        try:
            if scope["method"] in BODY_METHODS or _declares_body(headers):
                seconds = self._body_seconds(headers)
                try:
                    body = await asyncio.wait_for(self._read_body(headers, receive), seconds)
                except TimeoutError:
                    status["code"] = 408
                    await send_error(send_with_headers, _body_timeout(seconds), close=True)
                    return
                if body is CLIENT_GONE:
                    status["code"] = CLIENT_CLOSED_REQUEST  # no one to answer, nothing to parse
                    return
                if body is None:
                    if not self._waits_to_send(headers):
                        await self._discard_body(receive)
                    await self._too_large(scope, request_id, send_with_headers)
                    return
                receive = _replay(body, receive)
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            if "started" in status:
                raise  # an answer is under way: nothing else can be sent
            await self._internal_error(scope, exc, request_id, send_with_headers)
        finally:
            self._record(scope, status["code"], started, request_id, server_span)
            REQUEST_ID.reset(logged_as)

    def _body_seconds(self, headers: Headers) -> float:
        """How long a body may take to arrive: a fixed allowance and its size (declared, else
        the limit) at the slowest rate taken."""
        declared = headers.get("content-length", "")
        size = (
            min(int(declared), self.max_body_bytes) if declared.isdigit() else self.max_body_bytes
        )
        return BODY_SECONDS + size / MIN_BODY_RATE

    async def _read_body(self, headers: Headers, receive: Receive) -> bytes | None:
        """The whole body, None once it passes the limit (a declared length is checked first),
        or CLIENT_GONE when the client disconnected before sending all of it."""
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_body_bytes:
            return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return CLIENT_GONE  # a partial body would be answered as invalid JSON (422)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    def _waits_to_send(self, headers: Headers) -> bool:
        """A client that sent ``Expect: 100-continue`` and was refused on its declared length
        before anything was read: it sends nothing unless asked (reading would ask it to
        upload what is refused). Once a read has asked it (a chunked body), it is drained."""
        declared = headers.get("content-length", "")
        over = declared.isdigit() and int(declared) > self.max_body_bytes
        return over and headers.get("expect", "").lower() == "100-continue"

    async def _discard_body(self, receive: Receive) -> None:
        """Read what is left of a body over the limit (up to DISCARD_FACTOR x the limit, for at
        most DISCARD_SECONDS: a client sending slowly does not hold the answer) before the 413:
        clients that read the answer only once they have sent everything (httpx's async client,
        http.client) saw a reset connection, "cannot reach the server", where the server had
        answered 413. Past that the connection is just closed."""

        async def drain() -> None:
            left = DISCARD_FACTOR * self.max_body_bytes
            while left > 0:
                message = await receive()
                if message["type"] == "http.disconnect" or not message.get("more_body", False):
                    return
                left -= len(message.get("body", b""))

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(drain(), DISCARD_SECONDS)

    @staticmethod
    async def _internal_error(scope: Scope, exc: Exception, request_id: str, send: Send) -> None:
        """A bug answered here, inside the edge, so the 500 carries the request id and timing
        headers like every answer, and its traceback is logged once, with the request id
        (outside, Starlette answered without them and uvicorn logged it a second time)."""
        fields = {"request_id": request_id, "method": scope["method"], "path": scope["path"]}
        missing = missing_extra(exc) if isinstance(exc, ModuleNotFoundError) else None
        if missing is not None:  # e.g. index routes of a server installed without [search]
            error_logger.warning(str(missing), extra=log_fields(**fields, status=503))
            await send_error(send, missing)
            return
        error_logger.error("unhandled error", exc_info=exc, extra=log_fields(**fields))
        error = InternalError(
            f"internal server error; the server log has it under request id {request_id}"
        )
        await send_error(send, error)

    async def _too_large(self, scope: Scope, request_id: str, send: Send) -> None:
        error = RequestTooLargeError(
            f"request body is larger than this server's limit of {self.max_body_bytes} bytes; "
            "send fewer documents per request (or raise --max-body-bytes)"
        )
        # The one line per refused request that the routes' refusals log too.
        fields = {"request_id": request_id, "method": scope["method"], "path": scope["path"]}
        fields |= {"status": 413, "error": str(error)}
        error_logger.info("request rejected", extra=log_fields(**fields))
        await send_error(send, error, close=True)

    def _record(
        self, scope: Scope, status: int, started: float, request_id: str, server_span: Any = None
    ) -> None:
        elapsed = time.perf_counter() - started
        route = _route_label(scope, self.templates)
        if server_span is not None:
            label = None if route == "unmatched" else route
            finished = {"method": scope["method"], "route": label, "request_id": request_id}
            request_finished(server_span, status=status, **finished)
        self.metrics.requests.labels(route, str(status)).inc()
        self.metrics.latency.labels(route).observe(elapsed)
        fields = {
            "request_id": request_id,
            "method": scope["method"],
            "path": scope["path"],
            "route": route,
            "status": status,
            "duration_ms": round(elapsed * 1000, 2),
        }
        access_logger.info("request", extra=log_fields(**fields))


def _request_id(offered: str | None) -> str:
    """The caller's x-request-id when it is a sane token (it ends up in logs), else a new one."""
    if offered and len(offered) <= MAX_REQUEST_ID and offered.isascii() and offered.isprintable():
        return offered
    return uuid.uuid4().hex


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect as usual

    return replay


def _add_headers(
    message: Message, request_id: str, started: float, timings: dict[str, float]
) -> None:
    total_ms = (time.perf_counter() - started) * 1000
    parts = [f"{name};dur={seconds * 1000:.2f}" for name, seconds in timings.items()]
    parts.append(f"total;dur={total_ms:.2f}")
    headers = MutableHeaders(scope=message)
    headers["x-request-id"] = request_id
    headers["x-semrank-time-ms"] = f"{total_ms:.2f}"
    headers["server-timing"] = ", ".join(parts)


def _route_label(scope: Scope, templates: Sequence[tuple[Any, str]] = ()) -> str:
    # The route template (``/v1/indexes/{name}/search``), never the raw path: bounded label values.
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    if path:
        return str(path)
    # Routing has not run (the edge answered): labelled "unmatched", dashboards missed it.
    found = (template for regex, template in templates if regex.match(route_path(scope)))
    return next(found, "unmatched")


class UniqueKeysRoute(APIRoute):
    """A route whose JSON body is read as semrank reads JSON files: an object naming a key
    twice is refused (FastAPI's reader keeps the last value and drops the others silently).
    The refusal reaches the validation handler as invalid JSON, the key named."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_strictly(request: Request) -> Response:
            return await handle(_UniqueKeysRequest(request.scope, request.receive))

        return handle_strictly


class _UniqueKeysRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), object_pairs_hook=unique_keys)
        return self._json
