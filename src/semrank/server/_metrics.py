"""Prometheus metrics of one app, in its own registry (several apps can live in one process).

With ``--workers N`` each worker is a process with its own counters: ``semrank serve`` then sets
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode) before the workers start, so
every worker writes its values there and a scrape of any worker reads all of them.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from semrank._process import process_alive
from semrank.server.config import MULTIPROC_ENV

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_REQUEST_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
BATCH_PAIR_BUCKETS = (1, 8, 32, 64, 128, 256, 512, 1024, 4096)


class Metrics:
    """All server metrics; names start with ``semrank_``."""

    def __init__(self, *, every_worker: bool = False) -> None:
        """``every_worker``: /metrics reads every worker's values from MULTIPROC_ENV's folder
        (``semrank serve --workers N`` sets it up); otherwise this process's registry."""
        self.every_worker = every_worker
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.requests = Counter(
            "semrank_requests", "HTTP requests served.", ["route", "status"], registry=reg
        )
        self.latency = Histogram(
            "semrank_request_latency_seconds",
            "Time from request received to response sent.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.in_flight = Gauge(
            "semrank_requests_in_flight",
            "Requests admitted and not finished.",
            registry=reg,
            multiprocess_mode="livesum",  # summed over the live workers
        )
        self.rejected = Counter(
            "semrank_rejected_requests", "Requests refused or cut short.", ["reason"], registry=reg
        )
        self.fail_open = Counter(
            "semrank_fail_open_responses",
            "Responses returned in input order because scoring did not finish in time.",
            registry=reg,
        )
        self._model_metrics(reg)

    def _model_metrics(self, reg: CollectorRegistry) -> None:
        self.batch_requests = Histogram(
            "semrank_batch_requests",
            "Scoring requests merged into one model call.",
            ["model"],
            buckets=BATCH_REQUEST_BUCKETS,
            registry=reg,
        )
        self.batch_pairs = Histogram(
            "semrank_batch_pairs",
            "(query, document) pairs in one model call.",
            ["model"],
            buckets=BATCH_PAIR_BUCKETS,
            registry=reg,
        )
        self.model_latency = Histogram(
            "semrank_model_call_seconds",
            "Duration of one merged model call.",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        self.queue_depth = Gauge(
            "semrank_queue_depth",
            "Scoring requests waiting for the model.",
            ["model"],
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.cache_hits = Counter(
            "semrank_cache_hits", "Pair scores served from the cache.", ["model"], registry=reg
        )
        self.cache_misses = Counter(
            "semrank_cache_misses",
            "Pair scores looked up and not in the cache (sent to the model, unless the request "
            "ended first).",
            ["model"],
            registry=reg,
        )

    def render(self) -> bytes:
        if not self.every_worker:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        _forget_dead_workers(os.environ[MULTIPROC_ENV])
        every_worker = CollectorRegistry()
        multiprocess.MultiProcessCollector(every_worker)
        return generate_latest(every_worker)

    def worker_stopped(self) -> None:
        """Drop this worker's live gauges from the shared values (a no-op with one process)."""
        if self.every_worker:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid())


def _forget_dead_workers(folder: str) -> None:
    """A worker killed (and restarted by uvicorn) never said it stopped: drop its live gauges,
    which would otherwise keep counting its last in-flight requests."""
    from prometheus_client import multiprocess

    for path in Path(folder).glob("gauge_live*_*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and not process_alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), folder)
