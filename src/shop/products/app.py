"""The product service's app factory."""

from __future__ import annotations

from fastapi import FastAPI

from shop.common.app import create_service_app
from shop.common.events.relay import relay_extension, render_as
from shop.products.api import router
from shop.products.events import follow_catalogue
from shop.products.schemas import ProductRead
from shop.products.settings import ProductsSettings


def create_app(settings: ProductsSettings | None = None) -> FastAPI:
    return create_service_app(
        settings or ProductsSettings(),
        title="shop product service",
        description="The product catalogue and its stock.",
        routers=[router],
        # The cache (when the app has one) must be on app.state before follow_catalogue runs.
        extensions=[relay_extension("products", render_as(ProductRead)), follow_catalogue],
    )
