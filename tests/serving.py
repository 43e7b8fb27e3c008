"""A real ``semrank serve`` process for tests: free localhost port, bounded wait for /health."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest


def stdin_closed(command: list[str]) -> list[str]:
    """``command`` run with its stdin closed, as `cmd <&-` runs it: through the shell, since
    closing it in subprocess's preexec_fn is unsafe while the test process has threads."""
    return ["sh", "-c", 'exec "$@" <&-', "sh", *command]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def semrank_serve(
    log_path: Path, *flags: str, wait_s: float = 60.0
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start ``semrank serve`` on 127.0.0.1 and wait (up to ``wait_s``) until it answers /health."""
    port = free_port()
    command = [sys.executable, "-m", "semrank.cli", "serve", "--port", str(port), *flags]
    env = {k: v for k, v in os.environ.items() if k != "SEMRANK_API_KEYS"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(int(wait_s / 0.25)):  # the model loads slowly on a busy machine
            if process.poll() is not None:
                pytest.fail(f"semrank serve exited early:\n{log_path.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.25)
        else:
            pytest.fail(f"semrank serve did not come up:\n{log_path.read_text()}")
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def live_server(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn in a thread on a free localhost port; its base URL."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(400):  # bounded wait for startup (model already loaded)
            if server.started:
                break
            time.sleep(0.025)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{server.config.port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextlib.asynccontextmanager
async def app_client(
    tmp_path: Path, reranker: Any, **limits: int
) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client of the app run in this process (``reranker`` as its model "minilm",
    its index home in ``tmp_path``, ``limits`` ServerConfig's); open indexes forgotten after."""
    pytest.importorskip("bm25s")
    from semrank.pipeline import forget_open_indexes
    from semrank.server import ServerConfig, create_app

    config = ServerConfig(index_home=str(tmp_path), **limits)
    app = create_app(config, rerankers={"minilm": reranker})
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http
    forget_open_indexes()
