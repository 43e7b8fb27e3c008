"""OpenTelemetry tracing of the server and the re-ranking stages, optional (``semrank[otel]``).

Library code marks its stages with ``span(name, **attributes)``. That is a no-op, with
opentelemetry never imported, unless the request being served runs under a tracer: the server
sets one (``ACTIVE_TRACER``) for each request when started with ``--otlp-endpoint`` (or
``$SEMRANK_OTLP_ENDPOINT`` / ``$OTEL_EXPORTER_OTLP_ENDPOINT``). The library used directly, and a
server without the flag, trace nothing and pay one context-variable read per stage.

Attributes are counts, sizes and names (model, backend, index, route), never a query's or a
document's text: traces leave the machine, to whoever runs the collector.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from semrank.errors import BackendUnavailableError

T = TypeVar("T")
# The tracer of the request this thread or task serves (None: trace nothing). Threads that
# serve a request inherit it with the request's context (server._engines.run_in_thread).
ACTIVE_TRACER: contextvars.ContextVar[Any] = contextvars.ContextVar("semrank_tracer", default=None)
_NO_SPAN: contextlib.nullcontext[None] = contextlib.nullcontext()
INSTRUMENTATION = "semrank"
TRACES_PATH = "/v1/traces"  # OTLP/HTTP's path under a collector's base URL
MISSING_EXTRA = (
    "tracing (--otlp-endpoint, $SEMRANK_OTLP_ENDPOINT or $OTEL_EXPORTER_OTLP_ENDPOINT) needs "
    "OpenTelemetry: pip install 'semrank[otel]' (it is not installed: {module}), or unset "
    "the endpoint"
)

Attribute = str | int | float | bool


def span(name: str, **attributes: Attribute | None) -> contextlib.AbstractContextManager[Any]:
    """A span named ``semrank.<name>`` around a stage, child of the current one; the span
    (or None when nothing is traced). Attributes given as None are left out."""
    tracer = ACTIVE_TRACER.get()
    if tracer is None:
        return _NO_SPAN
    return tracer.start_as_current_span(f"semrank.{name}", attributes=_named(attributes))


def set_attributes(target: Any, **attributes: Attribute | None) -> None:
    """Add attributes to ``target``, a span ``span`` gave (None: nothing is traced)."""
    if target is not None:
        target.set_attributes(_named(attributes))


def _named(attributes: Mapping[str, Attribute | None]) -> dict[str, Attribute]:
    """``pairs=3`` as ``semrank.pairs``; a name with a dot is kept (``http.route``)."""
    return {
        (key if "." in key else f"semrank.{key}"): value
        for key, value in attributes.items()
        if value is not None
    }


@dataclass(frozen=True, kw_only=True)
class TracingConfig:
    """Where spans go: an OTLP/HTTP collector's base URL (``/v1/traces`` is added) and the
    ``service.name`` the spans carry."""

    endpoint: str
    service_name: str = "semrank"

    @property
    def traces_url(self) -> str:
        base = self.endpoint.strip().rstrip("/")
        return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


def require_otel() -> None:
    """Refuse to start with tracing asked for but the extra not installed."""
    try:
        import opentelemetry.exporter.otlp.proto.http.trace_exporter
        import opentelemetry.sdk.trace  # noqa: F401
    except ImportError as exc:
        module = getattr(exc, "name", None) or "opentelemetry"
        raise BackendUnavailableError(MISSING_EXTRA.format(module=module)) from None


class Tracing:
    """One app's tracer and the provider that exports its spans."""

    def __init__(self, provider: Any) -> None:
        from semrank import __version__

        self.provider = provider
        self.tracer = provider.get_tracer(INSTRUMENTATION, __version__)

    @classmethod
    def exporting(cls, config: TracingConfig) -> Tracing:
        """Spans batched and sent to ``config``'s collector over OTLP/HTTP (a background
        thread; a collector that is down costs dropped spans, never a request)."""
        require_otel()
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # Resource.create also reads $OTEL_RESOURCE_ATTRIBUTES; the sampler follows
        # $OTEL_TRACES_SAMPLER (default: every trace, or as the caller's traceparent says).
        resource = Resource.create({SERVICE_NAME: config.service_name})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(config.traces_url)))
        return cls(provider)

    def shutdown(self) -> None:
        """Send the spans still buffered (bounded by the exporter's own timeout)."""
        self.provider.shutdown()

    @contextlib.contextmanager
    def request(self, method: str, headers: Mapping[str, str]) -> Iterator[Any]:
        """The server span of one HTTP request, current (and this tracer active) inside; it
        joins the caller's trace when the request carries a W3C ``traceparent``. Where a host
        program's instrumentation already opened a span for it (FastAPI's own telemetry under
        a global TracerProvider, an ASGI middleware around the app), it is a child of that."""
        from opentelemetry import propagate, trace
        from opentelemetry.trace import SpanKind

        enclosing = trace.get_current_span().get_span_context().is_valid
        # $OTEL_PROPAGATORS; by default W3C trace context (and baggage).
        parent = None if enclosing else propagate.extract(headers)
        kind = SpanKind.INTERNAL if enclosing else SpanKind.SERVER
        token = ACTIVE_TRACER.set(self.tracer)
        try:
            with self.tracer.start_as_current_span(
                method, context=parent, kind=kind, attributes={"http.request.method": method}
            ) as server_span:
                yield server_span
        finally:
            ACTIVE_TRACER.reset(token)


