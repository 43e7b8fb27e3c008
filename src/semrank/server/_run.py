"""Running the app under uvicorn (what ``semrank serve`` calls)."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import socket
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from semrank._process import end_as_signal
from semrank.errors import BackendUnavailableError, InvalidInputError, StorageError
from semrank.server._logging import LOGGER_NAME, configure_logging, log_fields
from semrank.server._metrics import MULTIPROC_ENV
from semrank.server.app import WORKER_FAILED, WORKER_STARTED
from semrank.server.config import ENV_API_KEYS, ENV_CONFIG_JSON, ServerConfig, parse_api_keys

logger = logging.getLogger(LOGGER_NAME)


def run_server(config: ServerConfig) -> None:
    """Serve until SIGINT/SIGTERM; then finish in-flight requests (up to shutdown_timeout_s)."""
    import uvicorn

    configure_logging(config.log_level, json_lines=config.log_json)  # first: the checks log
    raise_open_files_limit()
    check_before_start(config)
    log_auth(config, os.environ)
    options = uvicorn_options(config)
    if config.workers > 1:
        _run_workers(config, options)
        return
    from semrank.server._engines import load_rerankers
    from semrank.server.app import create_app

    # Loaded before uvicorn: a model that fails to load (a cut download, a broken tokenizer)
    # is then one error line and exit 3, not uvicorn's traceback of the app's startup.
    app = create_app(config, rerankers=load_rerankers(config))
    # uvicorn.Server, not uvicorn.run: run() swallowed the SIGINT its server raises again after
    # the drain, and Ctrl-C ended with 0; now it ends as 130, as --workers N does.
    server = uvicorn.Server(uvicorn.Config(app, **options))
    server.run()
    if not server.started:
        raise BackendUnavailableError(
            f"the server did not start on {config.host}:{config.port} (the log above says why)"
        )


def uvicorn_options(config: ServerConfig) -> dict[str, Any]:
    from semrank.server._protocol import HeaderDeadlineProtocol

    return {
        "host": config.host,
        "port": config.port,
        "http": HeaderDeadlineProtocol,  # uvicorn's h11 protocol, with a deadline for headers
        "log_config": None,  # keep the JSON handler configure_logging installed
        "log_level": config.log_level,
        "access_log": False,  # the app writes its own access log, with request ids
        # uvicorn takes whole seconds (and 0 as "none", which would drop the drain entirely).
        "timeout_graceful_shutdown": max(1, math.ceil(config.shutdown_timeout_s)),
        "timeout_keep_alive": max(1, math.ceil(config.keep_alive_timeout_s)),
        "lifespan": "on",
    }


# The soft open-files limit under an unlimited hard one (macOS: soft 256, hard unlimited):
# macOS refuses a soft RLIMIT_NOFILE above OPEN_MAX, 10,240.
OPEN_FILES_UNDER_NO_HARD_LIMIT = 10_240


def raise_open_files_limit() -> None:
    """The soft limit on open files up to the hard one: each connection and each open index
    (up to about 12) takes descriptors, and the usual soft 1,024 ran out at 85-200 indexes,
    after which the server could not accept connections. Workers inherit it."""
    try:
        import resource
    except ImportError:  # not on Windows
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES_UNDER_NO_HARD_LIMIT if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    with contextlib.suppress(ValueError, OSError):  # refused: the soft limit stays as it was
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _run_workers(config: ServerConfig, options: dict[str, Any]) -> None:
    """``--workers N``: uvicorn's supervisor over N processes that each build their own app
    (and load their own models) from the config handed over in the environment."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        """Remembers the signal that stopped it: uvicorn's returns normally after one."""

        stopped_by: signal.Signals | None = None

        def handle_int(self) -> None:
            self.stopped_by = signal.SIGINT
            super().handle_int()

        def handle_term(self) -> None:
            self.stopped_by = signal.SIGTERM
            super().handle_term()

    os.environ[ENV_CONFIG_JSON] = config.to_json()
    try:
        with _metrics_folder(config.workers) as shared:
            os.environ[MULTIPROC_ENV] = shared  # one /metrics over every worker
            uvicorn_config = uvicorn.Config(
                "semrank.server.app:app_from_environment",
                factory=True,
                workers=config.workers,
                **options,
            )
            with uvicorn_config.bind_socket() as sock:
                supervisor = Supervisor(uvicorn_config, sockets=[sock])
                supervisor.run()
            check_workers_started(Path(shared), config.workers, supervisor.stopped_by)
    finally:  # nothing later in this process may read the folder that is gone
        os.environ.pop(MULTIPROC_ENV, None)
        os.environ.pop(ENV_CONFIG_JSON, None)
    if supervisor.stopped_by is not None:  # end as that signal, as one worker does (143: TERM)
        end_as_signal(supervisor.stopped_by)


def _metrics_folder(workers: int) -> tempfile.TemporaryDirectory[str]:
    """The folder the workers share their metrics in; none to be had (no writable /tmp, as in
    a container with a read-only root) was Python's bare "No usable temporary directory"."""
    try:
        return tempfile.TemporaryDirectory(prefix="semrank-metrics-")
    except OSError as exc:
        raise StorageError(
            f"--workers {workers} keeps its metrics in a temporary folder, and none can be made "
            f"here ({exc.strerror or exc}): mount a writable /tmp or set TMPDIR (one worker "
            "needs none)"
        ) from exc


