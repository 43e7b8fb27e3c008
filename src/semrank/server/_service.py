"""What every rerank endpoint does, whatever its wire format.

Admission (bounded queue, 429), request limits (413), the deadline and ``fail_open``, top_n and
min_score selection, and token usage. Scoring itself is ``Reranker.rerank`` (see ``_engines``).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from semrank.errors import (
    DeadlineExceededError,
    InvalidInputError,
    OverloadedError,
    RequestTooLargeError,
)
from semrank.server._engines import ModelEngine, ModelRegistry, RerankCall
from semrank.server._metrics import Metrics
from semrank.server.config import ServerConfig

DOCUMENTS_PER_SEARCH_UNIT = 100  # Cohere's billing unit: one query over up to 100 documents


@dataclass(frozen=True, kw_only=True)
class RerankOutcome:
    results: list[Any]  # semrank.RerankResult, best first, after top_n / min_score
    reranked: bool
    input_tokens: int
    search_units: int
    model: str
    warnings: tuple[str, ...] = ()  # what the client should know of how it was read


@dataclass(frozen=True, kw_only=True)
class Policy:
    """Per-request selection and deadline behaviour."""

    top_n: int | None = None
    min_score: float | None = None
    timeout_ms: int | None = None
    fail_open: bool | None = None
    require_complete: bool = False  # over-long inputs are an error instead of truncated
    # The route's names, for the 413 of an over-long input: its documents, its truncation flag,
    # and the fields that read more of a document (TEI's request has no max_tokens_per_doc).
    documents_field: str = "documents"
    truncation_field: str = "truncation"
    chunking_fields: str = "enable chunking (or raise max_tokens_per_doc if set)"
    longer_read_fields: str = (
        "raise max_tokens_per_doc (read in as many windows as it takes) or chunking.max_chunks "
        "(max_chunks_per_doc), whichever this request set; a max_chunks it set bounds the "
        "windows whatever max_tokens_per_doc says"
    )
    # How the request could let an input be cut; default: its truncation flag set true.
    allow_cut: str = ""

    @property
    def allow_cut_fix(self) -> str:
        return self.allow_cut or f"set {self.truncation_field}: true"


class Admission:
    """The bounded queue: at most ``limit`` requests admitted at once (one event loop, no lock)."""

    def __init__(self, limit: int, retry_after_s: int, metrics: Metrics) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.pending = 0
        self._metrics = metrics

    @contextlib.contextmanager
    def admit(self, weight: int = 1) -> Iterator[None]:
        if self.pending + weight > self.limit:
            self._metrics.rejected.labels("overloaded").inc()
            raise OverloadedError(
                f"the server is at its limit of {self.limit} pending requests; retry after "
                f"{self.retry_after_s}s (the operator can raise --max-pending)"
            )
        self.pending += weight
        self._metrics.in_flight.inc(weight)
        try:
            yield
        finally:
            self.pending -= weight
            self._metrics.in_flight.dec(weight)


class RerankService:
    def __init__(self, config: ServerConfig, registry: ModelRegistry, metrics: Metrics) -> None:
        self.config = config
        self.registry = registry
        self.metrics = metrics
        self.admission = Admission(config.max_pending_requests, config.retry_after_s, metrics)

    def engine(self, model: str | None) -> ModelEngine:
        return self.registry.get(model)

    def deadline(self, timeout_ms: int | None) -> float | None:
        if timeout_ms is not None:
            return time.monotonic() + timeout_ms / 1000.0
        if self.config.request_timeout_s <= 0:
            return None
        return time.monotonic() + self.config.request_timeout_s

    async def check_limits(
        self,
        engine: ModelEngine,
        calls: Sequence[RerankCall],
        deadline: float | None,
        documents_field: str = "documents",
    ) -> None:
        """413 for too many documents or tokens, before any model work (the count within the
        request's deadline, stopped once past the limit or when the client goes away)."""
        documents = sum(len(call.documents) for call in calls)
        if documents > self.config.max_documents:
            raise RequestTooLargeError(
                f"{documents} documents exceed this server's limit of {self.config.max_documents} "
                "per request; split the request (or raise --max-documents)"
            )
        texts = _checked_texts(calls, documents_field)
        # Small ASCII requests skip the exact count: an ASCII character is at most one token (plus
        # one leading SentencePiece "▁" per text). Other characters can be several (byte-level
        # BPE splits an emoji into four), so such requests are always counted.
        bound = sum(len(text) + 1 for text in texts)
        if bound <= self.config.max_request_tokens and all(text.isascii() for text in texts):
            return
        limit = self.config.max_request_tokens
        tokens = await engine.count_tokens_until(texts, limit, deadline)
        if tokens > limit:
            raise RequestTooLargeError(
                f"the request holds more than {limit} tokens (at least {tokens}), this "
                "server's limit; send fewer or shorter documents (or raise --max-request-tokens)"
            )

    async def rerank(
        self, engine: ModelEngine, call: RerankCall, policy: Policy, deadline: float | None
    ) -> RerankOutcome:
        """Score ``call``; past the deadline fail (504) or, with fail_open, keep the input order."""
        from semrank.rerank import select_results

        try:
            results, reading = await engine.rerank(call, deadline)
        except DeadlineExceededError:
            if not self.fail_open(policy):
                raise
            return self.input_order(engine, call, policy)
        count, read = reading.tokens, reading.read
        unknown = engine.reranker.unknown_query_message(reading.unknown, count, name=engine.name)
        if policy.require_complete:
            _check_query_complete(engine, count, read, policy)
            chunked = _chunked(engine.reranker.chunking if call.chunking is None else call.chunking)
            _check_complete(results, engine, policy, chunked=chunked)
        return RerankOutcome(
            results=select_results(results, top_n=policy.top_n, min_score=policy.min_score),
            reranked=True,
            input_tokens=_input_tokens(engine, count, results),
            search_units=_search_units(results),
            warnings=(
                _query_warnings(engine, count, read)
                + ((unknown,) if unknown else ())
                + _unread_field_warnings(call)
            ),
            model=engine.name,
        )

    def fail_open(self, policy: Policy) -> bool:
        return self.config.fail_open if policy.fail_open is None else policy.fail_open

    def input_order(self, engine: ModelEngine, call: RerankCall, policy: Policy) -> RerankOutcome:
        from semrank.rerank import RerankResult

        count = (
            len(call.documents) if policy.top_n is None else min(policy.top_n, len(call.documents))
        )
        results = [
            RerankResult(
                index=i,
                relevance_score=0.0,
                document=call.documents[i] if call.return_documents else None,
                tokens=0,
                truncated=False,
                num_chunks=0,
            )
            for i in range(count)
        ]
        return RerankOutcome(
            results=results, reranked=False, input_tokens=0, search_units=0, model=engine.name
        )


def _checked_texts(calls: Sequence[RerankCall], field: str = "documents") -> list[str]:
    """Every query and document text the model will read, checked as ``Reranker.rerank`` checks
    them, before the tokenizer counts them (it cannot read every str); a batch's errors name
    the query, queries[i]."""
    from semrank.rerank._documents import document_texts, validate_queries

    queries = validate_queries([call.query for call in calls])
    texts = []
    for number, (query, call) in enumerate(zip(queries, calls, strict=True)):
        # The route's own name for them (TEI's texts).
        name = field if len(calls) == 1 else f"queries[{number}].{field}"
        _refuse_non_finite(call.documents, name)
        texts += [query, *document_texts(call.documents, call.rank_fields, name=name)]
    return texts


def _refuse_non_finite(documents: Sequence[Any], name: str = "documents") -> None:
    """NaN or an infinity anywhere in a document (Python's JSON reader takes them): it would
    come back as null, changed, in the answer. The library ranks such objects (its caller keeps
    them); over HTTP they are refused."""
    from semrank._checks import MAX_JSON_DEPTH, has_non_finite_number, json_depth_over

    for position, document in enumerate(documents):
        if isinstance(document, dict) and json_depth_over(document):
            raise InvalidInputError(
                f"{name}[{position}] nests lists / objects more than {MAX_JSON_DEPTH} levels "
                "deep, more than a response can carry back; flatten it"
            )
        if isinstance(document, dict) and has_non_finite_number(document):
            raise InvalidInputError(
                f"{name}[{position}] holds NaN or an infinity, which JSON cannot carry (it "
                "would come back as null); give finite numbers, or the value as a string"
            )


def _chunked(chunking: Any) -> bool:
    """Whether a call's documents are read in windows (``chunking`` as RerankCall holds it, or
    the model's own ChunkingConfig where the call sets none)."""
    return chunking is not False and getattr(chunking, "enabled", True) is not False


def _check_complete(
    results: list[Any], engine: ModelEngine, policy: Policy, *, chunked: bool
) -> None:
    cut = [r for r in results if r.truncated]
    if cut:
        windows = max(r.num_chunks for r in cut)
        most = max(max(r.piece_tokens, default=0) for r in cut)
        # 413 as text-embeddings-inference answers an over-long input it may not truncate.
        allow = policy.allow_cut_fix
        # With chunking on, a limit the request set (max_chunks 1, a short max_tokens_per_doc)
        # stopped the reading, not the lack of windows.
        more = policy.longer_read_fields if chunked else policy.chunking_fields
        raise RequestTooLargeError(
            f"{policy.documents_field} {[r.index for r in cut[:10]]} go on past what model "
            f"{engine.name!r} read of them ({windows} window{'s' if windows > 1 else ''} of up to "
            f"{most} document tokens); {allow}, or {more}"
        )


def _input_tokens(engine: ModelEngine, count: int, results: list[Any]) -> int:
    """Every model input holds one document window and the query as read next to it: all of
    a ``count``-token query beside a short window, what fits beside a long one (the reading
    beside the longest window was counted for every window)."""
    query_read = engine.reranker.query_tokens_read
    return sum(piece + query_read(count, piece) for r in results for piece in r.piece_tokens)


def _check_query_complete(engine: ModelEngine, count: int, read: int, policy: Policy) -> None:
    if read < count:
        raise RequestTooLargeError(
            f"the query is {count} tokens, and model {engine.name!r} reads {read} tokens of a "
            f"query next to these documents; shorten the query, or {policy.allow_cut_fix}"
        )


def _unread_field_warnings(call: RerankCall) -> tuple[str, ...]:
    from semrank.rerank._documents import unread_fields_warning

    warning = unread_fields_warning(call.documents, call.rank_fields)
    return (warning,) if warning else ()


def _query_warnings(engine: ModelEngine, count: int, read: int) -> tuple[str, ...]:
    if read >= count:
        return ()
    said = engine.reranker.query_cut_message(count, read, name=engine.name)
    return (
        f"{said} (a request that forbids truncation, Voyage's truncation: false or TEI's "
        "truncate: false, is refused instead)",
    )


def _search_units(results: list[Any]) -> int:
    inputs = sum(r.num_chunks for r in results)
    return max(1, math.ceil(inputs / DOCUMENTS_PER_SEARCH_UNIT))
