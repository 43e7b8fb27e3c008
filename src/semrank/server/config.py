"""Server configuration: one frozen object built once at startup from flags and environment.

The core of the server only ever sees a ``ServerConfig``; flags and ``SEMRANK_*`` variables are
read in ``from_environment`` (called by ``semrank serve``) and nowhere else.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from semrank._checks import is_finite_number
from semrank.errors import InvalidInputError

# prometheus_client's multiprocess folder: semrank serve sets it for --workers N (and ignores
# one in its environment).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Environment variables read at startup (flags win over them; API keys of both are kept).
ENV_API_KEYS = "SEMRANK_API_KEYS"
ENV_STORE = "SEMRANK_STORE"
# Tracing: semrank's own variable, then OpenTelemetry's standard ones.
ENV_OTLP_ENDPOINTS = ("SEMRANK_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
ENV_OTLP_SERVICE_NAME = "OTEL_SERVICE_NAME"
ENV_OTLP_PROTOCOLS = ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
OTLP_PROTOCOL = "http/protobuf"  # what semrank exports
# How ``semrank serve --workers N`` hands the config to each worker process.
ENV_CONFIG_JSON = "SEMRANK_SERVER_CONFIG_JSON"
LOG_LEVELS = ("debug", "info", "warning", "error")
MAX_PORT = 65_535


@dataclass(frozen=True, kw_only=True)
class ModelEntry:
    """One served model: the name clients send in ``model`` and where it loads from."""

    name: str
    source: str | None = None  # catalog name, directory or hub id; None = the default model

    @classmethod
    def parse(cls, text: str) -> ModelEntry:
        """``NAME`` or ``ALIAS=SOURCE`` (e.g. ``fast=./models/minilm``); a folder whose path
        holds "=" (``runs/lr=3e-5``) is a NAME."""
        if "=" in text and Path(text.strip()).expanduser().is_dir():
            return cls(name=text.strip(), source=text.strip())
        alias, sep, source = text.partition("=")
        if sep and alias.strip() and source.strip():
            return cls(name=alias.strip(), source=source.strip())
        if sep:
            raise InvalidInputError(f"--model {text!r}: expected NAME or ALIAS=SOURCE")
        return cls(name=text.strip(), source=text.strip())


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Everything the server needs to know, fixed for its lifetime."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    # Served models; the first is the default for requests without ``model``. Empty = Reranker().
    models: tuple[ModelEntry, ...] = ()
    backend: str | None = None
    device: str | None = None
    # Cascade: the embedding model prunes each request's documents to this many before the
    # re-ranker reads them (0: off).
    cascade_keep: int = 0
    # The model's pseudo-relevance feedback (the bundled default has it); False scores each
    # document on its own, independent of the other documents of its request.
    feedback: bool = True
    api_keys: frozenset[str] = field(default_factory=frozenset)
    # Request size limits.
    max_documents: int = 1000
    max_body_bytes: int = 5 * 1024 * 1024
    max_request_tokens: int = 1_000_000
    max_batch_queries: int = 64
    # Elasticsearch scroll and point-in-time contexts open at once in a worker (Elasticsearch's
    # search.max_open_scroll_context), and the hits (ids and scores) they may hold together.
    max_search_contexts: int = 500
    max_search_context_hits: int = 1_000_000
    # Admission: requests admitted at once (in flight + waiting); beyond that, 429.
    max_pending_requests: int = 256
    retry_after_s: int = 1
    # Deadlines: default per-request timeout (0 = no deadline) and what to do when it passes.
    request_timeout_s: float = 30.0
    fail_open: bool = False
    # Dynamic batching across requests.
    batch_wait_ms: float = 2.0
    batch_max_pairs: int = 512
    # A big request is scored in slices of at most this many tokens, other requests' work in
    # between. benchmarks/server_load.py (2 cores, the default model): 16,384 halves a small
    # request's wait behind large ones for 2-3% of their throughput (RESULTS.md, session 16).
    batch_token_budget: int = 16_384
    # Threads that run the per-request re-ranking logic (tokenising, chunking, sorting).
    request_threads: int = 64
    # Inference threads of each worker's models (None: the backend's own choice with one
    # worker, the usable CPUs shared out among several: each took every core, so two workers
    # on two cores ran four threads against each other).
    threads: int | None = None
    cache_size: int = 100_000  # (model, query, document) scores kept; 0 turns the cache off
    auto_truncate: bool = True  # TEI ``truncate`` when the request leaves it out
    # /v1/rerank's return_documents when the request leaves it out: Cohere, Together and Voyage
    # default to false, Jina to true (one endpoint cannot tell their clients apart).
    return_documents: bool = False
    index_home: str | None = None  # where indexes live; None: $SEMRANK_HOME or the XDG default
    # A PostgreSQL DSN: the indexes are kept there instead (None or "local": under index_home).
    store: str | None = None
    log_level: str = "info"
    log_json: bool = True
    shutdown_timeout_s: float = 30.0
    # How long an idle client connection is kept open: longer than a load balancer's own idle
    # timeout (60 s for AWS ALB and nginx upstreams), so the server never closes a connection
    # the balancer is about to reuse (an occasional 502). uvicorn's own default is 5 s.
    keep_alive_timeout_s: float = 75.0
    # OpenTelemetry tracing (semrank[otel]): an OTLP/HTTP collector's base URL (None: off) and
    # the service.name of the spans.
    otlp_endpoint: str | None = None
    otlp_service_name: str = "semrank"

    def __post_init__(self) -> None:
        _check_positive(self, ("port", "workers", "max_documents", "max_body_bytes"))
        _check_positive(self, ("max_request_tokens", "max_pending_requests", "batch_max_pairs"))
        _check_positive(self, ("batch_token_budget", "request_threads", "max_batch_queries"))
        _check_positive(self, ("max_search_contexts", "max_search_context_hits"))
        from semrank.runtime._select import check_threads

        check_threads(self.threads, "threads (--threads)")
        for name in ("cache_size", "cascade_keep"):
            if getattr(self, name) < 0:
                flag = "--" + name.replace("_", "-")
                raise InvalidInputError(
                    f"{name}={getattr(self, name)} ({flag}) must be >= 0 (0 turns it off)"
                )
        for name, (flag, most) in DURATION_LIMITS.items():
            _check_duration(getattr(self, name), name, flag, most)
        _check_workers(self.workers)
        if self.port > MAX_PORT:
            raise InvalidInputError(f"port={self.port}: must be between 1 and {MAX_PORT}")
        if self.log_level not in LOG_LEVELS:
            raise InvalidInputError(
                f"log_level={self.log_level!r}: choose one of {', '.join(LOG_LEVELS)}"
            )
        _check_not_blank(self)
        _check_otlp(self.otlp_endpoint, self.otlp_service_name)
        _check_store(self.index_home, self.store)
        names = [entry.name for entry in self.models]
        if len(set(names)) != len(names):
            raise InvalidInputError(f"--model names must be unique, got {names}")

    def inference_threads(self) -> int | None:
        """``threads``, or the usable CPUs divided among the workers when there are several."""
        if self.threads is not None or self.workers == 1:
            return self.threads
        from semrank.runtime._select import usable_cpus

        return max(1, usable_cpus() // self.workers)

    def to_json(self) -> str:
        """Serialise for worker processes (api_keys included: keep it in the environment only)."""
        data = dataclasses.asdict(self)
        data["api_keys"] = sorted(self.api_keys)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> ServerConfig:
        data: dict[str, Any] = json.loads(text)
        data["models"] = tuple(ModelEntry(**entry) for entry in data.get("models", ()))
        data["api_keys"] = frozenset(data.get("api_keys", ()))
        return cls(**data)

    @property
    def postgres_dsn(self) -> str | None:
        """The DSN of the PostgreSQL database holding the indexes, or None (embedded store)."""
        return None if self.store in (None, "local") else self.store


# Durations: field -> (flag, the largest value that still means something). NaN and infinity
# pass a plain "< 0" check and then break deadlines (every request 504 or 500) or shutdown.
DURATION_LIMITS = {
    "request_timeout_s": ("--timeout", 86_400.0),
    "batch_wait_ms": ("--batch-wait-ms", 10_000.0),
    "shutdown_timeout_s": ("--shutdown-timeout", 3_600.0),
    "keep_alive_timeout_s": ("--keep-alive-timeout", 3_600.0),
}


def _check_duration(value: Any, name: str, flag: str, most: float) -> None:
    if not is_finite_number(value, at_least=0, at_most=most):
        raise InvalidInputError(
            f"{flag} ({name}) = {value!r}: must be a number of at least 0 and at most {most:g}"
        )


# Config fields whose flag is not the field's name (the others: --field-name).
FLAGS = {"max_pending_requests": "--max-pending"}
INTERNAL = {"batch_max_pairs", "request_threads"}  # set by semrank, not by a flag


def _check_workers(workers: int) -> None:
    """Each worker loads its own models (0.5-0.8 GB) and runs inference on at least one CPU:
    past twice the usable CPUs they only crowd each other (--workers 100000 took a host down)."""
    from semrank.runtime._select import usable_cpus

    cpus = usable_cpus()
    if workers > 2 * cpus:
        raise InvalidInputError(
            f"workers={workers} (--workers): at most {2 * cpus}, twice the {cpus} CPUs this "
            "process may use (each worker loads its own models and scores on its own CPUs); "
            "--threads sets each worker's threads"
        )


def _check_positive(config: ServerConfig, names: Sequence[str]) -> None:
    for name in names:
        value = getattr(config, name)
        if value <= 0:
            if name in INTERNAL:
                raise InvalidInputError(f"{name}={value!r}: must be a positive number")
            flag = FLAGS.get(name, "--" + name.replace("_", "-"))
            raise InvalidInputError(f"{flag}={value!r} ({name}): must be a positive number")


def _checked_flag_keys(keys: Sequence[str]) -> list[str]:
    """--api-key values: an empty one (an unset shell variable) or one with spaces (a key file
    with CRLF endings) would be a key no client can send, so every request would get 401."""
    for key in keys:
        if not key or key != key.strip() or any(c.isspace() for c in key):
            shown = "an empty key" if not key else f"a key with whitespace ({len(key)} chars)"
            raise InvalidInputError(
                f"--api-key got {shown}, which no client can send; give the key itself (is "
                "the variable set? does its file end with \\r\\n?)"
            )
    _check_sendable(keys, "--api-key")
    return list(keys)


def _check_sendable(keys: Iterable[str], source: str) -> None:
    """A key outside printable ASCII cannot travel in an HTTP header (httpx refuses to build
    it; a server reads header bytes as latin-1): every request would get 401."""
    for key in keys:
        if not all(33 <= ord(char) <= 126 for char in key):
            raise InvalidInputError(
                f"{source} holds a key with characters outside printable ASCII ({len(key)} "
                "chars), which an HTTP header cannot carry; use letters, digits and punctuation"
            )


def parse_api_keys(text: str | None) -> frozenset[str]:
    """Comma- or whitespace-separated keys, as in ``SEMRANK_API_KEYS``."""
    if not text:
        return frozenset()
    return frozenset(key for key in text.replace(",", " ").split() if key)


def _check_store(index_home: str | None, store: str | None) -> None:
    from semrank.store import is_postgres_dsn
    from semrank.store import redact_dsn as redact

    if is_postgres_dsn(index_home):
        raise InvalidInputError(
            f"--index-home is a folder for the embedded store, got a PostgreSQL DSN; pass it "
            f"as --store {redact(str(index_home))} instead"
        )
    if store in (None, "local"):
        return
    if not is_postgres_dsn(store):
        raise InvalidInputError(
            f"--store {redact(store)!r}: use 'local' (indexes under --index-home, the default) "
            "or a PostgreSQL DSN postgresql://user@host:port/database"
        )
    if index_home:
        raise InvalidInputError(
            f"--index-home {index_home!r} and --store {redact(str(store))}: the indexes "
            "live in one place; give one of them"
        )


def _check_not_blank(config: ServerConfig) -> None:
    """A flag given an unset shell variable (``--host "$HOST"``): a blank host bound every
    interface, a blank index home the current folder (and dropped $SEMRANK_STORE)."""
    blank = {
        "--host": "0.0.0.0 for every interface, 127.0.0.1 for this machine only",
        "--index-home": "a folder, or leave the flag out for $SEMRANK_HOME",
    }
    for flag, value in (("--host", config.host), ("--index-home", config.index_home)):
        if value is not None and not str(value).strip():
            raise InvalidInputError(f"{flag} is blank; give {blank[flag]}")


def _check_otlp(endpoint: str | None, service_name: str) -> None:
    from urllib.parse import urlsplit

    if endpoint is not None:
        parts = urlsplit(endpoint.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInputError(
                f"--otlp-endpoint {endpoint!r}: give the OTLP/HTTP collector's URL, e.g. "
                "http://localhost:4318 (spans go to its /v1/traces)"
            )
    if not service_name.strip():
        raise InvalidInputError("--otlp-service-name is blank; give a name, e.g. semrank")


def _otlp_from_env(values: dict[str, Any], env: Mapping[str, str]) -> None:
    """The endpoint and service name from the environment, where no flag gave them; a
    protocol set there other than OTLP/HTTP's is refused (the spans would go nowhere)."""
    if "otlp_endpoint" not in values:
        given = (env.get(name, "").strip() for name in ENV_OTLP_ENDPOINTS)
        values["otlp_endpoint"] = next((value for value in given if value), None)
    if "otlp_service_name" not in values and env.get(ENV_OTLP_SERVICE_NAME, "").strip():
        values["otlp_service_name"] = env[ENV_OTLP_SERVICE_NAME].strip()
    if values["otlp_endpoint"] is None:
        return
    for name in ENV_OTLP_PROTOCOLS:
        protocol = env.get(name, "").strip()
        if protocol and protocol != OTLP_PROTOCOL:
            raise InvalidInputError(
                f"${name}={protocol!r}: semrank exports spans over OTLP/HTTP ({OTLP_PROTOCOL}); "
                f"unset it or set {OTLP_PROTOCOL}, and give the collector's HTTP port (4318)"
            )
        if protocol:
            return