def request_finished(
    server_span: Any, *, method: str, route: str | None, status: int, request_id: str
) -> None:
    """Name the server span by its route template (``POST /v1/rerank``, never the raw path)
    and record the answer; a 5xx marks it failed (a 4xx is the client's, not the server's)."""
    from opentelemetry.trace import Status, StatusCode

    if route:
        server_span.update_name(f"{method} {route}")
        server_span.set_attribute("http.route", route)
    server_span.set_attribute("http.response.status_code", status)
    server_span.set_attribute("semrank.request_id", request_id)
    if status >= 500:
        server_span.set_status(Status(StatusCode.ERROR))


@dataclass(kw_only=True, eq=False)
class QueueWait:
    """A request's wait in the batcher's queue: its span, open until a model call takes it,
    and the span it was queued under (the request's current one)."""

    tracer: Any
    parent: Any  # opentelemetry Context
    span: Any

    def rode(self, call: Any, requests: int, pairs: int) -> None:
        """The wait is over: ``call``, the model call's span, took (part of) it."""
        if not self.span.is_recording():
            return
        self.span.add_link(call.get_span_context())
        self.span.set_attributes({"semrank.batch.requests": requests, "semrank.batch.pairs": pairs})
        self.span.end()

    def dropped(self, error: BaseException) -> None:
        """The request left the queue unscored (its deadline passed, its client left, the
        server stopped, the model failed): the wait ends, marked failed."""
        if self.span.is_recording():
            from opentelemetry.trace import Status, StatusCode

            self.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            self.span.end()


def queued(model: str, pairs: int, waiting: int) -> QueueWait | None:
    """Start the queue-wait span of ``pairs`` pairs sent to ``model``'s batcher behind
    ``waiting`` others (None when nothing is traced)."""
    tracer = ACTIVE_TRACER.get()
    if tracer is None:
        return None
    from opentelemetry import context

    attributes = {"semrank.model": model, "semrank.pairs": pairs, "semrank.queue.ahead": waiting}
    wait = tracer.start_span("semrank.queue", attributes=attributes)
    return QueueWait(tracer=tracer, parent=context.get_current(), span=wait)


@contextlib.contextmanager
def model_call(
    score: Callable[[T], Any], waits: Sequence[QueueWait | None], *, model: str, pairs: int
) -> Iterator[Callable[[T], Any]]:
    """One merged model call: ``score`` as the call should run it. Traced (any request it
    serves is), it runs under a ``semrank.batch`` span, so the tokenize and model-run spans
    inside are its children. The span is a child of the first sampled request's (the one
    trace that shows the call's parts) and links every request it serves; each of those
    ends its queue-wait span with a link back to it and the batch's size."""
    traced = [wait for wait in waits if wait is not None]
    if not traced:
        yield score
        return
    from opentelemetry import trace

    sampled = [wait for wait in traced if wait.span.get_span_context().trace_flags.sampled]
    first = (sampled or traced)[0]
    links = [trace.Link(wait.span.get_span_context()) for wait in traced]
    attributes = {"semrank.model": model, "semrank.batch.requests": len(waits)}
    attributes["semrank.batch.pairs"] = pairs
    call = first.tracer.start_span(
        "semrank.batch", context=first.parent, links=links, attributes=attributes
    )
    for wait in traced:
        wait.rode(call, len(waits), pairs)
    runs = contextvars.copy_context()  # the model thread runs it in the call's context
    runs.run(ACTIVE_TRACER.set, first.tracer)
    runs.run(_set_current, trace.set_span_in_context(call, first.parent))
    with trace.use_span(
        call, end_on_exit=True, record_exception=True, set_status_on_exception=True
    ):
        yield lambda batch: runs.run(score, batch)


def _set_current(otel_context: Any) -> None:
    from opentelemetry import context

    context.attach(otel_context)  # in a copied context, dropped with it: never detached
