"""Optional API keys: ``Authorization: Bearer <key>`` when the server was started with keys."""

from __future__ import annotations

import hmac

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
        return
    if credentials is None or not credentials.credentials:
        raise AuthenticationError(
            "this server needs an API key: send the header 'Authorization: Bearer <key>'"
        )
    offered = credentials.credentials.encode()
    # Compare against every key in constant time, so timing tells nothing about the keys.
    matches = [hmac.compare_digest(offered, key.encode()) for key in keys]
    if not any(matches):
        raise AuthenticationError("the API key is not accepted by this server")


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
