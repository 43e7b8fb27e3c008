"""The HTTP protocol ``semrank serve`` runs: uvicorn's h11 protocol with a deadline for each
request's headers, served by a real uvicorn server on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from tests.serving import free_port

from semrank.server import _protocol
from semrank.server._protocol import HeaderDeadlineProtocol
from semrank.server._run import uvicorn_options
from semrank.server.config import ServerConfig

DEADLINE_S = 0.5
HANDLER_S = 1.5  # a request's own work may outlast the header deadline


async def slow_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await asyncio.sleep(HANDLER_S if scope["path"] == "/slow" else 0)
    headers = [(b"content-length", b"4")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"done"})


@pytest.fixture
def port(served: tuple[int, uvicorn.Server]) -> int:
    return served[0]


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[int, uvicorn.Server]]:
    monkeypatch.setattr(_protocol, "HEADER_SECONDS", DEADLINE_S)
    chosen = free_port()
    config = uvicorn.Config(
        slow_app, port=chosen, http=HeaderDeadlineProtocol, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield chosen, server
    server.should_exit = True
    thread.join(10)


def _read_until_closed(sock: socket.socket, limit_s: float = 5.0) -> tuple[bytes, float]:
    """What the server sent until it closed the connection, and when it closed it."""
    started, received = time.monotonic(), b""
    sock.settimeout(limit_s)
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(4096):
            received += chunk
    return received, time.monotonic() - started


def test_serve_runs_the_protocol_with_the_header_deadline() -> None:
    assert uvicorn_options(ServerConfig())["http"] is HeaderDeadlineProtocol


def test_idle_connections_outlive_a_load_balancers_idle_timeout() -> None:
    """uvicorn's 5 s closed idle connections a balancer (60 s idle) was about to reuse: an
    occasional 502 on the request sent over it."""
    assert uvicorn_options(ServerConfig())["timeout_keep_alive"] == 75
    assert uvicorn_options(ServerConfig(keep_alive_timeout_s=2.2))["timeout_keep_alive"] == 3


def test_headers_dripped_past_the_deadline_get_a_408_json_and_the_connection_closes(
    port: int,
) -> None:
    """Each byte used to cancel uvicorn's only timer: a connection dripping its headers was
    held for good before the app saw a request."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /v1/rerank HTTP/1.1\r\nHost: x\r\n")
        for _ in range(3):  # still sending, but the headers never end
            time.sleep(DEADLINE_S / 3)
            with contextlib.suppress(OSError):
                sock.sendall(b"X-A: b\r\n")
        received, _ = _read_until_closed(sock)
    head, _, body = received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), received
    error = json.loads(body)
    assert error["error_type"] == "request_timeout"
    assert "request headers did not arrive within 0.5 s" in error["message"]


def test_a_connection_never_written_to_is_closed_quietly(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        received, waited = _read_until_closed(sock)
    assert received == b""
    assert waited < DEADLINE_S + 3


def test_a_request_slower_than_the_deadline_is_answered_and_the_next_one_timed(
    port: int,
) -> None:
    """The deadline covers headers only: a request's work runs as long as it needs, and on a
    kept-alive connection the next request's headers get a deadline of their own."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(10)
        sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b"done") and (chunk := sock.recv(4096)):
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /fast HTTP/1.1\r\n")
        received, _ = _read_until_closed(sock)
    assert received.startswith(b"HTTP/1.1 408"), received


def test_an_answer_in_flight_when_the_server_stops_says_it_closes_the_connection(
    served: tuple[int, uvicorn.Server],
) -> None:
    """uvicorn finished a request in flight at SIGTERM and closed its connection, without
    ``Connection: close`` in the answer: a keep-alive client reused the closing connection."""
    port, server = served
    with socket.create_connection(("127.0.0.1", port)) as early:
        early.sendall(b"GET /fast HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while not answer.endswith(b"done"):
            answer += early.recv(4096)
        assert b"connection: close" not in answer.lower()  # served before the stop
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(HANDLER_S / 3)  # the request is in flight
            server.should_exit = True
            received, _ = _read_until_closed(sock)
    head = received.split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 200") and received.endswith(b"done")
    assert b"\r\nconnection: close" in head
