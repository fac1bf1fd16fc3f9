"""The storefront's app factory: GraphQL at /graphql, health and metrics, no database.

It is built from the same parts as the services (problem handlers, request-context and metrics
middleware, tracing) but not by ``create_service_app``, which opens a database pool: the BFF
owns no data, it reads and writes through the services.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.responses import Response
from strawberry.fastapi import GraphQLRouter
from strawberry.http import GraphQLHTTPResponse
from strawberry.types import ExecutionResult

from shop.common.app import DRAINING, build_verifier, install_problem_handlers
from shop.common.errors import ServiceUnavailable
from shop.common.logging import configure_logging, get_logger
from shop.common.metrics import render_metrics
from shop.common.middleware import RequestContextMiddleware
from shop.common.responses import JSONResponse
from shop.common.tracing import exporting, instrument_app
from shop.storefront.admin import router as admin_router
from shop.storefront.cart import Carts
from shop.storefront.clients import Backend
from shop.storefront.graphql import Context, Limits, build_schema, error_code
from shop.storefront.pages import router as pages_router
from shop.storefront.settings import StorefrontSettings
from shop.storefront.web import (
    PAGES_CSP,
    CsrfRejected,
    cookie_cart,
    refresh_session,
    render,
    save_cookie_cart,
)

log = get_logger("shop.storefront")
MASKED = "Something went wrong on our side; it has been logged. Try again shortly."


class ShopGraphQLRouter(GraphQLRouter[Context, None]):
    """Every error leaves with an API.md ``extensions.code``; unexpected ones are masked."""

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        response: GraphQLHTTPResponse = {"data": result.data}
        if result.errors:
            errors: list[object] = []
            for error in result.errors:
                code = error_code(error)
                formatted = error.formatted
                if (
                    code == "UNAVAILABLE"
                    and error.original_error is not None
                    and not hasattr(error.original_error, "code")
                ):
                    formatted["message"] = MASKED
                formatted["extensions"] = {**(error.extensions or {}), "code": code}
                details = getattr(error.original_error, "details", None)
                if details:
                    formatted["extensions"].update(details)
                errors.append(formatted)
            response["errors"] = errors
        return response


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def _report_carts(carts: Carts) -> None:
    """Say at start-up where signed-in customers' carts live."""
    if carts.mode == "cookie":
        log.warning(
            "carts in cookies (SHOP_REDIS_URL unset): a customer's cart stays in one browser"
        )
    elif await carts.available():
        log.info("carts in Redis: a signed-in customer's cart is the same on every device")
    else:
        log.warning("cart Redis unreachable: signed-in customers' carts fail until it answers")


def create_app(
    settings: StorefrontSettings | None = None,
    *,
    transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
) -> FastAPI:
    settings = settings or StorefrontSettings()
    schema = build_schema(
        Limits(
            max_depth=settings.graphql_max_depth,
            max_cost=settings.graphql_max_cost,
            introspection=settings.introspection,
        )
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(
            service=settings.service_name,
            pod=settings.pod_name,
            level=settings.log_level,
            json=settings.log_json,
        )
        app.state.shutting_down = False
        urls = {
            "users": settings.users_url,
            "products": settings.products_url,
            "orders": settings.orders_url,
            "payments": settings.payments_url,
        }
        app.state.backend = Backend.open(
            urls, timeout=settings.http_timeout_seconds, transports=transports
        )
        app.state.carts = Carts.from_url(
            settings.redis_url, ttl_seconds=settings.cart_ttl_seconds, prefix=settings.cart_prefix
        )
        await _report_carts(app.state.carts)
        async with exporting(app):
            if getattr(app.state, "verifier", None) is None:
                app.state.verifier = build_verifier(settings)
            async with app.state.verifier.keys.kept_fresh():
                log.info("service started", port=settings.port, env=settings.env.value)
                try:
                    yield
                finally:
                    app.state.shutting_down = True
                    await app.state.backend.aclose()
                    await app.state.carts.aclose()
                    log.info("service stopped")

    async def context(request: Request) -> Context:
        return Context(
            request.app.state.backend,
            request.app.state.verifier,
            _bearer(request),
            carts=request.app.state.carts,
            cookie_cart=cookie_cart(request),
        )

    app = FastAPI(
        title="shop storefront",
        description="The backend-for-frontend: GraphQL over the four services.",
        version="1.0.0",
        lifespan=lifespan,
        default_response_class=JSONResponse,
    )
    app.state.settings = settings
    app.state.schema = schema
    install_problem_handlers(app)

    async def on_csrf(request: Request, _: Exception) -> Response:
        message = "This form has expired or did not come from this site. Go back, reload, retry."
        return render(request, "message.html", 403, title="Refused", message=message)

    app.add_exception_handler(CsrfRejected, on_csrf)
    app.add_middleware(BaseHTTPMiddleware, dispatch=refresh_session)
    app.add_middleware(BaseHTTPMiddleware, dispatch=save_cookie_cart)
    app.add_middleware(
        RequestContextMiddleware,
        max_body_bytes=settings.max_body_bytes,
        content_security_policy=PAGES_CSP,
    )
    instrument_app(app, settings)

    # No GraphiQL: its page needs scripts the Content-Security-Policy refuses; use curl or
    # any client against the exported schema.graphql. Queries over GET are refused so that
    # every request carries a JSON body (no cross-site form can send one).
    app.include_router(
        ShopGraphQLRouter(
            schema, context_getter=context, graphql_ide=None, allow_queries_via_get=False
        ),
        prefix="/graphql",
    )

    health = APIRouter(tags=["operations"])

    @health.get("/health/live", summary="The process is up")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @health.get(
        "/health/ready",
        summary="The BFF can serve: it holds the keys that verify tokens (and no other state)",
    )
    async def ready(request: Request) -> dict[str, Any]:
        if request.app.state.shutting_down or DRAINING.is_set():
            raise ServiceUnavailable("The service is shutting down.")
        if not request.app.state.verifier.keys.ready:
            raise ServiceUnavailable("Not ready.", extra={"checks": {"signing_keys": False}})
        return {"status": "ok", "checks": {"signing_keys": True}}

    @health.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics(request: Request) -> Response:
        payload, content_type = render_metrics(request.headers.get("accept"))
        return Response(payload, media_type=content_type)

    app.include_router(health)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    app.include_router(admin_router)
    app.include_router(pages_router)
    return app
