"""Unit tests of the server's parts: config, cache, batcher, admission, logs, error messages."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from semrank.errors import (
    BackendUnavailableError,
    DeadlineExceededError,
    InvalidInputError,
    ModelNotFoundError,
    OverloadedError,
    RequestTooLargeError,
)
from semrank.server._batcher import BatcherLimits, PairBatcher
from semrank.server._cache import ScoreCache, pair_key, pair_keys
from semrank.server._engines import ModelEngine, ModelRegistry, RerankCall
from semrank.server._errors import validation_message
from semrank.server._logging import JsonFormatter, TextFormatter, log_fields
from semrank.server._metrics import Metrics
from semrank.server._run import run_server
from semrank.server._service import Admission, RerankService
from semrank.server.config import ModelEntry, ServerConfig, from_environment, parse_api_keys

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class RecordingScorer:
    """A pair scorer (the batcher's input, not the code under test): score = len(doc)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        self.calls.append(len(pairs))
        return np.array([float(len(doc)) for _, doc in pairs], dtype=np.float32)


# --- config ---------------------------------------------------------------------------------


def test_model_entry_parses_alias_and_source() -> None:
    assert ModelEntry.parse("fast=./models/minilm") == ModelEntry(
        name="fast", source="./models/minilm"
    )
    assert ModelEntry.parse("BAAI/bge-reranker-base") == ModelEntry(
        name="BAAI/bge-reranker-base", source="BAAI/bge-reranker-base"
    )
    with pytest.raises(InvalidInputError, match="ALIAS=SOURCE"):
        ModelEntry.parse("=nothing")


def test_config_from_environment_merges_flags_and_env_keys() -> None:
    config = from_environment(
        {"port": 9001, "max_documents": None},
        environ={"SEMRANK_API_KEYS": "a, b  c"},
        model_specs=["m1", "alias=m2"],
        api_keys=["d"],
    )
    assert config.port == 9001
    assert config.max_documents == ServerConfig().max_documents  # None means "not given"
    assert config.api_keys == frozenset({"a", "b", "c", "d"})
    assert [m.name for m in config.models] == ["m1", "alias"]
    assert parse_api_keys("") == frozenset()
    # A key outside printable ASCII: no client can send it (httpx refused to build the header,
    # curl's was read as latin-1), so every request got 401 though startup said keys were on.
    for environ, flags in [({"SEMRANK_API_KEYS": "clé-secrète"}, []), ({}, ["clé"])]:
        with pytest.raises(InvalidInputError, match="outside printable ASCII") as refused:
            from_environment({}, environ=environ, api_keys=flags)
        assert "cl" not in str(refused.value)  # the key is never shown


@pytest.mark.parametrize(
    ("field", "value", "flag"),
    [
        ("request_timeout_s", float("nan"), "--timeout"),
        ("request_timeout_s", float("inf"), "--timeout"),
        ("request_timeout_s", 1e10, "--timeout"),  # past threading's largest wait
        ("request_timeout_s", -1.0, "--timeout"),
        ("batch_wait_ms", float("inf"), "--batch-wait-ms"),
        ("shutdown_timeout_s", float("nan"), "--shutdown-timeout"),
        ("keep_alive_timeout_s", float("inf"), "--keep-alive-timeout"),
    ],
)
def test_durations_that_would_break_deadlines_or_shutdown_are_refused_naming_the_flag(
    field: str, value: float, flag: str
) -> None:
    with pytest.raises(InvalidInputError, match=flag):
        ServerConfig(**{field: value})


def test_workers_share_the_usable_cpus_instead_of_each_taking_all() -> None:
    """Each of N workers ran its models on every core: N times too many inference threads."""
    from semrank.runtime._select import usable_cpus

    cpus = usable_cpus()
    assert ServerConfig().inference_threads() is None  # one worker: the backend's own choice
    assert ServerConfig(workers=2).inference_threads() == max(1, cpus // 2)
    assert ServerConfig(workers=2 * cpus).inference_threads() == 1
    # Past twice the CPUs workers only crowd each other (--workers 100000 took a host down).
    with pytest.raises(InvalidInputError, match=rf"workers={2 * cpus + 1} \(--workers\): at most"):
        ServerConfig(workers=2 * cpus + 1)
    # Inference threads likewise (ONNX Runtime started --threads 300 per network: 606 threads,
    # requests 30-100x slower).
    assert ServerConfig(threads=2 * cpus).threads == 2 * cpus
    for threads in (0, 2 * cpus + 1):
        with pytest.raises(InvalidInputError, match=r"threads \(--threads\) must be a positive"):
            ServerConfig(threads=threads)
    assert ServerConfig(workers=2, threads=3).inference_threads() == 3
    config = ServerConfig(workers=2, threads=3)
    assert ServerConfig.from_json(config.to_json()) == config  # reaches the worker processes
    for bad in (0, 1.5, "2"):
        with pytest.raises(InvalidInputError, match="--threads"):
            ServerConfig(threads=bad)  # type: ignore[arg-type]


def test_config_rejects_bad_values_and_round_trips_json() -> None:
    with pytest.raises(InvalidInputError, match="max_documents"):
        ServerConfig(max_documents=0)
    with pytest.raises(InvalidInputError, match="port=70000: must be between 1 and 65535"):
        ServerConfig(port=70000)
    with pytest.raises(InvalidInputError, match="log_level='loud': choose one of debug, info"):
        ServerConfig(log_level="loud")
    with pytest.raises(InvalidInputError, match="unique"):
        ServerConfig(models=(ModelEntry(name="a"), ModelEntry(name="a")))
    config = ServerConfig(port=1234, api_keys=frozenset({"k"}), models=(ModelEntry(name="x"),))
    assert ServerConfig.from_json(config.to_json()) == config


@pytest.mark.parametrize(
    ("config", "error", "named"),
    [
        (ServerConfig(backend="nosuch"), BackendUnavailableError, "'nosuch'"),
        (ServerConfig(device="tpu"), BackendUnavailableError, "'tpu'"),
        (
            ServerConfig(models=(ModelEntry.parse("nosuchmodel"),)),
            ModelNotFoundError,
            "nosuchmodel",
        ),
    ],
)
def test_server_names_a_bad_backend_device_or_model_before_uvicorn_starts(
    config: ServerConfig, error: type[Exception], named: str
) -> None:
    # run_server raises before it starts uvicorn (whose startup would log a traceback).
    with pytest.raises(error, match=named):
        run_server(config)


# --- cache ----------------------------------------------------------------------------------


def test_cache_is_lru_and_bounded() -> None:
    cache = ScoreCache(2)
    a, b, c = (pair_key("m", "q", d) for d in ("a", "b", "c"))
    cache.put_many([a, b], [1.0, 2.0])
    assert cache.get_many([a]) == [1.0]  # a is now the most recent
    cache.put_many([c], [3.0])  # evicts b, the least recent
    assert cache.get_many([a, b, c]) == [1.0, None, 3.0]
    assert len(cache) == 2


def test_cache_keys_separate_models_and_queries_and_hold_no_text() -> None:
    key = pair_key("m", "secret query", "secret document")
    assert key != pair_key("other", "secret query", "secret document")
    assert key != pair_key("m", "secret query 2", "secret document")
    assert "secret" not in repr(key)  # a cached megabyte query costs 16 bytes, not megabytes
    pairs = [("secret query", "secret document"), ("q2", "d"), ("secret query", "d")]
    assert pair_keys("m", pairs) == [pair_key("m", q, d) for q, d in pairs]
    disabled = ScoreCache(0)
    disabled.put_many([key], [1.0])
    assert disabled.get_many([key]) == [None]


# --- batcher --------------------------------------------------------------------------------


def _batcher(scorer: RecordingScorer, **limits: float) -> PairBatcher:
    return PairBatcher(
        scorer, model="m", max_length=512, limits=BatcherLimits(**limits), metrics=Metrics()
    )


async def test_batcher_merges_concurrent_requests_into_one_call() -> None:
    scorer = RecordingScorer()
    batcher = _batcher(scorer, wait_s=0.05)
    await batcher.start()
    groups = [[("q", "x" * (i + 1)), ("q", "y" * (10 * i + 1))] for i in range(8)]
    results = await asyncio.gather(*(batcher.score(group) for group in groups))
    await batcher.close()
    assert scorer.calls == [16]
    for group, scores in zip(groups, results, strict=True):
        np.testing.assert_array_equal(scores, [len(doc) for _, doc in group])


async def test_batcher_respects_the_pair_budget() -> None:
    scorer = RecordingScorer()
    batcher = _batcher(scorer, wait_s=0.05, max_pairs=4)
    await batcher.start()
    groups = [[("q", "d")] * 3 for _ in range(3)]
    await asyncio.gather(*(batcher.score(group) for group in groups))
    await batcher.close()
    assert sum(scorer.calls) == 9
    assert max(scorer.calls) <= 4


async def test_batcher_fails_jobs_past_their_deadline_without_scoring_them() -> None:
    scorer = RecordingScorer()
    batcher = _batcher(scorer, wait_s=0.05)
    await batcher.start()
    with pytest.raises(DeadlineExceededError):
        await batcher.score([("q", "d")], deadline=time.monotonic())
    await batcher.close()
    assert scorer.calls == []


async def test_batcher_passes_model_errors_to_every_caller_and_refuses_after_close() -> None:
    def broken(pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        raise RuntimeError("model exploded")

    batcher = PairBatcher(broken, model="m", max_length=8, limits=BatcherLimits(wait_s=0.01))
    await batcher.start()
    outcomes = await asyncio.gather(
        batcher.score([("q", "a")]), batcher.score([("q", "b")]), return_exceptions=True
    )
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    await batcher.close()
    with pytest.raises(OverloadedError, match="shutting down"):
        await batcher.score([("q", "a")])


async def test_score_blocking_from_a_thread_goes_through_the_loop() -> None:
    scorer = RecordingScorer()
    # A wait long enough for three threads to start on a busy machine (0.05 s merged them into
    # one call on an idle one only: a fresh-clone CI run saw [2, 1]).
    batcher = _batcher(scorer, wait_s=1.0)
    await batcher.start()
    results = await asyncio.gather(
        *(asyncio.to_thread(batcher.score_blocking, [("q", "d" * n)]) for n in (1, 2, 3))
    )
    await batcher.close()
    assert [r.tolist() for r in results] == [[1.0], [2.0], [3.0]]
    assert scorer.calls == [3]


def test_score_blocking_without_a_running_batcher_scores_directly() -> None:
    scorer = RecordingScorer()
    assert _batcher(scorer).score_blocking([("q", "abc")]).tolist() == [3.0]


# --- admission, selection -------------------------------------------------------------------


def test_admission_bounds_pending_requests() -> None:
    admission = Admission(limit=1, retry_after_s=2, metrics=Metrics())
    with admission.admit(), pytest.raises(OverloadedError, match="retry after 2s"):  # noqa: SIM117
        with admission.admit():
            pass
    with admission.admit():  # released again
        assert admission.pending == 1


class ByteTokens(ModelEngine):
    """An engine whose tokenizer is byte-level BPE at worst: one token per UTF-8 byte."""

    def __init__(self) -> None:  # no model: only the counting is used
        from concurrent.futures import ThreadPoolExecutor

        self.threads = ThreadPoolExecutor(1)
        self.counted: list[str] = []

    def count_tokens(self, text: str) -> int:
        self.counted.append(text)
        return len(text.encode("utf-8"))


async def test_token_limit_counts_text_with_more_tokens_than_characters() -> None:
    config = ServerConfig(max_request_tokens=20)
    service = RerankService(config, ModelRegistry(config, Metrics()), Metrics())
    engine: Any = ByteTokens()
    emoji = RerankCall(query="q", documents=["\N{GRINNING FACE}" * 10])  # 11 chars, 41 tokens
    with pytest.raises(RequestTooLargeError, match=r"more than 20 tokens \(at least 41\)"):
        await service.check_limits(engine, [emoji], None)
    await service.check_limits(engine, [RerankCall(query="q", documents=["a few words"])], None)


async def test_the_token_count_stops_past_the_limit_and_at_the_deadline() -> None:
    """It counted every text of a request, past its deadline and after its client had gone,
    in asyncio's small default pool that other requests' answers waited on."""
    import time

    from semrank.errors import DeadlineExceededError

    config = ServerConfig(max_request_tokens=20)
    service = RerankService(config, ModelRegistry(config, Metrics()), Metrics())
    engine: Any = ByteTokens()
    many = RerankCall(query="q", documents=["\N{GRINNING FACE}" * 10] * 50)
    with pytest.raises(RequestTooLargeError):
        await service.check_limits(engine, [many], None)
    assert len(engine.counted) == 2  # the query and the first document: past 20 already
    engine.counted.clear()
    with pytest.raises(DeadlineExceededError):
        await service.check_limits(engine, [many], time.monotonic() - 1)
    engine.threads.shutdown(wait=True)
    assert engine.counted == []  # nothing counted for a request already past its deadline


def test_select_applies_min_score_then_top_n_and_drops_pruned_under_a_threshold() -> None:
    from semrank.rerank import RerankResult, select_results

    def result(score: float, pruned: bool = False) -> RerankResult:
        return RerankResult(
            index=0, relevance_score=score, document=None, tokens=1, truncated=False, pruned=pruned
        )

    results = [result(0.9), result(0.7), result(0.4), result(0.1), result(0.1, pruned=True)]
    scores = lambda kept: [r.relevance_score for r in kept]  # noqa: E731
    assert scores(select_results(results, top_n=2, min_score=None)) == [0.9, 0.7]
    assert scores(select_results(results, top_n=None, min_score=0.5)) == [0.9, 0.7]
    assert scores(select_results(results, top_n=1, min_score=0.95)) == []
    assert len(select_results(results, top_n=None, min_score=None)) == 5
    assert scores(select_results(results, top_n=None, min_score=0.05)) == [0.9, 0.7, 0.4, 0.1]


# --- logs, error messages -------------------------------------------------------------------


def test_json_formatter_writes_one_object_with_fields_and_traceback() -> None:
    record = logging.LogRecord(
        "semrank.server", logging.INFO, __file__, 1, "hello %s", ("x",), None
    )
    record.fields = log_fields(status=200)["fields"]
    data = json.loads(JsonFormatter().format(record))
    assert data["message"] == "hello x" and data["status"] == 200 and data["level"] == "info"
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    assert "ValueError: boom" in json.loads(JsonFormatter().format(record))["exc"]


def test_text_formatter_writes_the_same_fields_as_key_value_pairs() -> None:
    record = logging.LogRecord(
        "semrank.server.access", logging.INFO, __file__, 1, "request", (), None
    )
    record.fields = log_fields(method="POST", path="/v1/rerank", status=422, error="bad top_n")[
        "fields"
    ]
    line = TextFormatter().format(record)
    assert line.endswith('request method=POST path=/v1/rerank status=422 error="bad top_n"')
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record.exc_info = sys.exc_info()
    first, *rest = TextFormatter().format(record).splitlines()
    assert first.endswith('status=422 error="bad top_n"') and "ValueError: boom" in rest[-1]


def test_text_log_lines_cannot_be_forged_through_a_request_path() -> None:
    record = logging.LogRecord(
        "semrank.server.access", logging.INFO, __file__, 1, "request", (), None
    )
    record.fields = log_fields(path="/v1/x\n2026 INFO forged\tline")["fields"]
    line = TextFormatter().format(record)
    assert "\n" not in line and "\t" not in line  # the sent newline and tab stay escaped
    assert line.endswith('path="/v1/x\\n2026 INFO forged\\tline"')


def test_text_log_times_are_utc_so_the_hour_daylight_saving_repeats_reads_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import datetime

    monkeypatch.setenv("TZ", "America/New_York")  # 01:00-02:00 happens twice on 2024-11-03
    time.tzset()
    try:
        lines = []
        for created in (1730610000.25, 1730613600.25):  # 05:00 and 06:00 UTC, an hour apart
            record = logging.LogRecord("semrank.server", logging.INFO, __file__, 1, "m", (), None)
            record.created = created
            lines.append(TextFormatter().format(record))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    stamps = [datetime.fromisoformat(line.split(" ", 1)[0]) for line in lines]
    assert [stamp.timestamp() for stamp in stamps] == [1730610000.25, 1730613600.25]
    json_record = logging.LogRecord("semrank.server", logging.INFO, __file__, 1, "m", (), None)
    json_record.created = 1730613600.25
    assert json.loads(JsonFormatter().format(json_record))["ts"] == lines[1].split(" ", 1)[0]


def test_validation_message_names_the_fields() -> None:
    errors = [
        {"loc": ("body", "query"), "msg": "Field required"},
        {"loc": ("body", "top_n"), "msg": "Input should be greater than or equal to 1"},
    ]
    message = validation_message(errors)
    assert message == "query: Field required; top_n: Input should be greater than or equal to 1"


def test_a_dsn_as_index_home_is_refused_not_made_a_folder() -> None:
    from semrank.server import ServerConfig

    with pytest.raises(InvalidInputError, match="--store postgresql://app:") as refused:
        ServerConfig(index_home="postgresql://app:secret@db/search")
    assert "secret" not in str(refused.value)


def test_the_store_setting_is_checked() -> None:
    from semrank.server import ServerConfig
    from semrank.server.config import from_environment

    assert ServerConfig().postgres_dsn is None and ServerConfig(store="local").postgres_dsn is None
    dsn = "postgresql://app:secret@db/search"
    config = from_environment({"store": dsn})
    assert config.postgres_dsn == dsn
    assert ServerConfig.from_json(config.to_json()).postgres_dsn == dsn  # --workers N
    with pytest.raises(InvalidInputError, match="--store 'mysql://db'"):
        ServerConfig(store="mysql://db")
    with pytest.raises(InvalidInputError, match="give one of them") as both:
        ServerConfig(index_home="/srv/indexes", store=dsn)
    assert "secret" not in str(both.value)


def test_a_killed_workers_in_flight_requests_leave_the_shared_metrics(tmp_path: Path) -> None:
    """With --workers N every worker writes to one folder; a worker killed mid-request never
    says it stopped, and its in-flight gauge must not stay counted forever."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    killed = (
        "import os\nfrom semrank.server._metrics import Metrics\n"
        "Metrics(every_worker=True).in_flight.inc(3)\nos._exit(0)  # no clean stop\n"
    )
    subprocess.run([sys.executable, "-c", killed], env=env, check=True, timeout=60)
    scrape = (
        "from semrank.server._metrics import Metrics\n"
        "m = Metrics(every_worker=True)\nm.requests.labels('/x', '200').inc()\n"
        "print(m.render().decode())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", scrape], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "semrank_requests_in_flight 0.0" in lines
    assert 'semrank_requests_total{route="/x",status="200"} 1.0' in lines


def test_a_model_folder_with_an_equals_sign_is_a_name_not_an_alias(tmp_path: Path) -> None:
    from semrank.server.config import ModelEntry

    folder = tmp_path / "run-lr=3e-5"
    folder.mkdir()
    assert ModelEntry.parse(str(folder)) == ModelEntry(name=str(folder), source=str(folder))
    assert ModelEntry.parse("fast=./models/minilm") == ModelEntry(
        name="fast", source="./models/minilm"
    )


def test_an_architecture_the_exporter_cannot_build_fails_before_start(
    tiny_model: Any, tmp_path: Path
) -> None:
    from semrank.errors import UnsupportedArchitectureError
    from semrank.models import resolve
    from semrank.server._run import check_runnable

    folder = tiny_model("bert")
    check_runnable(resolve(str(folder)), "onnx")  # supported: no error
    config = json.loads((folder / "config.json").read_text())
    odd = shutil.copytree(folder, tmp_path / "odd")
    config["architectures"] = ["DistilBertForSequenceClassification"]
    (odd / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedArchitectureError, match="DistilBert"):
        check_runnable(resolve(str(odd)), "openvino")
    # A folder that ships its own graph runs it as it is: no export, nothing to refuse.
    (odd / "model.safetensors").unlink()
    (odd / "model.onnx").write_bytes(b"graph")
    check_runnable(resolve(str(odd)), "openvino")


def test_an_index_home_flag_wins_over_a_store_in_the_environment() -> None:
    """$SEMRANK_STORE exported for the CLI's index commands made `semrank serve --index-home X`
    fail at start ("give one of them"): a flag must win over the environment."""
    from semrank.server.config import from_environment

    env = {"SEMRANK_STORE": "postgresql://app@db/search"}
    assert from_environment({"index_home": "/srv/idx"}, environ=env).postgres_dsn is None
    assert from_environment({}, environ=env).postgres_dsn == "postgresql://app@db/search"
    flag = from_environment({"store": "local"}, environ=env)
    assert flag.postgres_dsn is None


def test_an_error_quoting_a_lone_surrogate_is_still_answered_as_json() -> None:
    from semrank.server._errors import error_response

    response = error_response(422, "bad key '\ud800'", "invalid_request")
    body = json.loads(response.body)
    assert response.status_code == 422
    assert "\\ud800" in body["message"]


def test_a_negative_cache_size_or_cascade_keep_names_its_flag() -> None:
    with pytest.raises(InvalidInputError, match=r"cascade_keep=-1 \(--cascade-keep\)"):
        ServerConfig(cascade_keep=-1)
    with pytest.raises(InvalidInputError, match=r"cache_size=-2 \(--cache-size\)"):
        ServerConfig(cache_size=-2)


@pytest.mark.parametrize("key", ["", " k1 ", "k1\r"])
def test_an_api_key_flag_no_client_can_send_is_refused(key: str) -> None:
    """An unset shell variable or a CRLF key file started a server that refused every request."""
    with pytest.raises(InvalidInputError, match="--api-key got"):
        from_environment({}, api_keys=[key], environ={})


def test_startup_errors_name_the_flag_or_variable_the_user_set() -> None:
    with pytest.raises(InvalidInputError, match=r"--max-pending=0 \(max_pending_requests\)"):
        from_environment({"max_pending_requests": 0}, environ={})
    with pytest.raises(InvalidInputError, match=r"^\$SEMRANK_STORE \(read as --store\)"):
        from_environment({}, environ={"SEMRANK_STORE": "bogus"})


@pytest.mark.parametrize(("flag", "field"), [("--host", "host"), ("--index-home", "index_home")])
def test_a_blank_host_or_index_home_is_refused(flag: str, field: str) -> None:
    """`--host "$UNSET"` served every interface; `--index-home ""` the current folder, with
    $SEMRANK_STORE dropped."""
    from semrank.server.config import from_environment

    with pytest.raises(InvalidInputError, match=f"^{flag} is blank"):
        from_environment({field: " "}, environ={"SEMRANK_STORE": "postgresql://u@h:5432/db"})


def test_a_slow_oversized_body_gets_its_413_in_bounded_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The edge reads an oversized body before answering 413 (so clients that send it all
    first get the answer); a client that never finishes sending must not hold the 413."""
    from semrank.server import _edge

    monkeypatch.setattr(_edge, "DISCARD_SECONDS", 0.2)

    edge, scope, sent, send = _stalled_edge(max_body_bytes=10, declared=1000)
    started = time.monotonic()
    asyncio.run(asyncio.wait_for(edge(scope, _stalled_after(b"x" * 100), send), 5))
    assert time.monotonic() - started < 2
    assert sent[0]["status"] == 413


def test_a_body_that_never_arrives_is_answered_408_and_its_connection_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A body dripped slowly (or stalled) held its connection for good, before any key check:
    a thousand such connections, sent without a key, stopped the server accepting others."""
    from semrank.server import _edge

    monkeypatch.setattr(_edge, "BODY_SECONDS", 0.2)

    edge, scope, sent, send = _stalled_edge(max_body_bytes=1000, declared=500)
    asyncio.run(asyncio.wait_for(edge(scope, _stalled_after(b'{"query": "q"'), send), 5))
    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]
    body = json.loads(sent[1]["body"])
    assert body["error_type"] == "request_timeout"
    assert "did not arrive within 0.208 s" in body["error"]  # 0.2 s and 500 bytes at 64 KiB/s

    sent.clear()  # a GET that sends a body all the same is held to it too
    scope["method"] = "GET"
    asyncio.run(asyncio.wait_for(edge(scope, _stalled_after(b"{"), send), 5))
    assert sent[0]["status"] == 408


def _stalled_edge(
    *, max_body_bytes: int, declared: int
) -> tuple[Any, dict[str, Any], list[Any], Any]:
    """The edge over an app no body may reach, a POST scope declaring ``declared`` bytes, the
    list the answer's messages go to, and the ASGI send that fills it."""
    from semrank.server import _edge

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("a partial or oversized body reached the app")

    edge = _edge.EdgeMiddleware(inner, max_body_bytes=max_body_bytes, metrics=Metrics())
    scope = {
        "type": "http", "method": "POST", "path": "/v1/rerank",
        "headers": [(b"content-length", str(declared).encode())],
    }  # fmt: skip
    sent: list[Any] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    return edge, scope, sent, send


def _stalled_after(first: bytes) -> Any:
    """An ASGI receive that sends ``first`` and then nothing more, ever."""
    parts = iter([{"type": "http.request", "body": first, "more_body": True}])

    async def receive() -> dict[str, Any]:
        for part in parts:
            return part
        await asyncio.Event().wait()  # the rest never comes
        raise AssertionError("unreachable")

    return receive


def test_workers_that_failed_to_start_are_told_from_workers_stopped_while_starting(
    tmp_path: Path,
) -> None:
    """`--workers N` exited 0 when every worker failed to load its model, then (the first fix)
    3 when the service was merely stopped while its workers were loading."""
    import signal

    from semrank.errors import BackendUnavailableError
    from semrank.server._run import check_workers_started
    from semrank.server.app import WORKER_FAILED, WORKER_STARTED

    check_workers_started(tmp_path, 2)  # stopped before any worker came up: a clean stop
    (tmp_path / f"{WORKER_FAILED}101").touch()
    with pytest.raises(BackendUnavailableError, match="none of the 2 workers started"):
        check_workers_started(tmp_path, 2)
    (tmp_path / f"{WORKER_STARTED}102").touch()  # one came up and served: a SIGTERM's stop
    check_workers_started(tmp_path, 2, signal.SIGTERM)  # is clean


def test_a_worker_that_failed_beside_one_that_started_is_an_error(tmp_path: Path) -> None:
    """uvicorn stops every worker when one fails to start (two workers exporting a model at
    once filled a small disk): `--workers 2` with one worker up and one failed then exited 0,
    with no error line, and a service manager restarting on failure left it down."""
    from semrank.errors import BackendUnavailableError, exit_code_for
    from semrank.server._run import check_workers_started
    from semrank.server.app import WORKER_FAILED, WORKER_STARTED

    (tmp_path / f"{WORKER_STARTED}101").touch()
    (tmp_path / f"{WORKER_FAILED}102").touch()
    with pytest.raises(BackendUnavailableError) as stopped:
        check_workers_started(tmp_path, 2, None)  # no signal: the failure stopped it
    assert str(stopped.value) == (
        "1 of the 2 workers failed to start, so the server stopped the others too (the log "
        "above says why)"
    )
    assert exit_code_for(stopped.value) == 3


def test_workers_without_a_temporary_folder_say_what_to_mount(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--workers N` keeps its metrics in a temporary folder: with no writable one (a
    container's read-only root) it ended on Python's bare "[Errno 2] No usable temporary
    directory found in [...]"."""
    import os
    import tempfile

    from semrank.errors import StorageError, exit_code_for
    from semrank.server._run import _run_workers, uvicorn_options
    from semrank.server.config import ENV_CONFIG_JSON, MULTIPROC_ENV
    from serving import free_port

    a_file = tmp_path / "afile"
    a_file.write_text("not a folder")
    monkeypatch.setattr(tempfile, "tempdir", str(a_file / "tmp"))  # where mkdtemp cannot make one
    config = ServerConfig(workers=2, port=free_port())
    with pytest.raises(StorageError) as refused:
        _run_workers(config, uvicorn_options(config))
    assert str(refused.value).startswith(
        "--workers 2 keeps its metrics in a temporary folder, and none can be made here ("
    )
    assert str(refused.value).endswith(
        "): mount a writable /tmp or set TMPDIR (one worker needs none)"
    )
    assert exit_code_for(refused.value) == 3
    assert ENV_CONFIG_JSON not in os.environ and MULTIPROC_ENV not in os.environ


@pytest.mark.parametrize(
    "dsn", ["postgresql+psycopg://alice:S3cretPW@db/rank", "host=db user=a password=S3cretPW"]
)
def test_a_store_that_is_not_a_dsn_is_refused_without_its_password(dsn: str) -> None:
    """SQLAlchemy URLs and key=value DSNs were printed whole, password and all."""
    from semrank.store import list_indexes

    with pytest.raises(InvalidInputError) as refused:
        ServerConfig(store=dsn)
    assert "S3cretPW" not in str(refused.value) and "***" in str(refused.value)
    with pytest.raises(InvalidInputError) as refused:
        list_indexes(store=dsn)
    assert "S3cretPW" not in str(refused.value) and "***" in str(refused.value)


def test_log_level_holds_for_libraries_that_set_their_own(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """bm25s sets its logger to DEBUG: under --log-level warning the server wrote a debug line
    for every index build."""
    import logging

    from semrank.server._logging import configure_logging

    pytest.importorskip("bm25s")
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        configure_logging("warning")
        assert logging.getLogger("bm25s").level == logging.DEBUG  # as the library leaves it
        logging.getLogger("bm25s").debug("Building index from IDs")
        logging.getLogger("bm25s").warning("a warning still shows")
    finally:
        root.handlers[:], root.level = saved[0], saved[1]
    lines = capsys.readouterr().err.splitlines()
    assert [json.loads(line)["message"] for line in lines] == ["a warning still shows"]


def test_serving_raises_the_soft_open_files_limit_to_the_hard_one() -> None:
    """Each open index holds about five descriptors: under the usual soft 1,024 a server
    stopped accepting connections at about 200 indexes."""
    import subprocess
    import sys

    resource = pytest.importorskip("resource")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY or hard <= 256:
        pytest.skip(f"hard open-files limit {hard}: nothing to raise to")
    code = (
        "import resource; from semrank.server._run import raise_open_files_limit; "
        f"resource.setrlimit(resource.RLIMIT_NOFILE, (256, {hard})); "
        "raise_open_files_limit(); print(resource.getrlimit(resource.RLIMIT_NOFILE)[0])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(done.stdout) == hard


@pytest.mark.parametrize("refused", [False, True])
def test_under_an_unlimited_hard_open_files_limit_the_soft_one_is_raised_too(
    monkeypatch: pytest.MonkeyPatch, refused: bool
) -> None:
    """macOS: soft 256, hard unlimited. Nothing was raised, and a server kept only 4 indexes
    open (each closed and opened again as requests went round more)."""
    from semrank.pipeline._open import _held_limit
    from semrank.server._run import raise_open_files_limit

    resource = pytest.importorskip("resource")
    limits = {resource.RLIMIT_NOFILE: (256, resource.RLIM_INFINITY)}  # macOS's defaults

    def setrlimit(which: int, wanted: tuple[int, int]) -> None:
        if refused:  # a kern.maxfilesperproc below it
            raise ValueError("not allowed to raise maximum limit")
        limits[which] = wanted

    monkeypatch.setattr(resource, "getrlimit", limits.__getitem__)
    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    raise_open_files_limit()
    if refused:
        assert limits[resource.RLIMIT_NOFILE] == (256, resource.RLIM_INFINITY)
        assert _held_limit() == 4
    else:
        assert limits[resource.RLIMIT_NOFILE] == (10_240, resource.RLIM_INFINITY)
        assert _held_limit() == 100  # held indexes follow the soft limit as it is now


@pytest.mark.parametrize("os_name", ["posix", "nt"])
def test_the_port_probe_shares_no_port_on_windows(
    monkeypatch: pytest.MonkeyPatch, os_name: str
) -> None:
    """SO_REUSEADDR on Windows lets a bind succeed on a port another program listens on: the
    probe passed, and "port in use" came only after the models had loaded (minutes)."""
    import os
    import socket

    from semrank.errors import InvalidInputError
    from semrank.server._run import check_address

    options: list[tuple[int, int, int]] = []
    setsockopt = socket.socket.setsockopt

    def recorded(sock: socket.socket, level: int, option: int, value: Any) -> None:
        options.append((level, option, value))
        setsockopt(sock, level, option, value)

    monkeypatch.setattr(socket.socket, "setsockopt", recorded)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with monkeypatch.context() as platform:
            platform.setattr(os, "name", os_name)
            with pytest.raises(InvalidInputError, match=f"cannot listen on 127.0.0.1:{port}"):
                check_address("127.0.0.1", port)
            check_address("127.0.0.1", 0)
    reuse = (socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    assert options == ([reuse, reuse] if os_name == "posix" else [])  # where asyncio sets it


def test_a_service_the_machine_lacks_is_logged_as_a_warning_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """During a database outage every index request logged 80 lines of traceback at error
    level ('request failed') for a documented, expected 503."""
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from semrank.errors import BackendUnavailableError, InternalError
    from semrank.server._errors import install_error_handlers

    app = FastAPI()
    install_error_handlers(app, retry_after_s=1)

    @app.get("/down")
    def down() -> None:
        raise BackendUnavailableError("cannot connect to PostgreSQL at postgresql://h/db: refused")

    @app.get("/bug")
    def bug() -> None:
        raise InternalError("a bug")

    caplog.set_level(logging.INFO)
    with TestClient(app) as client:
        assert client.get("/down").status_code == 503
        assert client.get("/bug").status_code == 500
    down_logs = [r for r in caplog.records if r.getMessage() == "request not served"]
    assert len(down_logs) == 1 and down_logs[0].levelno == logging.WARNING
    assert not down_logs[0].exc_info
    assert [r.exc_info is not None for r in caplog.records if r.levelno >= logging.ERROR] == [True]


def test_an_index_home_that_is_a_file_is_refused_before_the_models_load(tmp_path: Path) -> None:
    """It was found while the app started, after every model had loaded (minutes for a large
    one), and named --home, a flag semrank serve does not have."""
    from semrank.server._run import check_before_start

    a_file = tmp_path / "passwd"
    a_file.write_text("root:x:0:0\n")
    from serving import free_port

    with pytest.raises(InvalidInputError, match=r"\(given \(--home; semrank serve: --index-home"):
        check_before_start(ServerConfig(index_home=str(a_file), port=free_port()))


def test_an_index_home_the_server_cannot_make_is_refused_before_it_starts(
    read_only_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With HOME on a read-only root the server said ready, then answered every POST
    /v1/indexes with a client's 422 naming --home, a flag semrank serve does not have."""
    from semrank.errors import StorageError, exit_code_for
    from semrank.server._run import check_before_start
    from serving import free_port

    monkeypatch.setenv("SEMRANK_HOME", str(read_only_folder / "indexes"))
    with pytest.raises(StorageError) as refused:
        check_before_start(ServerConfig(port=free_port()))
    home = read_only_folder / "indexes"
    assert str(refused.value) == (
        f"index home {home} cannot be created or written (Read-only file system); give a "
        "writable folder with --index-home or $SEMRANK_HOME"
    )
    assert exit_code_for(refused.value) == 3


def test_a_default_index_home_the_server_cannot_make_only_warns(
    read_only_folder: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that only re-ranks, on a read-only container root with HOME=/, started before
    the index home was checked; refusing it broke such servers on upgrade."""
    from semrank.server._run import check_before_start
    from serving import free_port

    monkeypatch.delenv("SEMRANK_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(read_only_folder))
    with caplog.at_level("WARNING", logger="semrank"):
        check_before_start(ServerConfig(port=free_port()))
    home = read_only_folder / ".local" / "share" / "semrank"
    assert f"index home {home} cannot be created or written" in caplog.text
    assert "index routes get a 503" in caplog.text


# What an ASGI server started on its own (gunicorn -w N, uvicorn --factory) runs in each worker.
_WORKER_OF_ANOTHER_SERVER = (
    "from fastapi.testclient import TestClient\n"
    "from semrank.server.app import app_from_environment\n"
    "client = TestClient(app_from_environment())  # no lifespan: no model loads\n"
)


def _run_worker(code: str, env: dict[str, str]) -> list[str]:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _WORKER_OF_ANOTHER_SERVER + code],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def _environment_of_another_server(**variables: str) -> dict[str, str]:
    import os

    from semrank.server.config import ENV_CONFIG_JSON

    env = {k: v for k, v in os.environ.items() if k not in (ENV_CONFIG_JSON, "SEMRANK_STORE")}
    return {**env, **variables}


def test_the_app_factory_under_another_asgi_server_reads_the_api_keys(tmp_path: Path) -> None:
    """gunicorn or `uvicorn --factory` call app_from_environment with no config handed over:
    it read no SEMRANK_API_KEYS, and a server given keys answered every client without one."""
    env = _environment_of_another_server(SEMRANK_API_KEYS="k1,k2", SEMRANK_HOME=str(tmp_path))
    code = (
        "print(client.get('/v1/models').status_code)\n"
        "print(client.get('/v1/models', headers={'Authorization': 'Bearer k2'}).status_code)\n"
        "print(client.app.state.config.store)\n"
    )
    assert _run_worker(code, env) == ["401", "200", "None"]
    dsn = "postgresql://semrank@db.invalid/indexes"
    assert _run_worker(code, {**env, "SEMRANK_STORE": dsn})[2] == dsn  # read, not reached


def test_metrics_under_another_asgi_server_count_every_worker(tmp_path: Path) -> None:
    """gunicorn -w N with $PROMETHEUS_MULTIPROC_DIR set (prometheus_client's way): every worker
    wrote its values there, but /metrics showed the one worker a scrape reached, and nothing
    of a worker recycled (--max-requests) or restarted."""
    shared = tmp_path / "metrics"
    shared.mkdir()
    env = _environment_of_another_server(
        PROMETHEUS_MULTIPROC_DIR=str(shared), SEMRANK_HOME=str(tmp_path / "home")
    )
    _run_worker("client.get('/v1/models'); client.get('/v1/models')\n", env)  # then recycled
    scrape = "print(client.get('/metrics').text)\n"
    lines = _run_worker("client.get('/v1/models')\n" + scrape, env)
    assert 'semrank_requests_total{route="/v1/models",status="200"} 3.0' in lines


def test_a_worker_of_another_asgi_server_leaves_no_start_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The started-PID files tell `semrank serve --workers N` how its workers started; in the
    metrics folder set for gunicorn, every recycled worker left one more there."""
    import os

    from semrank.server.app import WORKER_STARTED, _say_worker
    from semrank.server.config import ENV_CONFIG_JSON

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.delenv(ENV_CONFIG_JSON, raising=False)
    _say_worker(WORKER_STARTED)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv(ENV_CONFIG_JSON, ServerConfig(workers=2).to_json())
    _say_worker(WORKER_STARTED)  # semrank serve's workers still say it
    assert [path.name for path in tmp_path.iterdir()] == [f"{WORKER_STARTED}{os.getpid()}"]
