"""Server-rendered storefront pages, each built from one GraphQL operation run in-process.

Safety, in one place: the tokens live in HttpOnly, SameSite=Lax cookies that only this
process sets; every POST must carry the ``csrf_token`` form field equal to the ``shop_csrf``
cookie (double submit: another site can make a browser send the cookie but cannot read it);
Jinja2 escapes every value; the Content-Security-Policy (``PAGES_CSP``) allows scripts and
styles from this origin only. An access token lives 15 minutes; when its cookie has expired
and the refresh cookie is there, ``refresh_session`` trades the (single-use) refresh token for a
new pair before the page runs, so a visitor stays logged in as long as the refresh token lasts.

This module is what every page shares (``pages`` and ``admin`` hold the routes): the GraphQL
run in-process, the cart cookie, the CSRF check, the session's cookies and their refresh,
rendering, and the visitor in the header.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, TypedDict

import jinja2
from fastapi import Form, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from starlette.middleware.base import RequestResponseEndpoint
from strawberry.types import ExecutionResult

from shop.storefront.cart import COOKIE as CART
from shop.storefront.cart import CartError, CookieCartStore
from shop.storefront.clients import ApiError
from shop.storefront.graphql import Context, error_code
from shop.storefront.limits import CART_MAX_QUANTITY

PAGES_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)
ACCESS, REFRESH, CSRF = "shop_access", "shop_refresh", "shop_csrf"
# Autoescape on for every template, whatever its name: a product called
# `<img src=x onerror=alert(1)>` is text.
templates = Jinja2Templates(
    env=jinja2.Environment(
        loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True
    )
)


def when(value: str | None) -> str:
    """An ISO 8601 time as a person reads it, in UTC: "6 December 2026, 01:25 UTC"."""
    if not value:
        return ""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return f"{moment.day} {moment:%B %Y, %H:%M} UTC"


templates.env.filters["when"] = when
templates.env.globals["cart_max_quantity"] = CART_MAX_QUANTITY


class CsrfRejected(Exception):
    """A state change without a matching CSRF token."""


# A GraphQL result's data as strawberry gives it: the query's shape, read by the templates.
GraphQLData = dict[str, Any]


async def execute(request: Request, query: str, **variables: object) -> ExecutionResult:
    """Run one operation as the visitor, with their cart."""
    context = Context(
        request.app.state.backend,
        request.app.state.verifier,
        access_token(request),
        carts=request.app.state.carts,
        cookie_cart=cookie_cart(request),
    )
    result: ExecutionResult = await request.app.state.schema.execute(
        query, variable_values=variables, context_value=context
    )
    return result


async def gql(
    request: Request, query: str, **variables: object
) -> tuple[GraphQLData | None, list[tuple[str, str]]]:
    """Run one operation as the visitor; returns (data, errors as (code, message))."""
    result = await execute(request, query, **variables)
    errors = [(error_code(e), e.message) for e in result.errors or []]
    return result.data, errors


def cookie_cart(request: Request) -> CookieCartStore:
    """This request's cookie cart (one per request, written back by ``save_cookie_cart``)."""
    store: CookieCartStore | None = getattr(request.state, "cookie_cart", None)
    if store is None:
        secure = request.app.state.settings.is_production
        store = request.state.cookie_cart = CookieCartStore(
            request.cookies.get(CART), secure=secure
        )
    return store


async def save_cookie_cart(request: Request, call_next: RequestResponseEndpoint) -> Response:
    """Middleware: a cookie cart changed by the page or GraphQL goes out with the response."""
    response = await call_next(request)
    store: CookieCartStore | None = getattr(request.state, "cookie_cart", None)
    if store is not None:
        store.apply(response)
    return response


def _csrf(request: Request) -> str:
    token = request.cookies.get(CSRF) or getattr(request.state, "csrf", None)
    if token is None:
        token = request.state.csrf = secrets.token_urlsafe(24)
    return token


def check_csrf(request: Request, submitted: str | None) -> None:
    cookie = request.cookies.get(CSRF)
    if not cookie or not submitted or not secrets.compare_digest(cookie, submitted):
        raise CsrfRejected


class _CookieArgs(TypedDict):
    httponly: bool
    samesite: Literal["lax"]
    secure: bool
    path: str


def _cookie_args(request: Request) -> _CookieArgs:
    secure: bool = request.app.state.settings.is_production
    return {"httponly": True, "samesite": "lax", "secure": secure, "path": "/"}


def render(request: Request, template: str, status: int = 200, **values: object) -> Response:
    token = _csrf(request)
    values.setdefault("me", getattr(request.state, "me", None))
    count = getattr(request.state, "cart_count", None)
    if count is None:  # not signed in, or the page did not look: the cookie's
        count = sum(cookie_cart(request).held().values())
    values.setdefault("cart_count", count)
    response: Response = templates.TemplateResponse(
        request,
        template,
        {"csrf": token, **values},
        status_code=status,
    )
    if request.cookies.get(CSRF) != token:
        response.set_cookie(CSRF, token, **_cookie_args(request))
    return response


def redirect(to: str) -> RedirectResponse:
    return RedirectResponse(to, status_code=303)


def access_token(request: Request) -> str | None:
    """The visitor's access token: refreshed for this request, else its cookie's."""
    refreshed: str | None = getattr(request.state, "access_token", None)
    return refreshed or request.cookies.get(ACCESS)


def set_tokens(request: Request, response: Response, tokens: dict[str, Any]) -> None:
    args = _cookie_args(request)
    response.set_cookie(ACCESS, tokens["access_token"], max_age=tokens["expires_in"], **args)
    if tokens.get("refresh_token"):
        response.set_cookie(REFRESH, tokens["refresh_token"], **args)


async def refresh_session(request: Request, call_next: RequestResponseEndpoint) -> Response:
    """Middleware: an expired access cookie with a refresh cookie beside it gets a new pair
    (the user service's /refresh); a refused refresh token logs the visitor out."""
    refresh = request.cookies.get(REFRESH)
    if ACCESS in request.cookies or not refresh or not _is_page(request.url.path):
        return await call_next(request)
    try:
        tokens = await request.app.state.backend.call(
            "users", "POST", "/api/v1/users/refresh", json={"refresh_token": refresh}
        )
    except ApiError as exc:
        response = await call_next(request)
        if exc.code in ("UNAUTHENTICATED", "BAD_USER_INPUT"):  # revoked, used or expired
            response.delete_cookie(REFRESH, path="/")
        return response
    request.state.access_token = tokens["access_token"]
    response = await call_next(request)
    set_tokens(request, response, tokens)
    return response


def _is_page(path: str) -> bool:
    # Not the API, GraphQL (bearer tokens), static files or logout (which revokes the token).
    return not path.startswith(("/graphql", "/static/", "/health", "/metrics", "/logout"))


async def current_user(request: Request) -> Any:
    """Who the visitor is (``me``), and how many items their cart holds, for the header."""
    if access_token(request) is None:
        return None
    data, _ = await gql(request, "{ me { id username role } }")
    request.state.me = me = (data or {}).get("me")
    if me is not None:
        store = request.app.state.carts.of(user_id=int(me["id"]), cookie=cookie_cart(request))
        try:
            request.state.cart_count = sum((await store.load()).values())
        except CartError:
            request.state.cart_count = 0  # the cart page says why
    return me


CsrfField = Annotated[str | None, Form()]
