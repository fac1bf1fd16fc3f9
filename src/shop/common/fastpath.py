"""Lean routes: a hand-written handler for the plain requests of one hot FastAPI route.

One class, ``LeanRoute``, for every hot route: the saga's three POSTs and the catalogue's two
reads (``shop.products.api``). Each reads its bounds from the declarations FastAPI's route
reads (``shop.common.types``: ``MAX_ID``, ``IDEMPOTENCY_KEY_MAX``, the page bounds) and calls
the same use case; tests/integration/test_lean_differential.py sends generated requests
both ways, the boundaries included, and compares the answers. The saga's three POSTs are
each one declaration (``hot_post``: its model, auth rule, Idempotency-Key and use case) from
which both routes are made, so neither can restate the other's rules.

The saga's three calls (placing an order, reserving its stock, creating and confirming its
payment) are each a POST with a small JSON body and a bearer token, and FastAPI's route
machinery (dependency solving, body and response models, its exception layers) was about as
much CPU as the use case itself in the order profile (docs/performance.md). A ``LeanRoute``
sits before FastAPI's routes and matches the route's method and path (integer path
parameters; no query string unless the route's ``query`` parser takes it). Its handler reads
the body and the headers itself, checked by the same pydantic model FastAPI would use, and
calls the same use case; any request it does not recognise as plain (a body that does not
validate, no bearer token, a header out of range) it hands back as is (``NotPlain``), and the
request is routed again past the lean route, to the FastAPI route, which owns the contract's
answers and the OpenAPI. A catalogue read's route declines its unusual requests earlier, in
its match (a query string ``page_query`` does not take), and they go to FastAPI directly.
A use case's ``Problem`` and a token the verifier refuses are answered by the app's
handlers, as from any route. The platform's middleware wraps both kinds: request id, access
log, metrics (under the same route template), the body limit.
tests/integration/test_lean_routes.py checks that both answer alike.

**The lean front** (``front``, used by ``shop.common.app.ServiceApp``): a request a lean route
matches does not go down FastAPI's stack at all (its error, telemetry and body-limit layers,
the exception middleware, the exit-stack middleware, the router) but straight from the app to
the platform's request middleware and then the route: the profile of an uncached product read
put those layers at about a fifth of its CPU (docs/performance.md, "The lean front"). What
they would have done for such a request is done here: an exception a handler of the app is
registered for (a ``Problem``, the database down) is answered by that handler, anything else
is the request middleware's 500; a request handed back (``NotPlain``) goes down the full
stack below the request middleware, exactly as from the router.
"""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar, cast

import orjson
from fastapi import APIRouter
from pydantic import BaseModel, ValidationError
from starlette.datastructures import State
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shop.common.auth import Principal
from shop.common.deps import IdempotencyKeyDep, PrincipalDep, PrivilegedDep, authenticate
from shop.common.metrics import LEAN_REQUESTS
from shop.common.middleware import RequestContextMiddleware
from shop.common.types import IDEMPOTENCY_KEY_MAX, MAX_ID

M = TypeVar("M", bound=BaseModel)
M_in = TypeVar("M_in", bound=BaseModel, contravariant=True)
# A handler gets the scope, the path's integer parameters (and ``query``, what the route's
# query parser made of the query string) and the body; it answers with an ASGI app, most
# often a Response (which is one).
Handler = Callable[[Scope, dict[str, Any], bytes], Awaitable[ASGIApp]]
QueryParser = Callable[[bytes], object | None]

_DEFERRED = "shop.lean_deferred"
_BELOW = "shop.lean_below"  # on the lean front: the app's stack below the request middleware
_PARAM = re.compile(r"\{([a-z_]+)\}")
# An id as the FastAPI routes take it (``Path(ge=1, le=MAX_ID)``), with no leading zero; at
# most MAX_ID's digits, and ``matches`` compares the value with MAX_ID itself.
_ID = f"([1-9][0-9]{{0,{len(str(MAX_ID)) - 1}}})"
_JSON = re.compile(r"^application/json\s*(;.*)?$", re.IGNORECASE)


class NotPlain(Exception):
    """Raised by a handler before it acts: the request is the FastAPI route's to answer."""


