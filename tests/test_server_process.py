"""A real ``semrank serve`` process on a free localhost port: the official Cohere SDK against it,
graceful shutdown (SIGTERM finishes the request in flight, within --shutdown-timeout) and what it
logs at startup."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from semrank.models import default_spec
from semrank.server import ServerConfig
from semrank.server._run import log_auth
from serving import semrank_serve

cohere = pytest.importorskip("cohere", reason="pip install cohere (the dev extra has it)")

API_KEY = "test-key"
QUERY = "what do fleas eat"
DOCS = [
    "Paris is the capital of France and has many museums.",
    "Fleas feed on the blood of mammals and birds.",
    "The ocean is deep and cold; fish swim in it.",
    "Adult fleas drink blood; larvae eat organic debris.",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("serve") / "server.log"
    # The alias lets Cohere clients keep their model name; the model is the default Reranker().
    alias = f"rerank-v3.5={default_spec().name}"
    with semrank_serve(log, "--model", alias, "--api-key", API_KEY) as (url, _):
        yield url


def test_cohere_client_v2_gets_the_reranker_results(server: str, reranker: Any) -> None:
    client = cohere.ClientV2(api_key=API_KEY, base_url=server)
    response = client.rerank(model="rerank-v3.5", query=QUERY, documents=DOCS, top_n=3)
    want = reranker.rerank(QUERY, DOCS, top_n=3)
    assert [r.index for r in response.results] == [r.index for r in want]
    for got, expected in zip(response.results, want, strict=True):
        assert got.relevance_score == pytest.approx(expected.relevance_score, abs=1e-5)
    assert response.meta.api_version.version == "2"
    assert response.meta.billed_units.search_units == 1


def test_cohere_client_v1_gets_results_and_documents(server: str, reranker: Any) -> None:
    client = cohere.Client(api_key=API_KEY, base_url=server)
    documents = [DOCS[0], {"text": DOCS[1]}, DOCS[2], {"text": DOCS[3]}]
    response = client.rerank(
        model="rerank-v3.5", query=QUERY, documents=documents, top_n=2, return_documents=True
    )
    want = reranker.rerank(QUERY, DOCS, top_n=2)
    assert [r.index for r in response.results] == [r.index for r in want]
    for got, expected in zip(response.results, want, strict=True):
        assert got.relevance_score == pytest.approx(expected.relevance_score, abs=1e-5)
        assert got.document.text == DOCS[got.index]


def test_cohere_client_with_a_wrong_key_gets_401(server: str) -> None:
    client = cohere.ClientV2(api_key="not-the-key", base_url=server)
    with pytest.raises(cohere.core.ApiError) as raised:
        client.rerank(model="rerank-v3.5", query=QUERY, documents=DOCS)
    assert raised.value.status_code == 401
    assert raised.value.body["error_type"] == "unauthorized"


def _in_flight(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=5).text
    line = next(line for line in text.splitlines() if line.startswith("semrank_requests_in_flight"))
    return float(line.split()[-1])


def _request_in_flight(url: str) -> tuple[dict[str, Any], threading.Thread]:
    """A rerank request sent from a thread, returned once the server holds it (bounded wait);
    its response lands in the dict under "response"."""
    outcome: dict[str, Any] = {}

    def call() -> None:
        body = {"query": QUERY, "documents": DOCS}
        outcome["response"] = httpx.post(f"{url}/v2/rerank", json=body, timeout=60)

    thread = threading.Thread(target=call)
    thread.start()
    for _ in range(400):
        if _in_flight(url) >= 1:
            break
        time.sleep(0.01)
    assert _in_flight(url) >= 1
    return outcome, thread


@pytest.mark.slow
def test_sigterm_finishes_the_request_in_flight(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    # A long batching window keeps the request in flight while the signal arrives.
    with semrank_serve(log, "--batch-wait-ms", "1500") as (url, process):
        outcome, thread = _request_in_flight(url)
        process.send_signal(signal.SIGTERM)
        thread.join(timeout=60)
        # uvicorn re-raises the signal once it has shut down cleanly.
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
    assert outcome["response"].status_code == 200
    assert len(outcome["response"].json()["results"]) == len(DOCS)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(line["message"] == "stopped" for line in lines)
    assert not [line for line in lines if line["level"] in ("error", "critical")]


def test_ctrl_c_ends_one_worker_with_130_after_the_drain(tmp_path: Path) -> None:
    """uvicorn.run swallowed the SIGINT its server raises again after the drain: Ctrl-C ended
    with 0 (docs: 130, as --workers N does)."""
    log = tmp_path / "server.log"
    with semrank_serve(log) as (_, process):
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 130
    assert "Traceback" not in log.read_text()


@pytest.mark.slow
def test_sigterm_stops_within_the_shutdown_timeout_and_answers_503(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    # The batcher waits 9 s for company: the request cannot finish within the 1 s timeout.
    flags = ("--batch-wait-ms", "9000", "--shutdown-timeout", "1")
    with semrank_serve(log, *flags) as (url, process):
        started = time.monotonic()
        outcome, thread = _request_in_flight(url)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)
        stopped = time.monotonic()
        thread.join(timeout=60)
    # Before: shutdown waited for the batcher's 9 s wait and the model call after it.
    assert stopped - started < 9
    response = outcome["response"]
    assert response.status_code == 503  # before: uvicorn's plain-text 500
    assert response.json()["error_type"] == "backend_unavailable"
    assert response.headers["retry-after"] == "1"  # the client's retry_after (it was None)
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    messages = [line["message"] for line in lines]
    assert "request cancelled at shutdown" in messages and "stopped" in messages
    assert any(m.startswith("API-key auth is off") for m in messages)
    # Answered with its 503, the request is not reported as a crash of the app.
    assert "Exception in ASGI application" not in log.read_text()


def test_startup_log_says_whether_auth_is_on_and_never_the_keys(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="semrank.server")
    log_auth(ServerConfig(api_keys=frozenset({"sekrit-1", "sekrit-2"})), {})
    log_auth(ServerConfig(), {"SEMRANK_API_KEYS": " , "})  # set, but no key in it
    log_auth(ServerConfig(), {})
    records = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert records[0] == (logging.INFO, "API-key auth is on (2 keys)")
    assert records[1][0] == logging.WARNING
    assert records[1][1].startswith("SEMRANK_API_KEYS is set but holds no keys")
    assert records[2][1].startswith("API-key auth is off")
    assert records[3][1].startswith("API-key auth is off") and len(records) == 4
    assert "sekrit" not in " ".join(str(vars(r)) for r in caplog.records)


def _serve_cli(*flags: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    import os
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "semrank.cli", "serve", *flags],
        capture_output=True,
        text=True,
        timeout=120,
        env=None if env is None else os.environ | env,
    )
    return done.returncode, done.stderr


def test_a_port_in_use_fails_at_once_naming_the_flag() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, stderr = _serve_cli("--port", str(port))
    assert code == 2 and "Traceback" not in stderr
    assert f"cannot listen on 127.0.0.1:{port}" in stderr and "--port" in stderr


def test_with_json_logs_the_error_that_stops_the_start_is_a_json_line_too(
    tmp_path: Path,
) -> None:
    """With JSON logs (serve's default) the one line saying why the server stopped (why a pod
    keeps restarting) was plain `error: ...` text, the line a JSON log pipeline cannot parse;
    an --index-home under a file, and a bad variable read before the logs were set up."""
    from serving import free_port

    a_file = tmp_path / "afile"
    a_file.write_text("not a folder")
    home = str(a_file / "indexes")
    code, stderr = _serve_cli("--index-home", home, "--port", str(free_port()))
    assert code == 2, stderr[-2000:]
    last = [json.loads(line) for line in stderr.splitlines()][-1]  # every line is JSON
    assert last["level"] == "error" and last["exit_status"] == 2
    assert last["message"] == (
        f"index home {home} is a file (or lies under one); name a folder with --index-home or "
        "$SEMRANK_HOME"
    )
    code, stderr = _serve_cli("--port", str(free_port()), env={"SEMRANK_STORE": "bogus"})
    last = [json.loads(line) for line in stderr.splitlines()][-1]
    assert code == 2 and last["level"] == "error"
    assert last["message"].startswith("$SEMRANK_STORE (read as --store): --store 'bogus'")
    code, stderr = _serve_cli("--index-home", home, "--log-format", "text")  # a terminal's
    assert code == 2 and stderr.splitlines()[-1].startswith(f"error: index home {home} is a")


def test_a_gpu_this_machine_lacks_fails_at_once_naming_what_to_install(no_cuda: None) -> None:
    code, stderr = _serve_cli("--device", "cuda", "--port", "1")
    assert code == 3 and "Traceback" not in stderr
    assert "no CUDA here" in stderr and "--device" in stderr


@pytest.mark.slow
def test_metrics_count_the_requests_of_every_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from semrank.store import create_index

    monkeypatch.setenv("SEMRANK_HOME", str(tmp_path / "home"))
    with create_index("docs", fields=["text"], embedding_model=None) as index:
        index.upsert([{"id": str(n), "text": text} for n, text in enumerate(DOCS)])
    log = tmp_path / "server.log"
    with semrank_serve(log, "--workers", "2", wait_s=120) as (url, process):
        for _ in range(6):
            body = {"query": QUERY, "documents": DOCS}
            assert httpx.post(f"{url}/v2/rerank", json=body, timeout=60).status_code == 200
        scrapes = [httpx.get(f"{url}/metrics", timeout=10).text for _ in range(4)]
        for _ in range(4):  # BM25 searches in both workers
            found = httpx.post(f"{url}/v1/indexes/docs/search", json={"query": "fleas"}, timeout=60)
            assert found.status_code == 200
        # Ends as the signal (143 in a shell), as one worker does: it exited 0.
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == -signal.SIGTERM
    # tqdm's multiprocessing lock, made by a search's BM25 tokenizing, outlived each worker.
    assert "leaked semaphore" not in log.read_text()
    line = 'semrank_requests_total{route="/v2/rerank",status="200"}'
    # Before: each scrape showed the worker that answered it, about half of the six.
    for text in scrapes:
        counted = [row for row in text.splitlines() if row.startswith(line)]
        assert counted and float(counted[0].split()[-1]) == 6.0


@pytest.mark.slow
def test_workers_that_all_fail_to_start_are_a_failed_start(tmp_path: Path) -> None:
    """uvicorn's parent returned normally when every worker failed to load its model: exit 0,
    nothing listening, and a service manager saw success."""
    import socket

    from tiny_models import write_tiny_model

    broken = write_tiny_model(tmp_path / "broken", "bert")
    (broken / "model.safetensors").write_bytes(b"not weights")  # passes the layout check
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    code, stderr = _serve_cli("--model", str(broken), "--workers", "2", "--port", str(port))
    assert code == 3, stderr[-2000:]
    assert "none of the 2 workers started" in stderr


@pytest.mark.slow
def test_one_worker_that_cannot_load_its_model_says_so_in_one_line(tmp_path: Path) -> None:
    """It printed uvicorn's 80-line traceback of the app's startup."""
    import socket

    from tiny_models import write_tiny_model

    broken = write_tiny_model(tmp_path / "broken", "bert")
    (broken / "model.safetensors").write_bytes(b"not weights")
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    code, stderr = _serve_cli("--model", str(broken), "--port", str(port))
    assert code == 3, stderr[-2000:]
    assert "Traceback" not in stderr
    last = json.loads(stderr.splitlines()[-1])  # serve logs JSON lines, its last error too
    assert last["level"] == "error" and "model.safetensors" in last["message"]


def test_one_worker_ignores_a_prometheus_multiproc_dir_in_its_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Set for gunicorn, it put one worker's metrics (and start markers) into files of the
    user's folder, or, naming a folder that is missing, failed the start with a bare errno."""
    shared = tmp_path / "prometheus"
    shared.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(shared))
    with semrank_serve(tmp_path / "server.log") as (url, _):
        answer = httpx.post(f"{url}/v1/rerank", json={"query": QUERY, "documents": DOCS[:2]})
        assert answer.status_code == 200
        metrics = httpx.get(f"{url}/metrics").text
    assert 'semrank_requests_total{route="/v1/rerank",status="200"} 1.0' in metrics
    assert list(shared.iterdir()) == []