def from_environment(
    overrides: Mapping[str, Any] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    model_specs: Sequence[str] = (),
    api_keys: Sequence[str] = (),
) -> ServerConfig:
    """Build the config at startup: flags (``overrides``, ``--model``, ``--api-key``) over env."""
    env = os.environ if environ is None else environ
    env_keys = parse_api_keys(env.get(ENV_API_KEYS))
    _check_sendable(env_keys, ENV_API_KEYS)
    # Both are kept: a flag adds keys to the variable's (a key rotated in by flag leaves the
    # variable's valid until it is taken out there).
    keys = env_keys | frozenset(_checked_flag_keys(api_keys))
    values = {name: value for name, value in (overrides or {}).items() if value is not None}
    from_env = "store" not in values and "index_home" not in values and bool(env.get(ENV_STORE))
    if from_env:
        # The CLI's index commands read it too; a --index-home flag wins over it.
        values["store"] = env[ENV_STORE]
    _otlp_from_env(values, env)
    models = tuple(ModelEntry.parse(spec) for spec in model_specs)
    try:
        return ServerConfig(models=models, api_keys=keys, **values)
    except InvalidInputError as exc:
        if from_env and str(exc).startswith("--store "):  # the user gave no --store: say where
            raise InvalidInputError(f"${ENV_STORE} (read as --store): {exc}") from None
        raise
