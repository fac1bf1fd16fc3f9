"""FastAPI dependencies, each declared once as an ``Annotated`` alias."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends, Header, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shop.common.auth import Principal, TokenVerifier
from shop.common.context import user_id_var
from shop.common.db import Database
from shop.common.errors import Forbidden, Unauthorized
from shop.common.responses import JSONResponse, json_response
from shop.common.types import IDEMPOTENCY_KEY_MAX, PAGE_LIMIT_MAX, PAGE_OFFSET_MAX, Json

_bearer = HTTPBearer(auto_error=False, description="A JWT from POST /api/v1/users/login.")

# Every dependency is ``async def``: FastAPI runs a plain ``def`` (or a class) in the thread
# pool, a hand-off per request: the product service spent 0.66 ms of CPU per read with it
# and 0.45 ms without (bench/results/reference/first-bench/async-deps-*.json, docs/performance.md).


async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("A bearer token is required.")
    return await authenticate(request.app.state.verifier, credentials.credentials)


async def authenticate(verifier: TokenVerifier, token: str) -> Principal:
    """The token's principal (``Unauthorized`` if the verifier refuses it), recorded for the
    request's log lines; the lean routes (``shop.common.fastpath``) call it too."""
    principal = await verifier.verify(token)
    user_id_var.set(principal.user_id)
    return principal


async def require_admin(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if not principal.is_admin:
        raise Forbidden("This action needs the admin role.")
    return principal


async def require_privileged(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    if not principal.is_privileged:
        raise Forbidden("This action is for admins and internal services.")
    return principal


class PageParams:
    def __init__(self, limit: int = 20, offset: int = 0) -> None:
        self.limit, self.offset = limit, offset

    def response(self, items: Sequence[Json], total: int) -> JSONResponse:
        """The contract's list shape: ``{"items", "total", "limit", "offset"}``."""
        return json_response(
            {"items": items, "total": total, "limit": self.limit, "offset": self.offset}
        )


async def page_params(
    limit: Annotated[int, Query(ge=1, le=PAGE_LIMIT_MAX, description="Page size.")] = 20,
    offset: Annotated[int, Query(ge=0, le=PAGE_OFFSET_MAX, description="Items to skip.")] = 0,
) -> PageParams:
    return PageParams(limit, offset)


DbDep = Annotated[Database, Depends(get_db)]
PrincipalDep = Annotated[Principal, Depends(get_principal)]
AdminDep = Annotated[Principal, Depends(require_admin)]
PrivilegedDep = Annotated[Principal, Depends(require_privileged)]
PageDep = Annotated[PageParams, Depends(page_params)]
IdempotencyKeyDep = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=IDEMPOTENCY_KEY_MAX,
        description="Repeat a request safely: the same key and body return the first result.",
    ),
]
