"""Structured logs: one JSON object per line (or key=value text), the request's fields merged in."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime

LOGGER_NAME = "semrank.server"
ACCESS_LOGGER_NAME = "semrank.server.access"
# The id of the request being served (set by the HTTP edge; request threads inherit it): every
# line logged while it is served carries it, the store's and the pipeline's lines included.
REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "semrank_request_id", default=None
)


def utc_time(record: logging.LogRecord) -> str:
    """When ``record`` was made, in UTC with its offset: local time without one was ambiguous
    (the hour repeated when daylight saving ends) and read differently on every host."""
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", ...fields}``; tracebacks go in ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, object] = {
            "ts": utc_time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(record_fields(record))
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger message key=value ...``: the same fields as the JSON lines."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return utc_time(record)  # the JSON lines' "ts"

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = record_fields(record)
        if not fields:
            return line
        # Values quoted as JSON where they hold spaces, so the line stays splittable.
        pairs = " ".join(f"{key}={_text_value(value)}" for key, value in fields.items())
        head, newline, rest = line.partition("\n")  # a traceback stays below the line
        return f"{head} {pairs}{newline}{rest}"


def record_fields(record: logging.LogRecord) -> dict[str, object]:
    """The fields a line adds to its message: the call's (``log_fields``), led by the id of the
    request being served where it names none. Lines the store or the pipeline logged while
    serving a request (a slow BM25 build) carried no id, so nothing tied them to its access line."""
    fields = getattr(record, "fields", None)
    fields = fields if isinstance(fields, dict) else {}
    request_id = REQUEST_ID.get()
    if request_id is None or "request_id" in fields:
        return fields
    return {"request_id": request_id, **fields}


# Left bare in key=value lines; anything else is JSON-quoted, so a path sent with %0A or a
# tab cannot start a forged log line.
_BARE = re.compile(r"[A-Za-z0-9_.:/@%+,=-]+")


def _text_value(value: object) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if _BARE.fullmatch(text) else json.dumps(text)


def configure_logging(level: str = "info", *, json_lines: bool = True) -> None:
    """Send semrank's and uvicorn's logs through one stderr handler (``semrank serve``)."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    # On the handler too: a library that sets its own logger's level (bm25s sets DEBUG) is
    # not filtered by the root's, and wrote a debug line per index build at --log-level warning.
    handler.setLevel(level.upper())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers[:] = []
        # The app writes its own access log (with request ids); uvicorn's would double it.
        uvicorn_logger.propagate = name != "uvicorn.access"


def logs_json_lines() -> bool:
    """Whether ``configure_logging`` set up JSON lines in this process (``semrank serve``)."""
    return any(isinstance(h.formatter, JsonFormatter) for h in logging.getLogger().handlers)


def log_fatal(message: str, exit_status: int) -> None:
    """The error that ends ``semrank serve`` as one JSON line: a log pipeline reading stderr as
    JSON could not parse the plain ``error: ...`` line, the one that says why a pod keeps
    restarting."""
    logging.getLogger(LOGGER_NAME).error(message, extra=log_fields(exit_status=exit_status))


def log_fields(**fields: object) -> dict[str, object]:
    """``extra=`` for a log call: the JSON formatter merges these into the line."""
    return {"fields": fields}
