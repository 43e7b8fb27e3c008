"""The HTTP request a thread works for, as context variables.

The server sets them for the threads that serve a request (``server._engines.run_in_thread``,
``server.app.RequestLifetime``); the batcher's model calls and a retriever tree's searches read
them, so the work of a request that is over (its deadline passed, its client left) stops at the
next step rather than running on for nobody. The library used directly sets neither: nothing
stops.
"""

from __future__ import annotations

import contextvars
import threading
import time

from semrank.errors import ClientDisconnectedError, DeadlineExceededError

# The deadline (time.monotonic seconds) of the request a thread is serving.
REQUEST_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "semrank_request_deadline", default=None
)
# Set once the request is over (its handler returned, failed or was cancelled, or its client
# disconnected); threads inherit it with the request's context.
REQUEST_GONE: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "semrank_request_gone", default=None
)


def check_request_wanted(step: str) -> None:
    """Raise if the request this thread serves is over, before ``step`` (named in the error,
    which only ends the thread: the client has its 504, or has left)."""
    deadline = REQUEST_DEADLINE.get()
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceededError(f"the request deadline passed before {step}")
    gone = REQUEST_GONE.get()
    if gone is not None and gone.is_set():
        raise ClientDisconnectedError(f"the request ended before {step}")
