"""The app factory every service uses: errors as problems, middleware, health, metrics, lifespan."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from shop.common import fastpath, faults
from shop.common.auth import KeySet, TokenVerifier
from shop.common.credentials import VaultRuntime
from shop.common.db import Database
from shop.common.errors import (
    BadRequest,
    Problem,
    ServiceUnavailable,
    Unprocessable,
    problem_body,
)
from shop.common.logging import configure_logging, get_logger
from shop.common.metrics import render_metrics
from shop.common.middleware import RequestContextMiddleware
from shop.common.openapi import (
    DEFAULT_PROBLEMS,
    METRICS_RESPONSE,
    HealthRead,
    ReadinessRead,
    allowed_methods,
    operation_id,
    problems,
    publish,
    refuse_unknown_query,
)
from shop.common.responses import JSONResponse, problem_response
from shop.common.settings import ServiceSettings
from shop.common.tracing import exporting, instrument_app

log = get_logger("shop.app")

# Set by the server when SIGTERM arrives (`shop serve`): readiness answers 503 from then on,
# while the requests in flight finish, so a load balancer stops sending new ones.
DRAINING = threading.Event()

# Errors that mean "the database is not reachable now", answered 503 with Retry-After.
DATABASE_DOWN: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    asyncpg.AdminShutdownError,
    asyncpg.QueryCanceledError,
)

ReadyCheck = Callable[[FastAPI], Awaitable[bool]]
Extension = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def _validation_problem(exc: RequestValidationError) -> Problem:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return BadRequest("The request body is not valid JSON.")
    return Unprocessable(
        "The request is not valid.",
        errors=[
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in errors
        ],
    )


def install_problem_handlers(app: FastAPI) -> None:
    async def on_problem(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return problem_response(exc)

    async def on_validation(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return problem_response(_validation_problem(exc))

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        body = problem_body(exc.status_code, _reason(exc.status_code), str(exc.detail))
        headers = exc.headers
        if exc.status_code == 405:  # Allow: every method of the path, not the first route's
            methods = allowed_methods(request.app.router.routes, request.scope)
            headers = {**(headers or {}), "Allow": ", ".join(methods)}
        return JSONResponse(
            body,
            status_code=exc.status_code,
            media_type="application/problem+json",
            headers=headers,
        )

    async def on_bad_data(_: Request, exc: Exception) -> Response:
        # PostgreSQL refused a value (SQLSTATE class 22: e.g. a NUL byte in text): the client's.
        return problem_response(Unprocessable("A value could not be stored as given."))

    async def on_database_down(_: Request, exc: Exception) -> Response:
        log.warning("database unavailable", error=type(exc).__name__)
        return problem_response(ServiceUnavailable("The database is unavailable."))

    app.add_exception_handler(asyncpg.DataError, on_bad_data)
    for exc_type in DATABASE_DOWN:
        app.add_exception_handler(exc_type, on_database_down)
    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def build_verifier(settings: ServiceSettings) -> TokenVerifier:
    if settings.jwt_public_keys_file is not None:
        keys = KeySet.from_file(settings.jwt_public_keys_file)
    else:
        keys = KeySet(
            url=settings.jwks_url,
            max_age=settings.jwks_max_age_seconds,
            min_refresh_interval=settings.jwks_min_refresh_seconds,
        )
    return TokenVerifier(
        keys,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        service_secret=settings.service_token_secret.get_secret_value(),
    )


class ServiceApp(FastAPI):
    """FastAPI with lean routes (``shop.common.fastpath``) answered in front of its stack.

    A request one of ``lean_routes`` matches goes from here to the platform's request
    middleware and the route (``fastpath.front``); everything else, and every request while
    any other middleware is installed (fault injection), goes through FastAPI as usual, where
    the same lean routes lead the router. Tracing wraps the app itself (``trace_requests``)."""

    lean_routes: tuple[fastpath.LeanRoute, ...] = ()
    _lean: ASGIApp | None = None
    _lean_of: ASGIApp | None = None  # the middleware stack _lean was made for
    _traced: ASGIApp | None = None  # tracing on: the server-span middleware round _serve

    def trace_requests(self, wrap: Callable[[ASGIApp], ASGIApp]) -> None:
        """Tracing on: every request, lean or not, goes through ``wrap(self._serve)`` (the
        server span, ``shop.common.tracing``), outside both ways in, so both are traced alike
        and the lean front stays on."""
        self._traced = wrap(self._serve)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._traced is not None:
            await self._traced(scope, receive, send)
        else:
            await self._serve(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        stack = self.middleware_stack
        if stack is not self._lean_of:  # built (by the first call) or rebuilt since
            self._lean_of = stack
            installed: list[Any] = [m.cls for m in self.user_middleware]
            plain = installed == [RequestContextMiddleware]
            front = fastpath.front(stack, self.exception_handlers) if stack and plain else None
            self._lean = front
        lean = self._lean
        if lean is not None and scope["type"] == "http":
            scope["app"] = self  # the routes' matches read the app's state
            for route in self.lean_routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child)
                    await lean(scope, receive, send)
                    return
        await super().__call__(scope, receive, send)


def create_service_app(
    settings: ServiceSettings,
    *,
    title: str,
    description: str,
    routers: Sequence[APIRouter],
    extensions: Sequence[Extension] = (),
    ready_checks: Sequence[ReadyCheck] = (),
    lean_routes: Sequence[fastpath.LeanRoute] = (),
) -> FastAPI:
    """Build a service. Nothing connects here; the lifespan opens the pool and clients.

    ``lean_routes`` (``shop.common.fastpath``) go before every other route: each answers the
    plain requests of one hot FastAPI route and hands the rest to it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(
            service=settings.service_name,
            pod=settings.pod_name,
            level=settings.log_level,
            json=settings.log_json,
        )
        app.state.shutting_down = False
        # With Vault: log in, and lease database credentials when a role is configured.
        vault = await VaultRuntime.open(settings)
        app.state.vault = vault.vault
        app.state.database_credentials = vault.credentials
        database_url = vault.database_url(settings.database_url.get_secret_value())
        db = Database.for_service(settings, database_url)
        try:
            await db.connect()
        except (OSError, TimeoutError, Exception) as exc:
            # Start anyway and report not-ready: the pool connects lazily once the database
            # is back, so the process need not be restarted.
            log.warning("database unreachable at start-up", error=type(exc).__name__)
            db = Database.for_service(settings, database_url, min_size=0)
            await db.connect()
        app.state.db = db
        async with AsyncExitStack() as stack:
            await stack.enter_async_context(vault.keep_database_fresh(db))
            await stack.enter_async_context(exporting(app))
            for extension in extensions:
                await stack.enter_async_context(extension(app))
            if getattr(app.state, "verifier", None) is None:
                app.state.verifier = build_verifier(settings)
            # The JWKS, fetched until it arrives: not ready before (the readiness check).
            await stack.enter_async_context(app.state.verifier.keys.kept_fresh())
            log.info("service started", port=settings.port, env=settings.env.value)
            try:
                yield
            finally:
                app.state.shutting_down = True
                log.info("service stopping")
        await db.close()
        log.info("service stopped")
        await vault.close()

    app = ServiceApp(
        title=title,
        description=description,
        version="1.0.0",
        lifespan=lifespan,
        default_response_class=JSONResponse,
        responses=DEFAULT_PROBLEMS,
        dependencies=[Depends(refuse_unknown_query)],
        generate_unique_id_function=operation_id,
        # The platform traces with its own OpenTelemetry set-up (shop.common.tracing); FastAPI's
        # native telemetry, left on, asks the global providers (os.environ) on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    publish(app)
    install_problem_handlers(app)
    if settings.fault_injection:  # tests only: the settings refuse it in production
        faults.install(app)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=settings.max_body_bytes)
    instrument_app(app, settings)  # outermost: only when an OTLP endpoint is configured

    health = APIRouter(tags=["operations"])

    @health.get("/health/live", summary="The process is up", response_model=HealthRead)
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @health.get(
        "/health/ready",
        summary="The service can serve: its database (and dependencies) are reachable and it"
        " holds the keys that verify tokens",
        response_model=ReadinessRead,
        responses=problems(503, descriptions={503: "Not ready (checks says which failed)"}),
    )
    async def ready(request: Request) -> dict[str, object]:
        if request.app.state.shutting_down or DRAINING.is_set():
            raise ServiceUnavailable("The service is shutting down.")
        checks = {
            "database": await request.app.state.db.ping(),
            # The keys that verify user tokens are held: a token issued now is accepted.
            "signing_keys": request.app.state.verifier.keys.ready,
        }
        for check in ready_checks:
            checks[check.__name__.removeprefix("check_")] = await check(request.app)
        if not all(checks.values()):
            raise ServiceUnavailable("Not ready.", extra={"checks": checks})
        return {"status": "ok", "checks": checks}

    @health.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses=METRICS_RESPONSE,
    )
    async def metrics(request: Request) -> Response:
        request.app.state.db.observe_pool()
        payload, content_type = render_metrics(request.headers.get("accept"))
        return Response(payload, media_type=content_type)

    app.include_router(health)
    for router in routers:
        app.include_router(router)
    app.router.routes[:0] = list(lean_routes)
    app.lean_routes = tuple(lean_routes)

    return app
