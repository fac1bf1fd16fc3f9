"""Lean routes: a hand-written handler for the plain requests of one hot FastAPI route.

One class, ``LeanRoute``, for every hot route: the saga's three POSTs and the catalogue's two
reads (``shop.products.api``). Each reads its bounds from the declarations FastAPI's route
reads (``shop.common.types``: ``MAX_ID``, ``IDEMPOTENCY_KEY_MAX``, the page bounds) and calls
the same use case; tests/integration/test_lean_differential.py sends generated requests
both ways, the boundaries included, and compares the answers. Every hot route is one
declaration from which both routes are made, so neither can restate the other's rules: the
saga's three POSTs ``hot_post`` (its model, auth rule, Idempotency-Key and use case), the
catalogue's two GETs ``hot_get`` (the use case's signature: its path, query and header
parameters with their bounds, and which query parameters the lean route takes).

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
its match (a path parameter out of its bounds, a query parameter it does not take or whose
value its declaration refuses), and they go to FastAPI directly.
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

It stays one module (about 600 lines, over the project's 500): the lean route, the two
declaration forms that make it and the front that runs it are one mechanism, each part written
against the others' contract (what a match declines, what ``NotPlain`` hands back, which
declaration owns a bound); split, they would import each other's private names.
"""

from __future__ import annotations

import copy
import inspect
import re
import typing
from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import Annotated, Any, Protocol, TypeVar, cast
from urllib.parse import parse_qsl

import annotated_types
import orjson
from fastapi import APIRouter, params
from pydantic import BaseModel, TypeAdapter, ValidationError
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
# A handler gets the scope, the path's integer parameters (with the values the route's query
# parser read from the query string) and the body; it answers with an ASGI app, most often a
# Response (which is one).
Handler = Callable[[Scope, dict[str, Any], bytes], Awaitable[ASGIApp]]
QueryParser = Callable[[bytes], dict[str, Any] | None]

_DEFERRED = "shop.lean_deferred"
_BELOW = "shop.lean_below"  # on the lean front: the app's stack below the request middleware
_PARAM = re.compile(r"\{([a-z_]+)\}")
# A path parameter's bounds unless the route says otherwise: an id (``Path(ge=1, le=MAX_ID)``).
_ID_BOUNDS = (1, MAX_ID)
_JSON = re.compile(r"^application/json\s*(;.*)?$", re.IGNORECASE)


class NotPlain(Exception):
    """Raised by a handler before it acts: the request is the FastAPI route's to answer."""


