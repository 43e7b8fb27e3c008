"""Health, readiness, metrics, the model list and TEI's endpoint info."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from semrank import __version__
from semrank.server._auth import require_api_key
from semrank.server.schemas import (
    CohereModel,
    ErrorBody,
    Health,
    ModelInfo,
    ModelList,
    Readiness,
    TeiClassifierModel,
    TeiEmbeddingModel,
    TeiEmbeddingType,
    TeiInfo,
    TeiRerankerType,
)

probes = APIRouter(tags=["system"])
models_router = APIRouter(
    dependencies=[Depends(require_api_key)],
    tags=["models"],
    responses={401: {"model": ErrorBody, "description": "missing or wrong API key"}},
)
# HEAD is answered wherever GET is (app.HeadAsGet).


@probes.get("/health", response_model=Health, summary="Liveness: the process answers")
async def health() -> Health:
    return Health(status="ok")


@probes.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "starting or draining"}},
    summary="Readiness: models loaded and not shutting down",
)
async def ready(request: Request) -> Any:
    state = request.app.state
    models = sorted(state.registry.engines)
    if state.phase == "ready" and state.registry.ready:
        return Readiness(status="ready", models=models)
    body = Readiness(status="draining" if state.phase == "draining" else "starting", models=models)
    retry = {"Retry-After": str(state.config.retry_after_s)}  # as every 503 says
    return JSONResponse(body.model_dump(), status_code=503, headers=retry)


@probes.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    return Response(request.app.state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@models_router.get("/v1/models", response_model=ModelList, summary="Served models")
async def list_models(request: Request) -> ModelList:
    registry = request.app.state.registry
    data = [_model_info(registry, name, engine) for name, engine in registry.engines.items()]
    return ModelList(data=data, models=[_cohere_model(info) for info in data])


@models_router.get(
    "/v1/models/{name:path}",
    response_model=CohereModel,
    responses={404: {"model": ErrorBody, "description": "no model of that name is served"}},
    summary="One served model (Cohere's Get a Model)",
)
async def get_model(name: str, request: Request) -> CohereModel:
    registry = request.app.state.registry
    engine = registry.get(name)  # an unknown name: 404, naming the served ones
    return _cohere_model(_model_info(registry, name, engine))


@models_router.get(
    "/info",
    response_model=TeiInfo,
    responses={503: {"model": ErrorBody, "description": "no model loaded: the startup never ran"}},
    summary="The default model and the server's limits, as TEI's GET /info describes them",
    operation_id="get_model_info",  # TEI's, for clients generated from its schema
)
async def tei_info(request: Request) -> TeiInfo:
    registry, config = request.app.state.registry, request.app.state.config
    engine = registry.get(None)  # no model loaded: answered as a rerank request is
    model = _model_info(registry, engine.name, engine)
    return TeiInfo(
        model_id=model.id,
        model_type=_tei_model_type(model.kind, engine),
        max_concurrent_requests=config.max_pending_requests,
        max_input_length=model.max_length,
        max_batch_tokens=config.batch_token_budget,
        # TEI queues each (query, text) pair of a rerank as one request of a batch.
        max_batch_requests=config.batch_max_pairs,
        max_client_batch_size=config.max_documents,
        auto_truncate=config.auto_truncate,
        version=__version__,
    )


def _tei_model_type(kind: str, engine: Any) -> TeiRerankerType | TeiEmbeddingType:
    if kind == "bi-encoder":
        # The embedder semrank loads says its pooling; a scorer of the caller's own may not.
        pooling = getattr(getattr(engine.scorer, "embedder", None), "pooling", None)
        return TeiEmbeddingType(embedding=TeiEmbeddingModel(pooling=pooling))
    # One relevance score per pair, under the label a one-label head has in transformers.
    one_label = TeiClassifierModel(id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
    return TeiRerankerType(reranker=one_label)


def _model_info(registry: Any, name: str, engine: Any) -> ModelInfo:
    return ModelInfo(
        id=name,
        kind=engine.kind,
        max_length=engine.max_length,
        default=name == registry.default_name,
    )


def _cohere_model(info: ModelInfo) -> CohereModel:
    return CohereModel(
        name=info.id,
        default_endpoints=["rerank"] if info.default else [],
        context_length=info.max_length,
    )