def check_workers_started(
    shared: Path, workers: int, stopped_by: signal.Signals | None = None
) -> None:
    """After uvicorn's parent returned (it returns normally, a success to a service manager,
    when a worker failed to start): an error if some worker failed and none started, or if
    one failed and no signal stopped the server: uvicorn stops every worker when one fails
    to start (a disk filled by the workers' concurrent model exports), and the server that
    stopped so exited 0 without a word. A stop while they were starting (SIGTERM during the
    model load) left no failure: no error."""
    started = any(shared.glob(f"{WORKER_STARTED}*"))
    failed = len(list(shared.glob(f"{WORKER_FAILED}*")))
    if failed and not started:
        raise BackendUnavailableError(
            f"none of the {workers} workers started (the log above says why)"
        )
    if failed and stopped_by is None:
        raise BackendUnavailableError(
            f"{failed} of the {workers} workers failed to start, so the server stopped the "
            "others too (the log above says why)"
        )


def check_before_start(config: ServerConfig) -> None:
    """Name a bad backend, device or model before uvicorn starts: uvicorn reports an error
    raised while the app starts up as a traceback."""
    from semrank.models import resolve
    from semrank.runtime import require_device, resolve_backend

    backend = resolve_backend(config.backend, config.device)
    require_device(backend)
    for entry in config.models:
        check_runnable(resolve(entry.source), backend.backend)
    check_address(config.host, config.port)
    if config.otlp_endpoint is not None:
        from semrank._tracing import require_otel

        require_otel()
    if config.postgres_dsn is not None:
        check_store(config.postgres_dsn)
    else:
        check_index_home(config.index_home)


def check_index_home(index_home: str | None) -> None:
    """A file given as the index home, or one the server may not write, was found only on the
    first index request (after a ready probe said yes): the pod never failed. A home named
    (--index-home, $SEMRANK_HOME) that cannot be written now fails the start; the default one
    only warns, since a server that only re-ranks (a read-only container root) needs none: its
    index requests then answer 503."""
    from semrank.errors import StorageError
    from semrank.store import writable_home
    from semrank.store._registry import HOME_ENV

    try:
        writable_home(index_home, flag="--index-home")
    except StorageError as exc:
        if index_home or os.environ.get(HOME_ENV):
            raise
        logger.warning(f"{exc}; until then, requests to the index routes get a 503")


def check_store(dsn: str) -> None:
    """Reach the PostgreSQL database once before the models load: a wrong DSN, password or a
    missing extension then fails at once with its cause, not on the first index request."""
    from semrank.store import list_indexes
    from semrank.store.postgres import redact

    found = list_indexes(store=dsn)
    logger.info(
        f"indexes kept in PostgreSQL {redact(dsn)} ({len(found)} there)",
        extra=log_fields(store="postgresql", indexes=len(found)),
    )


def check_runnable(model: Any, backend: str) -> None:
    """An architecture the ONNX exporter cannot build fails here, not as a traceback from inside
    uvicorn (the torch backend runs what transformers runs)."""
    from semrank.models.loading import BLEND_ARCHITECTURE
    from semrank.runtime.onnx_export import architecture_of, read_config, uses_own_graph

    if backend.startswith("torch") or model.architecture == BLEND_ARCHITECTURE:
        return
    if uses_own_graph(model.path):  # its model.onnx runs as it is: nothing to export
        return
    architecture_of(read_config(model.path), model.path)


def check_address(host: str, port: int) -> None:
    """Bind the address once before the models load (minutes for a large one): a port in use
    or a host that is not this machine's then fails at once, naming the flag to change."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As uvicorn (asyncio) binds: on POSIX only, where it skips sockets lingering in
            # TIME_WAIT; on Windows it lets a bind share a port another program listens on.
            if os.name == "posix":
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise InvalidInputError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}): choose another --port, "
            "stop what holds it, or give a --host of this machine"
        ) from exc


def log_auth(config: ServerConfig, environ: Mapping[str, str]) -> None:
    """Say at startup whether API-key auth is on and with how many keys (never the keys): an
    empty SEMRANK_API_KEYS (a template that forgot the value) would otherwise turn it off
    silently."""
    raw = environ.get(ENV_API_KEYS)
    if raw is not None and not parse_api_keys(raw):
        effect = "only the --api-key keys apply" if config.api_keys else "it requires none"
        logger.warning(
            f"{ENV_API_KEYS} is set but holds no keys, so {effect}; give it comma-separated "
            "keys, or unset it",
            extra=log_fields(auth_env=ENV_API_KEYS),
        )
    count = len(config.api_keys)
    if count:
        plural = "" if count == 1 else "s"
        logger.info(
            f"API-key auth is on ({count} key{plural})",
            extra=log_fields(auth=True, api_keys=count),
        )
    else:
        logger.info(
            f"API-key auth is off: every client is served without a key (set --api-key or "
            f"{ENV_API_KEYS} to require one)",
            extra=log_fields(auth=False, api_keys=0),
        )
