"""Health, readiness, metrics and the model list."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from semrank.server._auth import require_api_key
from semrank.server.schemas import (
    CohereModel,
    ErrorBody,
    Health,
    ModelInfo,
    ModelList,
    Readiness,
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