class LeanRoute(BaseRoute):
    """``method path`` (``{name}`` parameters are integers) answered by ``handler``.

    ``bounds`` gives each path parameter's (least, greatest) value, (1, MAX_ID) unless given;
    a segment is digits with no leading zero and a value within them, anything else is the
    FastAPI route's. Without ``query`` a request with a query string is the FastAPI route's;
    with it, the parser sees the raw query string and returns None to leave the request to
    FastAPI, or the values the handler finds among ``params``. A GET's body is not read."""

    def __init__(
        self,
        method: str,
        path: str,
        handler: Handler,
        *,
        query: QueryParser | None = None,
        bounds: Mapping[str, tuple[int, int]] | None = None,
    ) -> None:
        self.path = path  # the metrics' route label, shared with the FastAPI route
        self.method = method
        self.handler = handler
        self.query = query
        self._reads_body = method != "GET"
        parts = _PARAM.split(path)  # literal, name, literal, ...
        self._names = parts[1::2]
        self._bounds = [(bounds or {}).get(name, _ID_BOUNDS) for name in self._names]
        self._params = list(zip(self._names, self._bounds, strict=True))
        segments = iter(_digits(high) for _, high in self._bounds)
        self._regex = re.compile(
            "".join(re.escape(p) if i % 2 == 0 else next(segments) for i, p in enumerate(parts))
            + "$"
        )

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or scope["method"] != self.method or _DEFERRED in scope:
            return Match.NONE, {}
        found = self._regex.match(scope["path"])
        if found is None:
            return Match.NONE, {}
        params: dict[str, Any] = {}
        for (name, (low, high)), digits in zip(self._params, found.groups(), strict=True):
            value = int(digits)
            if not low <= value <= high:
                return Match.NONE, {}  # the FastAPI route answers the contract's 422
            params[name] = value
        if self.query is not None:
            query = self.query(scope["query_string"])
            if query is None:
                return Match.NONE, {}
            params.update(query)
        elif scope["query_string"]:
            return Match.NONE, {}
        return Match.FULL, {"route": self, "path_params": params}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def answer(self, scope: Scope, receive: Receive) -> ASGIApp | None:
        """The handler's answer, not yet sent (None: the client went away before its body
        was read); NotPlain if the request is the FastAPI route's (``defer`` hands it on)."""
        body = b""
        if self._reads_body:
            read = await _read_body(receive)
            if read is None:
                return None  # nobody to answer
            body = read
        try:
            return await self.handler(scope, scope["path_params"], body)
        except NotPlain:
            scope[_DEFERRED] = body
            raise

    async def defer(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Hand a request ``answer`` refused on, past this route, its body replayed."""
        below = scope.get(_BELOW) or scope["app"].router
        body: bytes = scope[_DEFERRED]
        await below(scope, _replay(body, receive) if self._reads_body else receive, send)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            response = await self.answer(scope, receive)
        except NotPlain:
            await self.defer(scope, receive, send)
            return
        if response is not None:
            await response(scope, receive, send)


def _digits(high: int) -> str:
    """A path segment of digits, no leading zero, at most ``high``'s many (``matches``
    compares the value with the bounds themselves)."""
    return f"([1-9][0-9]{{0,{len(str(high)) - 1}}})"


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


def hot_get(
    router: APIRouter,
    path: str,
    *,
    name: str,
    use_case: Callable[..., Awaitable[Response]],
    lean_query: Collection[str] = (),
    **route: Any,
) -> LeanRoute:
    """Declare a hot GET once: its FastAPI route, added to ``router`` (named ``name``, the
    OpenAPI's operation id; ``route`` is the rest of its OpenAPI: response model, responses),
    and the returned lean route, made from the same declaration.

    The declaration is the use case's signature: ``state`` (the app's), then keyword-only
    parameters with their defaults, each ``Annotated`` with FastAPI's ``Path``, ``Query`` or
    ``Header`` and its bounds, or with ``Depends`` on an ``async def`` whose own parameters are
    such (``PageDep``). FastAPI's route takes exactly those parameters, so they are its
    OpenAPI (and its validation errors, in its order), with every unusual request. The lean
    route reads them from the same declarations: a path parameter is an integer within its
    ``Path``'s bounds; a query parameter named in ``lean_query``, once at most, is validated
    by its own declaration (as FastAPI validates it), and no other query parameter may be
    there; a header is read once at most (a constrained one validated likewise); a
    dependency is called with what was read for it. A request it does not take is the FastAPI
    route's. Both routes call the use case with what they read; a parameter the request
    leaves out is its declaration's default."""
    declared = _declared(use_case, skip="state")
    bounds: dict[str, tuple[int, int]] = {}
    checks: dict[str, tuple[str, Callable[[Any], Any]]] = {}  # by alias: (name, validator)
    headers: list[tuple[str, bytes, Callable[[Any], Any] | None]] = []
    dependencies: list[tuple[str, Callable[..., Awaitable[Any]], tuple[str, ...]]] = []
    leaves = []  # the parameters the request carries: the use case's, its dependencies'
    for parameter, annotation in declared:
        depends = _depends(annotation)
        if depends is None:
            leaves.append((parameter, annotation))
        else:  # its own parameters are the route's, FastAPI's way
            own = _declared(depends, skip=None)
            dependencies.append((parameter.name, depends, tuple(p.name for p, _ in own)))
            leaves += own
    if len({p.name for p, _ in leaves}) != len(leaves):
        raise TypeError(f"{name}: a dependency's parameter has the name of another")
    for parameter, annotation in leaves:
        kind, field = _declaration(name, parameter.name, annotation)
        alias = field.alias or parameter.name
        if kind is params.Path:
            bounds[parameter.name] = _path_bounds(name, parameter.name, annotation, field)
        elif kind is params.Query and parameter.name in lean_query:
            checks[alias] = (parameter.name, TypeAdapter(annotation).validate_python)
        elif kind is params.Header:
            if alias == parameter.name and cast(params.Header, field).convert_underscores:
                alias = alias.replace("_", "-")
            check = TypeAdapter(annotation).validate_python if field.metadata else None
            headers.append((parameter.name, alias.lower().encode("latin-1"), check))
    unknown = set(lean_query) - {n for n, _ in checks.values()}
    if unknown:
        raise TypeError(f"{name}: lean_query names no query parameter: {sorted(unknown)}")

    async def endpoint(request: Request, **values: Any) -> Response:
        return await use_case(state=request.app.state, **values)

    endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(
                "request", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Request
            ),
            *(p.replace(annotation=a) for p, a in declared),
        ]
    )
    endpoint.__name__ = endpoint.__qualname__ = name
    router.add_api_route(path, endpoint, methods=["GET"], name=name, **route)

    def lean(scope: Scope, values: dict[str, Any], _: bytes) -> Awaitable[Response]:
        # Not a coroutine of its own: the route awaits the use case's, one frame fewer on the
        # catalogue's hottest path (the product read's near hit).
        for parameter, raw, check in headers:
            value = header(scope, raw)
            if value is not None:
                if check is not None:
                    try:
                        value = check(value)
                    except ValidationError:
                        raise NotPlain from None
                values[parameter] = value
        if dependencies:
            return with_dependencies(scope["app"].state, values)
        return use_case(state=scope["app"].state, **values)

    async def with_dependencies(state: State, values: dict[str, Any]) -> Response:
        for parameter, depends, names in dependencies:
            values[parameter] = await depends(**{n: values.pop(n) for n in names if n in values})
        return await use_case(state=state, **values)

    query = _query_parser(checks) if checks else None
    return LeanRoute("GET", router.prefix + path, lean, query=query, bounds=bounds)


