"""HTTP handlers of the user service: parse, call one use case, answer."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response

from shop.common.auth import SigningKeys
from shop.common.deps import AdminDep, DbDep, PageDep, PrincipalDep
from shop.common.errors import NotFound
from shop.common.openapi import JwksRead, problems
from shop.common.responses import json_response
from shop.common.types import MAX_ID, JsonObject
from shop.common.wire import Wire, iso_z
from shop.users import service
from shop.users.limits import AuthLimits
from shop.users.schemas import (
    LoginRequest,
    RefreshRequest,
    TokenResponse,
    UserCreate,
    UserPage,
    UserRead,
)
from shop.users.service import Passwords
from shop.users.settings import UsersSettings

router = APIRouter(prefix="/api/v1/users", tags=["users"])
keys_router = APIRouter(tags=["keys"])
RATE_LIMITED = problems(
    429, descriptions={429: "Too many attempts from this client or for this account (Retry-After)"}
)


def _passwords(request: Request) -> Passwords:
    passwords: Passwords = request.app.state.passwords
    return passwords


def _keys(request: Request) -> SigningKeys:
    keys: SigningKeys = request.app.state.signing_keys
    return keys


def _settings(request: Request) -> UsersSettings:
    settings: UsersSettings = request.app.state.settings
    return settings


def _limits(request: Request) -> AuthLimits:
    limits: AuthLimits = request.app.state.auth_limits
    return limits


def _client(request: Request) -> str:
    # The peer address; behind a proxy, uvicorn sets it from X-Forwarded-For for the proxies
    # listed in FORWARDED_ALLOW_IPS (never from a header an outside client controls).
    return request.client.host if request.client else "unknown"


PasswordsDep = Annotated[Passwords, Depends(_passwords)]
LimitsDep = Annotated[AuthLimits, Depends(_limits)]
ClientDep = Annotated[str, Depends(_client)]
KeysDep = Annotated[SigningKeys, Depends(_keys)]
SettingsDep = Annotated[UsersSettings, Depends(_settings)]
UserId = Annotated[int, Path(ge=1, le=MAX_ID)]


# The seed's users have always written their times as pydantic does (Z for UTC).
USER = Wire(UserRead, datetimes=iso_z)


@router.post(
    "/register",
    status_code=201,
    response_model=UserRead,
    responses={**problems(409, descriptions={409: "Username or email taken"}), **RATE_LIMITED},
)
async def register(
    user_in: UserCreate, db: DbDep, passwords: PasswordsDep, limits: LimitsDep, client: ClientDep
) -> Response:
    user = await service.register(
        db=db, passwords=passwords, limits=limits, client=client, user_in=user_in
    )
    return json_response(USER(user), 201)


@router.post(
    "/login",
    response_model=TokenResponse,
    responses={**problems(401, descriptions={401: "Wrong username or password"}), **RATE_LIMITED},
)
async def login(
    body: LoginRequest,
    db: DbDep,
    passwords: PasswordsDep,
    keys: KeysDep,
    settings: SettingsDep,
    limits: LimitsDep,
    client: ClientDep,
) -> TokenResponse:
    return await service.login(
        db=db,
        passwords=passwords,
        keys=keys,
        settings=settings,
        limits=limits,
        client=client,
        username=body.username,
        password=body.password,
    )


@router.post(
    "/refresh",
    response_model=TokenResponse,
    summary="New tokens for a refresh token (which is then used up)",
    responses=problems(401, descriptions={401: "Invalid, expired, used or revoked refresh token"}),
)
async def refresh(
    body: RefreshRequest, db: DbDep, keys: KeysDep, settings: SettingsDep
) -> TokenResponse:
    return await service.refresh(
        db=db, keys=keys, settings=settings, refresh_token=body.refresh_token
    )


@router.post(
    "/logout",
    status_code=204,
    summary="Revoke the refresh token and every token refreshed from the same login",
    response_class=Response,
)
async def logout(body: RefreshRequest, db: DbDep) -> Response:
    await service.logout(db=db, refresh_token=body.refresh_token)
    return Response(status_code=204)


@router.get("", response_model=UserPage, summary="List users (admin)", responses=problems(401, 403))
async def list_users(db: DbDep, page: PageDep, _: AdminDep) -> Response:
    rows, total = await service.list_users(db=db, limit=page.limit, offset=page.offset)
    return page.response([USER(r) for r in rows], total)


# `:int`: only digits reach this route, so /users/login is never read as a user id (a GET of
# it answers 405 with Allow: POST). The only path with literal siblings; the route's label in
# metrics and traces is "/api/v1/users/{user_id:int}" (FastAPI's route.path).
@router.get("/{user_id:int}", response_model=UserRead, responses=problems(401, 404))
async def get_user(user_id: UserId, db: DbDep, principal: PrincipalDep) -> Response:
    if not principal.may_access_user(user_id):
        raise NotFound(f"User {user_id} does not exist.")  # do not reveal other users
    return json_response(USER(await service.get_user(db=db, user_id=user_id)))


@keys_router.get(
    "/.well-known/jwks.json", summary="Public keys that verify user tokens", response_model=JwksRead
)
async def jwks(keys: KeysDep) -> JsonObject:
    return keys.jwks()
