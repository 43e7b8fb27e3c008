"""uvicorn's HTTP/1.1 protocol with a deadline for each request's headers.

uvicorn times out only a keep-alive connection left idle after a response, and any byte received
cancels that timer. A connection opened and never written to, or one sent a header byte every
few seconds, was held for good before the app saw a request (no key check, no body deadline),
and enough of them stopped the server accepting others. Here the headers of each request must
be complete within ``HEADER_SECONDS`` of the connection opening or the last response ending;
otherwise the connection is closed, with a 408 where part of a request had arrived (as nginx's
``client_header_timeout`` does).
"""

from __future__ import annotations

import asyncio
import json
import logging
from http import HTTPStatus
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from semrank.errors import BodyTimeoutError, http_status_for
from semrank.server._errors import error_body
from semrank.server._logging import LOGGER_NAME, log_fields

logger = logging.getLogger(LOGGER_NAME)
HEADER_SECONDS = 30.0


def _timeout_response() -> bytes:
    error = BodyTimeoutError(
        f"the request headers did not arrive within {HEADER_SECONDS:.3g} s; send each request "
        "whole and at once (behind a slow link, let a proxy in front of the server buffer it)"
    )
    body = json.dumps(error_body(str(error), error.error_type)).encode()
    status = HTTPStatus(http_status_for(error))  # the one table's status, 408
    head = (
        f"HTTP/1.1 {status.value} {status.phrase}\r\ncontent-type: application/json\r\n"
        f"connection: close\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class HeaderDeadlineProtocol(H11Protocol):
    """``H11Protocol`` whose connections wait at most ``HEADER_SECONDS`` for a request's headers."""

    header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._awaiting_headers():
            self._disarm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._awaiting_headers():  # keep-alive: the next request's headers are timed too
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def shutdown(self) -> None:
        # On SIGTERM uvicorn lets a request in flight finish, then closes its connection, but
        # the answer did not say so: a keep-alive client or balancer sent its next request on
        # a connection about to close, and saw it fail instead of going to another replica.
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            cycle.default_headers = [*cycle.default_headers, (b"connection", b"close")]
        super().shutdown()

    def _awaiting_headers(self) -> bool:
        """No request under way: its headers are not complete, or none has begun."""
        return self.conn.their_state is h11.IDLE and (
            self.cycle is None or self.cycle.response_complete
        )

    def _arm_header_deadline(self) -> None:
        self._disarm_header_deadline()
        self.header_deadline = self.loop.call_later(HEADER_SECONDS, self._headers_late)

    def _disarm_header_deadline(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None

    def _headers_late(self) -> None:
        self.header_deadline = None
        if self.transport.is_closing() or not self._awaiting_headers():
            return
        started, _ = self.conn.trailing_data  # the part of a request's head received
        if started:  # a connection never written to (a client's spare one) is closed quietly
            client = "{}:{}".format(*self.client) if self.client else "unknown"
            logger.info(
                f"closed a connection from {client}: its request headers were not complete "
                f"within {HEADER_SECONDS:.3g} s",
                extra=log_fields(client=client, status=408),
            )
            self.transport.write(_timeout_response())
        self.transport.close()