def _declared(
    function: Callable[..., Any], skip: str | None
) -> list[tuple[inspect.Parameter, Any]]:
    """A function's parameters (less ``skip``) with their annotations resolved."""
    hints = typing.get_type_hints(function, include_extras=True)
    signature = inspect.signature(function)
    return [(p, hints[p.name]) for p in signature.parameters.values() if p.name != skip]


def _depends(annotation: Any) -> Callable[..., Awaitable[Any]] | None:
    """The dependency an ``Annotated[..., Depends(f)]`` declares (an ``async def``), if any."""
    if typing.get_origin(annotation) is Annotated:
        for field in typing.get_args(annotation)[1:]:
            if isinstance(field, params.Depends):
                if not inspect.iscoroutinefunction(field.dependency):
                    raise TypeError(f"{field.dependency!r}: a hot route's dependency is async")
                return cast(Callable[..., Awaitable[Any]], field.dependency)
    return None


_KINDS = (params.Path, params.Query, params.Header)


def _declaration(route: str, name: str, annotation: Any) -> tuple[type, params.Param]:
    """Which of FastAPI's kinds of parameter ``annotation`` declares, and its declaration."""
    if typing.get_origin(annotation) is Annotated:
        for field in typing.get_args(annotation)[1:]:
            for kind in _KINDS:
                if type(field) is kind:
                    return kind, field
    raise TypeError(f"{route}: {name} is not Annotated with Path, Query or Header")


def _path_bounds(route: str, name: str, annotation: Any, field: params.Param) -> tuple[int, int]:
    """A path parameter's (least, greatest) value from its ``Path`` bounds (both needed)."""
    low = high = None
    for bound in field.metadata:
        if isinstance(bound, annotated_types.Ge):
            low = int(cast(int, bound.ge))
        elif isinstance(bound, annotated_types.Gt):
            low = int(cast(int, bound.gt)) + 1
        elif isinstance(bound, annotated_types.Le):
            high = int(cast(int, bound.le))
        elif isinstance(bound, annotated_types.Lt):
            high = int(cast(int, bound.lt)) - 1
        else:
            raise TypeError(f"{route}: {name}: the lean route cannot check {bound!r}")
    if typing.get_args(annotation)[0] is not int or low is None or high is None:
        raise TypeError(f"{route}: {name} must be an int with both bounds (ge/gt, le/lt)")
    return low, high


def _query_parser(checks: Mapping[str, tuple[str, Callable[[Any], Any]]]) -> QueryParser:
    """The lean route's query parser: every parameter one of ``checks`` (by alias), once,
    valid by its declaration; their values by parameter name, else None (FastAPI's request).
    Parsed as starlette parses a query string (``parse_qsl`` of the latin-1 text)."""

    def parse(query_string: bytes) -> dict[str, Any] | None:
        values: dict[str, Any] = {}
        for alias, raw in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
            check = checks.get(alias)
            if check is None or check[0] in values:
                return None
            try:
                values[check[0]] = check[1](raw)
            except ValidationError:
                return None
        return values

    return parse


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

    def handler_for(exc: Exception) -> Callable[[Request, Exception], Any] | None:
        return next((by_class[c] for c in type(exc).__mro__ if c in by_class), None)

    async def handled(
        handler: Callable[[Request, Exception], Any],
        exc: Exception,
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        response = handler(Request(scope, receive), exc)
        if inspect.isawaitable(response):
            response = await response
        await response(scope, receive, send)

    async def handed_down(lean: LeanRoute, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def sent(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await lean.defer(scope, receive, sent)
        except Exception as exc:
            handler = handler_for(exc)
            if handler is None or started:
                raise  # the request middleware's 500
            await handled(handler, exc, scope, receive, send)

    async def route(scope: Scope, receive: Receive, send: Send) -> None:
        scope[_BELOW] = below
        lean: LeanRoute = scope["route"]
        try:
            try:
                response = await lean.answer(scope, receive)
            except NotPlain:
                await handed_down(lean, scope, receive, send)
                return
            except Exception as exc:  # nothing sent yet
                handler = handler_for(exc)
                if handler is None:
                    raise  # the request middleware's 500
                await handled(handler, exc, scope, receive, send)
                return
            # Sent with no wrapper of ``send`` to note that it started: a response raises only
            # once sending, and that is the request middleware's 500.
            if response is not None:
                await response(scope, receive, send)
        finally:
            if _DEFERRED not in scope:  # answered here, not handed down to FastAPI
                template = lean.path
                counter = counters.get(template)
                if counter is None:
                    counter = counters[template] = LEAN_REQUESTS.labels(template)
                counter.inc()

    outer = copy.copy(layer)
    outer.app = route
    return cast(ASGIApp, outer)  # typed for plain dicts; an ASGI app all the same