class LeanRoute(BaseRoute):
    """``method path`` (``{name}`` parameters are positive integers) answered by ``handler``.

    Without ``query`` a request with a query string is the FastAPI route's; with it, the
    parser sees the raw query string and returns None to leave the request to FastAPI, or
    the value the handler finds as ``params["query"]``. A GET's body is not read."""

    def __init__(
        self, method: str, path: str, handler: Handler, *, query: QueryParser | None = None
    ) -> None:
        self.path = path  # the metrics' route label, shared with the FastAPI route
        self.method = method
        self.handler = handler
        self.query = query
        self._reads_body = method != "GET"
        parts = _PARAM.split(path)  # literal, name, literal, ...
        self._names = parts[1::2]
        self._regex = re.compile(
            "".join(re.escape(p) if i % 2 == 0 else _ID for i, p in enumerate(parts)) + "$"
        )

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != self.method or _DEFERRED in scope:
            return Match.NONE, {}
        found = self._regex.match(scope["path"])
        if found is None:
            return Match.NONE, {}
        params: dict[str, Any] = {}
        for name, digits in zip(self._names, found.groups(), strict=True):
            value = int(digits)
            if value > MAX_ID:
                return Match.NONE, {}  # the FastAPI route answers the contract's 422
            params[name] = value
        if self.query is not None:
            query = self.query(scope["query_string"])
            if query is None:
                return Match.NONE, {}
            params["query"] = query
        elif scope["query_string"]:
            return Match.NONE, {}
        return Match.FULL, {"route": self, "path_params": params}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        if self._reads_body:
            read = await _read_body(receive)
            if read is None:
                return  # the client went away: nobody to answer
            body = read
        try:
            response = await self.handler(scope, scope["path_params"], body)
        except NotPlain:
            scope[_DEFERRED] = True
            below = scope.get(_BELOW) or scope["app"].router
            await below(scope, _replay(body, receive) if self._reads_body else receive, send)
            return
        await response(scope, receive, send)


async def _read_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def header(scope: Scope, name: bytes) -> str | None:
    """The request's ``name`` header (lower case), None if absent; NotPlain if repeated."""
    found = None
    for key, value in scope["headers"]:
        if key == name:
            if found is not None:
                raise NotPlain
            found = value
    return None if found is None else found.decode("latin-1")


def json_body(scope: Scope, body: bytes, model: type[M]) -> M:
    """The body as ``model``, if it is JSON the model accepts as it is (else NotPlain).

    Validated as FastAPI validates a body parameter (parsed, then the model in Python mode),
    so a body valid here is valid there; anything else is the FastAPI route's to answer."""
    content_type = header(scope, b"content-type")
    if content_type is not None and not _JSON.match(content_type):
        raise NotPlain
    try:
        return model.model_validate(orjson.loads(body))
    except (orjson.JSONDecodeError, ValidationError):
        raise NotPlain from None


def idempotency_key(scope: Scope) -> str | None:
    """The ``Idempotency-Key`` header, if any (NotPlain unless it is 1-255 characters)."""
    key = header(scope, b"idempotency-key")
    if key is not None and not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX:
        raise NotPlain
    return key


async def principal(scope: Scope) -> Principal:
    """The bearer token's principal; the verifier raises ``Unauthorized`` for a bad token,
    and a request without a bearer token is the FastAPI route's (NotPlain)."""
    authorization = header(scope, b"authorization")
    if authorization is None:
        raise NotPlain
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token or " " in token:
        raise NotPlain
    return await authenticate(scope["app"].state.verifier, token)


class UseCase(Protocol[M_in]):
    """What a hot POST does, whichever route took the request: the app's state, the caller,
    the validated body and the ``Idempotency-Key`` (None if absent or not declared)."""

    def __call__(
        self, *, state: State, principal: Principal, body: M_in, key: str | None
    ) -> Awaitable[Response]: ...


