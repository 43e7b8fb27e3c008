"""Optional API keys: ``Authorization: Bearer <key>`` when the server was started with keys
(or ``ApiKey <key>``, as Elasticsearch's clients send one)."""

from __future__ import annotations

import hmac
import ipaddress
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from semrank.errors import AuthenticationError

bearer = HTTPBearer(
    auto_error=False, description="one of the keys from --api-key / SEMRANK_API_KEYS"
)


async def require_api_key(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> None:
    keys: frozenset[str] = request.app.state.config.api_keys
    if not keys:
        _refuse_a_rebound_page(request)
        return
    sent = credentials.credentials if credentials else _elasticsearch_key(request)
    if not sent:
        raise AuthenticationError(
            "this server needs an API key: send the header 'Authorization: Bearer <key>' "
            "(Elasticsearch's clients: 'ApiKey <key>', their api_key option)"
        )
    offered = sent.encode()
    # Compare against every key in constant time, so timing tells nothing about the keys.
    matches = [hmac.compare_digest(offered, key.encode()) for key in keys]
    if not any(matches):
        raise AuthenticationError("the API key is not accepted by this server")


def _elasticsearch_key(request: Request) -> str:
    """The key of ``Authorization: ApiKey <key>`` (elasticsearch-py's ``api_key="<key>"``)."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "apikey" else ""


def _refuse_a_rebound_page(request: Request) -> None:
    """A server without keys answers browser pages only from loopback or an IP address: a page
    on a domain its owner points at 127.0.0.1 (DNS rebinding) is same-origin to the browser, so
    no preflight stopped it and its Origin matched the Host it sent."""
    origin = request.headers.get("origin")
    if origin is None:  # not a browser page: curl, SDKs, proxies
        return
    host = urlsplit(origin).hostname or ""
    if host == "localhost" or _is_ip(host):
        return
    raise AuthenticationError(
        f"a browser page at {origin!r} sent this request, and this server has no API keys, so "
        "it answers pages only from localhost or an IP address; start it with --api-key "
        "(SEMRANK_API_KEYS) to be called from pages on other names"
    )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def key_refusal(request: Request) -> AuthenticationError | None:
    """The 401 a request to a keyed route would get, for answers made before the route's
    dependencies run: FastAPI reads and parses the body first, so a body that is not JSON got
    its 400/422 (and a description of the problem) before the key was asked for."""
    route = request.scope.get("route")
    dependencies = getattr(getattr(route, "dependant", None), "dependencies", ())
    if not any(dependency.call is require_api_key for dependency in dependencies):
        return None
    try:
        await require_api_key(request, await bearer(request))
    except AuthenticationError as refused:
        return refused
    return None
