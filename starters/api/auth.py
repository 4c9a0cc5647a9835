"""Bearer-token authentication and role checks.

Each token names one person and one role (``settings.api_tokens``). The person is what the deal
records as the approver, reviewer or operator, so identity never comes from a request body.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from runtime.settings import ApiPrincipal, Role
from starters.api.problems import Problem

bearer = HTTPBearer(auto_error=False, description="An API token from QTC_API_TOKENS")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="qtc"'}


def principal_for(token: str, tokens: Mapping[str, ApiPrincipal]) -> ApiPrincipal | None:
    """The principal a token belongs to; every configured token is compared in constant time."""
    found: ApiPrincipal | None = None
    presented = token.encode()
    for known, principal in tokens.items():
        if hmac.compare_digest(presented, known.encode()):
            found = principal
    return found


async def authenticated(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> ApiPrincipal:
    """The caller's principal, or 401 with a Bearer challenge."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Problem(401, "unauthorized", "A bearer token is required.", headers=_CHALLENGE)
    principal = principal_for(credentials.credentials, request.app.state.qtc.settings.api_tokens)
    if principal is None:
        raise Problem(
            401,
            "unauthorized",
            "The bearer token is not valid.",
            headers={"WWW-Authenticate": 'Bearer realm="qtc", error="invalid_token"'},
        )
    return principal


def require_role(*roles: Role) -> Callable[..., Awaitable[ApiPrincipal]]:
    """A dependency that admits only callers holding one of ``roles`` (403 otherwise)."""

    async def check(principal: Annotated[ApiPrincipal, Depends(authenticated)]) -> ApiPrincipal:
        if principal.role not in roles:
            raise Problem(
                403,
                "forbidden",
                f"This action needs the role {' or '.join(roles)}; "
                f"your token has {principal.role}.",
            )
        return principal

    return check