def hot_post(
    router: APIRouter,
    path: str,
    *,
    name: str,
    body: type[M],
    use_case: UseCase[M],
    privileged: bool = False,
    idempotent: bool = False,
    **route: Any,
) -> LeanRoute:
    """Declare a hot POST once: its FastAPI route, added to ``router`` (named ``name``, the
    OpenAPI's operation id; ``route`` is the rest of its OpenAPI: status code, response model,
    responses), and the returned lean route, made from the same declaration.

    ``body`` is the request's model; ``privileged``, whether only services and admins may call
    (else any caller with a valid token, whom the use case may still refuse); ``idempotent``,
    whether it takes an ``Idempotency-Key``. FastAPI's route takes them as dependencies
    (``PrivilegedDep`` or ``PrincipalDep``, ``IdempotencyKeyDep``), with the OpenAPI and every
    unusual request; the lean route checks the same things itself (``json_body``,
    ``idempotency_key``, ``principal``) and leaves anything else to it. The use case's
    docstring is the operation's description."""

    async def endpoint(request: Request, **params: Any) -> Response:
        return await use_case(
            state=request.app.state,
            principal=params["principal"],
            body=params["body"],
            key=params.get("key"),
        )

    parameters = [
        inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=body),
        inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request),
        inspect.Parameter(
            "principal",
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            annotation=PrivilegedDep if privileged else PrincipalDep,
        ),
    ]
    if idempotent:
        parameters.append(
            inspect.Parameter(
                "key",
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=IdempotencyKeyDep,
                default=None,
            )
        )
    endpoint.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    endpoint.__name__ = endpoint.__qualname__ = name
    endpoint.__doc__ = use_case.__doc__
    router.add_api_route(path, endpoint, methods=["POST"], name=name, **route)

    async def lean(scope: Scope, _: dict[str, Any], raw: bytes) -> Response:
        model = json_body(scope, raw, body)
        key = idempotency_key(scope) if idempotent else None
        caller = await principal(scope)
        if privileged and not caller.is_privileged:
            raise NotPlain  # the FastAPI route answers the 403
        return await use_case(state=scope["app"].state, principal=caller, body=model, key=key)

    return LeanRoute("POST", router.prefix + path, lean)


ExceptionHandlers = Mapping[Any, Callable[[Request, Exception], Any]]
# FastAPI's layers above the request middleware, which a lean route's request has no use for:
# errors become the request middleware's 500 problem, FastAPI's telemetry is off, and its
# body limit is unset (the request middleware's applies). By name: a FastAPI that adds or
# renames a layer turns the front off, never passes over a layer unseen.
_PASSED_OVER = frozenset(
    {
        "starlette.middleware.errors.ServerErrorMiddleware",
        "fastapi.telemetry._asgi.ExceptionTelemetryMiddleware",
        "fastapi._body_limit.AppBodyLimitMiddleware",
    }
)


def front(stack: ASGIApp, handlers: ExceptionHandlers) -> ASGIApp | None:
    """The lean routes' own stack: the app's request middleware (found in ``stack``, the app's
    built middleware stack) around the matched route, its exceptions answered by the app's
    ``handlers`` as FastAPI's exception middleware would. None if ``stack`` has no request
    middleware, or a layer above it that is not one of FastAPI's own. (Tracing does not wrap
    the stack: its server spans go round the whole app, ``ServiceApp.trace_requests``.) The
    caller puts the route's match (``route``, its parameters) in the scope. Each answer is
    counted in ``shop_lean_requests_total`` by route template."""
    layer: Any = stack
    while not isinstance(layer, RequestContextMiddleware):
        if f"{type(layer).__module__}.{type(layer).__qualname__}" not in _PASSED_OVER:
            return None
        layer = layer.app
    below: ASGIApp = layer.app
    by_class = {k: v for k, v in handlers.items() if isinstance(k, type) and k is not Exception}

    counters: dict[str, Any] = {}

    async def route(scope: Scope, receive: Receive, send: Send) -> None:
        scope[_BELOW] = below
        started = False

        async def sent(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await scope["route"].handle(scope, receive, sent)
        except Exception as exc:
            handler = next((by_class[c] for c in type(exc).__mro__ if c in by_class), None)
            if handler is None or started:
                raise  # the request middleware's 500
            response = handler(Request(scope, receive), exc)
            if inspect.isawaitable(response):
                response = await response
            await response(scope, receive, send)
        finally:
            if not scope.get(_DEFERRED):  # answered here, not handed down to FastAPI
                template = scope["route"].path
                counter = counters.get(template)
                if counter is None:
                    counter = counters[template] = LEAN_REQUESTS.labels(template)
                counter.inc()

    outer = copy.copy(layer)
    outer.app = route
    return cast(ASGIApp, outer)  # typed for plain dicts; an ASGI app all the same
