"""The rerank endpoints: one scoring path, several wire formats."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request, Response

from semrank.errors import DeadlineExceededError, InvalidInputError, RequestTooLargeError
from semrank.server._auth import require_api_key
from semrank.server._edge import TIMINGS_KEY, UniqueKeysRoute
from semrank.server._engines import ModelEngine, RerankCall
from semrank.server._service import Policy, RerankOutcome, RerankService
from semrank.server.schemas import (
    ApiMeta,
    ApiVersion,
    BatchQueryResult,
    BatchRerankRequest,
    BatchRerankResponse,
    BilledUnits,
    ChunkInfo,
    ChunkingOptions,
    ErrorBody,
    RootRerankRequest,
    TeiRank,
    TeiRerankRequest,
    Tokens,
    Usage,
    V1RerankRequest,
    V1RerankResponse,
    V1Result,
    V2RerankRequest,
    V2RerankResponse,
    V2Result,
    VoyageRerankResponse,
    VoyageResult,
    VoyageUsage,
)

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": text}
    for status, text in (
        (400, "the body is not UTF-8, or its JSON is nested too deeply or its numbers too long"),
        (401, "missing or wrong API key"),
        (404, "unknown model or index"),
        (409, "an index of that name exists (index routes)"),
        (413, "too many documents, tokens or bytes"),
        (422, "invalid request"),
        (429, "queue full; see Retry-After"),
        (500, "internal error (see the server log)"),
        (503, "a backend or an index's storage is unavailable, or the server is draining"),
        (504, "deadline exceeded (without fail_open)"),
    )
}
RERANKED_HEADER = "x-semrank-reranked"
WARNING_HEADER = "x-semrank-warning"  # the first of the answer's warnings (a query cut to fit)

router = APIRouter(
    dependencies=[Depends(require_api_key)],
    route_class=UniqueKeysRoute,
    tags=["rerank"],
    responses=ERRORS,
)


@router.post(
    "/v2/rerank",
    response_model=V2RerankResponse,
    response_model_exclude_none=True,
    summary="Re-rank documents (Cohere v2)",
)
async def rerank_v2(body: V2RerankRequest, request: Request, response: Response) -> Any:
    service, engine = _service(request), _service(request).engine(body.model)
    call = RerankCall(
        query=body.query,
        documents=body.documents,
        max_tokens_per_doc=body.max_tokens_per_doc,
        return_documents=body.return_documents,
        chunking=_chunking(engine, body.chunking, body.max_chunks_per_doc),
        raw_scores=body.raw_scores,
    )
    policy = Policy(top_n=body.top_n, min_score=body.min_score, fail_open=body.fail_open)
    (outcome,) = await _run(request, service, engine, [call], [policy], body.timeout_ms)
    _mark(response, [outcome])
    results = [
        V2Result(
            index=r.index,
            relevance_score=r.relevance_score,
            document={"text": r.document} if isinstance(r.document, str) else None,
            **_facts(r),
        )
        for r in outcome.results
    ]
    return V2RerankResponse(
        id=_request_id(request),
        model=outcome.model,
        results=results,
        meta=_meta("2", outcome),
        reranked=outcome.reranked,
    )


@router.post(
    "/v1/rerank",
    response_model=V1RerankResponse | VoyageRerankResponse,
    response_model_exclude_none=True,
    summary="Re-rank documents (Cohere v1, Jina, Together, Voyage)",
)
async def rerank_v1(body: V1RerankRequest, request: Request, response: Response) -> Any:
    if body.top_n is not None and body.top_k is not None and body.top_n != body.top_k:
        raise InvalidInputError(
            f"top_n={body.top_n} and top_k={body.top_k} disagree; send one of them (top_k is "
            "Voyage's name for top_n)"
        )
    service = _service(request)
    engine = service.engine(body.model)
    return_documents = (
        service.config.return_documents if body.return_documents is None else body.return_documents
    )
    call = RerankCall(
        query=body.query,
        documents=body.documents,
        rank_fields=body.rank_fields,
        max_tokens_per_doc=body.max_tokens_per_doc,
        return_documents=return_documents,
        chunking=_chunking(engine, body.chunking, body.max_chunks_per_doc),
        raw_scores=body.raw_scores,
    )
    policy = Policy(
        top_n=body.top_n if body.top_n is not None else body.top_k,
        min_score=body.min_score,
        fail_open=body.fail_open,
        require_complete=body.truncation is False,
    )
    (outcome,) = await _run(request, service, engine, [call], [policy], body.timeout_ms)
    _mark(response, [outcome])
    if _is_voyage(body):
        return _voyage_response(outcome)
    # A request that names no shape may be Voyage's minimal one: its clients read `data`.
    return _v1_response(request, outcome, with_voyage_data=body.response_format is None)


def _is_voyage(body: V1RerankRequest) -> bool:
    """Whether to answer in Voyage's shape: asked for, or a request only Voyage's client sends
    (it always sends ``top_k`` and ``truncation``, ``top_k`` as null when unset; Cohere, Jina
    and Together send neither)."""
    if body.response_format is not None:
        return body.response_format == "voyage"
    return bool({"top_k", "truncation"} & body.model_fields_set)


@router.post(
    "/rerank",
    response_model=list[TeiRank] | V1RerankResponse | VoyageRerankResponse,
    response_model_exclude_none=True,
    summary="Re-rank texts (Hugging Face text-embeddings-inference)",
    operation_id="rerank_tei_rerank_post",  # the id clients were generated with (rerank_tei)
    description="TEI's body (`texts`) is answered in TEI's shape; a body with `documents` "
    "instead is answered as POST /v1/rerank answers it (clients that add /rerank to a base URL "
    "without /v1 reach this route).",
)
async def rerank_root(
    # Body(): FastAPI before 0.118.2 took an unmarked discriminated union for a query
    # parameter and refused every body ('query: Field required').
    body: Annotated[RootRerankRequest, Body()],
    request: Request,
    response: Response,
) -> Any:
    if isinstance(body, V1RerankRequest):
        return await rerank_v1(body, request, response)
    return await _rerank_tei(body, request, response)


async def _rerank_tei(body: TeiRerankRequest, request: Request, response: Response) -> Any:
    service = _service(request)
    engine = service.engine(body.model)
    truncate = service.config.auto_truncate if body.truncate is None else body.truncate
    # semrank cuts an input at its end only, so 'left' is honoured by refusing what it would cut
    # (Haystack's TEI ranker sends it; texts read whole are the same either way).
    cut_from_left = body.truncation_direction.lower() == "left"
    call = RerankCall(
        query=body.query,
        documents=body.texts,
        return_documents=body.return_text,
        chunking=_chunking(engine, body.chunking),
        raw_scores=body.raw_scores,
    )
    policy = Policy(
        min_score=body.min_score,
        fail_open=body.fail_open,
        require_complete=not truncate or cut_from_left,
        allow_cut=(
            f"send truncation_direction 'right'{'' if truncate else ' and truncate: true'} "
            "(semrank cuts long inputs at their end, never at their start)"
            if cut_from_left
            else ""
        ),
        documents_field="texts",
        truncation_field="truncate",
        chunking_fields="enable chunking",
        longer_read_fields="raise chunking.max_chunks",
    )
    (outcome,) = await _run(request, service, engine, [call], [policy], body.timeout_ms)
    _mark(response, [outcome])
    return [
        TeiRank(index=r.index, score=r.relevance_score, text=r.document, **_facts(r))
        for r in outcome.results
    ]


@router.post(
    "/v1/rerank/batch",
    response_model=BatchRerankResponse,
    response_model_exclude_none=True,
    summary="Re-rank many queries, each with its own candidates (semrank)",
)
async def rerank_batch(body: BatchRerankRequest, request: Request, response: Response) -> Any:
    service = _service(request)
    if len(body.queries) > service.config.max_batch_queries:
        raise RequestTooLargeError(
            f"{len(body.queries)} queries exceed this server's limit of "
            f"{service.config.max_batch_queries} per batch; split the batch (or raise "
            "--max-batch-queries)"
        )
    engine = service.engine(body.model)
    chunking = _chunking(engine, body.chunking)
    calls = [
        RerankCall(
            query=item.query,
            documents=item.documents,
            rank_fields=body.rank_fields,
            max_tokens_per_doc=body.max_tokens_per_doc,
            return_documents=body.return_documents,
            chunking=chunking,
            raw_scores=body.raw_scores,
        )
        for item in body.queries
    ]
    policies = [
        Policy(
            top_n=item.top_n if item.top_n is not None else body.top_n,
            min_score=item.min_score if item.min_score is not None else body.min_score,
            fail_open=body.fail_open,
        )
        for item in body.queries
    ]
    outcomes = await _run(request, service, engine, calls, policies, body.timeout_ms)
    reranked = all(o.reranked for o in outcomes)
    _mark(response, outcomes)
    tokens = sum(o.input_tokens for o in outcomes)
    return BatchRerankResponse(
        id=_request_id(request),
        model=engine.name,
        results=[
            BatchQueryResult(
                query_index=i,
                results=_v1_results(o),
                reranked=o.reranked,
                warnings=list(o.warnings) or None,
            )
            for i, o in enumerate(outcomes)
        ],
        usage=_usage(tokens),
        reranked=reranked,
    )


async def _run(
    request: Request,
    service: RerankService,
    engine: ModelEngine,
    calls: Sequence[RerankCall],
    policies: Sequence[Policy],
    timeout_ms: int | None,
) -> list[RerankOutcome]:
    """Admit, check limits, then score every call concurrently under one deadline."""
    with service.admission.admit():
        deadline = service.deadline(timeout_ms)
        started = time.perf_counter()
        try:
            outcomes = await _checked_and_scored(service, engine, calls, policies, deadline)
        except DeadlineExceededError:
            service.metrics.rejected.labels("deadline").inc()  # once per request, not per query
            raise
        if not all(outcome.reranked for outcome in outcomes):  # cut short, answered anyway
            service.metrics.rejected.labels("deadline").inc()
            service.metrics.fail_open.inc()
        _timings(request)["rerank"] = time.perf_counter() - started
        return list(outcomes)


async def _checked_and_scored(
    service: RerankService,
    engine: ModelEngine,
    calls: Sequence[RerankCall],
    policies: Sequence[Policy],
    deadline: float | None,
) -> list[RerankOutcome]:
    try:
        await service.check_limits(engine, calls, deadline, policies[0].documents_field)
    except DeadlineExceededError:  # counting tokens took the whole deadline
        if not all(service.fail_open(policy) for policy in policies):
            raise
        return [service.input_order(engine, c, p) for c, p in zip(calls, policies, strict=True)]
    pairs = zip(calls, policies, strict=True)
    return list(await asyncio.gather(*(service.rerank(engine, c, p, deadline) for c, p in pairs)))


def _service(request: Request) -> RerankService:
    service: RerankService = request.app.state.service
    return service


def _timings(request: Request) -> dict[str, float]:
    timings: dict[str, float] = request.scope.setdefault("state", {}).setdefault(TIMINGS_KEY, {})
    return timings


def _request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def _chunking(
    engine: ModelEngine, chunking: bool | ChunkingOptions | None, max_chunks: int | None = None
) -> Any:
    """The request's chunking as the Reranker takes it (None: the model's own default).

    ``max_tokens_per_doc`` (Cohere: documents are read to that many tokens) sets how far the
    Reranker reads, in as many windows as it takes, unless the request bounds the windows
    itself (``max_chunks`` / ``max_chunks_per_doc``: a client's cost limit): the Reranker
    settles that, as for library calls.
    """
    turned_off = chunking is False or (
        isinstance(chunking, ChunkingOptions) and chunking.enabled is False
    )
    if turned_off and max_chunks is not None:
        said = "chunking=false" if chunking is False else "chunking.enabled=false"
        raise InvalidInputError(
            f"max_chunks_per_doc={max_chunks} asks for chunking, which {said} turns off; send "
            "one of them"
        )
    if chunking is False or (chunking is True and max_chunks is None):
        return chunking
    # chunking: true beside max_chunks_per_doc: the client's bound on the windows still holds.
    values = (
        {} if not isinstance(chunking, ChunkingOptions) else chunking.model_dump(exclude_none=True)
    )
    if max_chunks is not None:
        if values.get("max_chunks", max_chunks) != max_chunks:
            raise InvalidInputError(
                f"max_chunks_per_doc={max_chunks} and chunking.max_chunks={values['max_chunks']} "
                "disagree; send one of them"
            )
        values["max_chunks"] = max_chunks
        values.setdefault("enabled", True)
    if not values:
        return None
    return dataclasses.replace(engine.reranker.chunking, **values)


def _mark(response: Response, outcomes: Sequence[RerankOutcome]) -> None:
    """Headers every response shape carries (TEI's, Jina's and Voyage's have no meta)."""
    response.headers[RERANKED_HEADER] = "true" if all(o.reranked for o in outcomes) else "false"
    warnings = [w for o in outcomes for w in o.warnings]
    if warnings:
        response.headers[WARNING_HEADER] = warnings[0].encode("ascii", "backslashreplace").decode()


def _facts(result: Any) -> dict[str, Any]:
    chunk = result.chunk
    return {
        "tokens": result.tokens,
        "truncated": result.truncated,
        "num_chunks": result.num_chunks,
        "pruned": result.pruned,
        "chunk": None
        if chunk is None
        else ChunkInfo(index=chunk.index, start=chunk.start, end=chunk.end, field=chunk.field),
    }


def _meta(version: str, outcome: RerankOutcome) -> ApiMeta:
    return ApiMeta(
        api_version=ApiVersion(version=version),
        billed_units=BilledUnits(search_units=outcome.search_units),
        tokens=Tokens(input_tokens=outcome.input_tokens),
        warnings=list(outcome.warnings) or None,
    )


def _v1_results(outcome: RerankOutcome) -> list[V1Result]:
    return [
        V1Result(
            index=r.index,
            relevance_score=r.relevance_score,
            document={"text": r.document} if isinstance(r.document, str) else r.document,
            **_facts(r),
        )
        for r in outcome.results
    ]


def _v1_response(
    request: Request, outcome: RerankOutcome, *, with_voyage_data: bool = False
) -> V1RerankResponse:
    return V1RerankResponse(
        id=_request_id(request),
        model=outcome.model,
        results=_v1_results(outcome),
        meta=_meta("1", outcome),
        usage=_usage(outcome.input_tokens),
        reranked=outcome.reranked,
        data=_voyage_data(outcome) if with_voyage_data else None,
    )


def _voyage_data(outcome: RerankOutcome) -> list[VoyageResult]:
    """Voyage's list beside Cohere's results, without the documents (``results`` has them):
    the answer is not twice the size for the Cohere, Jina and Together clients that get it."""
    return [
        VoyageResult(index=r.index, relevance_score=r.relevance_score, **_facts(r))
        for r in outcome.results
    ]


def _usage(tokens: int) -> Usage:
    return Usage(prompt_tokens=tokens, total_tokens=tokens, completion_tokens=0)


def _voyage_response(outcome: RerankOutcome) -> VoyageRerankResponse:
    data = [
        VoyageResult(
            index=r.index, relevance_score=r.relevance_score, document=r.document, **_facts(r)
        )
        for r in outcome.results
    ]
    return VoyageRerankResponse(
        data=data,
        model=outcome.model,
        usage=VoyageUsage(total_tokens=outcome.input_tokens),
        reranked=outcome.reranked,
    )
