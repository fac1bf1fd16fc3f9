"""In-process services against real PostgreSQL.

All four apps run in this process with their real lifespans; the order service reaches the
product and payment apps through httpx's ASGI transport (the injectable transport of its
clients), so the saga runs over the real HTTP contract without sockets. Tables are emptied
before each test.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from shop.common.auth import (
    ServiceTokens,
    SigningKeys,
    generate_private_key_pem,
    issue_access_token,
)
from shop.common.settings import Environment
from shop.orders.app import create_app as orders_app
from shop.orders.settings import OrdersSettings
from shop.payments.app import create_app as payments_app
from shop.payments.settings import PaymentsSettings
from shop.products.app import create_app as products_app
from shop.products.settings import ProductsSettings
from shop.users.app import create_app as users_app
from shop.users.settings import UsersSettings

SERVICE_SECRET = "integration-test-service-secret-32-bytes-plus"
ADMIN_PASSWORD = "admin-password-for-tests"
TABLES = {
    "users": ["users", "outbox", "inbox"],
    "products": ["products", "reservation_lines", "reservations", "outbox", "inbox"],
    "orders": ["order_lines", "orders", "outbox", "inbox"],
    "payments": ["payments", "idempotency_keys", "outbox", "inbox"],
}


class FlakyTransport(httpx.AsyncBaseTransport):
    """Wraps a transport; while ``down`` is set, every call fails as if the service were gone."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.down = False
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        if self.down:
            raise httpx.ConnectError("connection refused (test)", request=request)
        return await self.inner.handle_async_request(request)


@dataclass
class Platform:
    users: httpx.AsyncClient
    products: httpx.AsyncClient
    orders: httpx.AsyncClient
    payments: httpx.AsyncClient
    apps: dict[str, FastAPI]
    keys: SigningKeys
    urls: dict[str, str]
    products_link: FlakyTransport
    payments_link: FlakyTransport
    _conns: dict[str, asyncpg.Connection] = field(default_factory=dict)

    def token(
        self,
        user_id: int,
        role: str = "customer",
        *,
        username: str | None = None,
        email: str | None = None,
    ) -> dict[str, str]:
        token = issue_access_token(
            self.keys,
            user_id=user_id,
            role=role,
            issuer="shop-users",
            audience="shop",
            ttl=300,
            username=username,
            email=email,
        )
        return {"Authorization": f"Bearer {token}"}

    def service_token(self, service: str = "order-service") -> dict[str, str]:
        return {"Authorization": f"Bearer {ServiceTokens(service, SERVICE_SECRET).token()}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.token(1, "admin")

    async def sql(self, service: str, query: str, *args: Any) -> list[asyncpg.Record]:
        if service not in self._conns:
            self._conns[service] = await asyncpg.connect(self.urls[service])
        return await self._conns[service].fetch(query, *args)


def _settings(cls: type, url: str, keys_file: Path, **extra: Any) -> Any:
    defaults: dict[str, Any] = {
        "db_pool_min": 1,
        "db_pool_max": 10,
        # One event loop runs all four services and the clients here: allow for its queueing.
        "db_command_timeout": 30,
    }
    return cls(
        env=Environment.TEST,
        database_url=url,
        service_token_secret=SERVICE_SECRET,
        jwt_public_keys_file=keys_file,
        log_json=True,
        **{**defaults, **extra},
    )


# Package scope: the pools close when the in-process tests end, before the process-based
# tests open their own connections (PostgreSQL's default limit is 100).
@pytest.fixture(scope="package")
async def platform(
    database_urls: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Platform]:
    pem = generate_private_key_pem()
    keys = SigningKeys(pem)
    keys_file = tmp_path_factory.mktemp("keys") / "jwks.json"
    keys_file.write_text(json.dumps(keys.jwks()))
    apps: dict[str, FastAPI] = {
        "users": users_app(
            _settings(
                UsersSettings,
                database_urls["users"],
                keys_file,
                jwt_private_key=pem,
                admin_password=ADMIN_PASSWORD,
                argon2_time_cost=1,
                argon2_memory_kib=1024,
                argon2_parallelism=1,
            )
        ),
        "products": products_app(_settings(ProductsSettings, database_urls["products"], keys_file)),
        "payments": payments_app(_settings(PaymentsSettings, database_urls["payments"], keys_file)),
    }
    products_link = FlakyTransport(httpx.ASGITransport(apps["products"]))
    payments_link = FlakyTransport(httpx.ASGITransport(apps["payments"]))
    apps["orders"] = orders_app(
        _settings(
            OrdersSettings,
            database_urls["orders"],
            keys_file,
            recovery_enabled=False,
            saga_lease_seconds=30,
            retry_deadline_seconds=3,
            http_timeout_seconds=10,
            # The bulkhead queues the 200-order race; a slow CI machine must not turn into 503s.
            saga_queue_timeout_seconds=300,
        ),
        products_transport=products_link,
        payments_transport=payments_link,
    )
    async with AsyncExitStack() as stack:
        clients = {}
        for name, app in apps.items():
            await stack.enter_async_context(app.router.lifespan_context(app))
            clients[name] = await stack.enter_async_context(
                httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=f"http://{name}")
            )
        yield Platform(
            **clients,
            apps=apps,
            keys=keys,
            urls=database_urls,
            products_link=products_link,
            payments_link=payments_link,
        )


@pytest.fixture(autouse=True)
async def clean(platform: Platform) -> AsyncIterator[None]:
    # DELETE, not TRUNCATE: on these tiny tables it is far cheaper (no file rewrite, no fsync).
    for service, tables in TABLES.items():
        keep = " WHERE role <> 'admin'" if service == "users" else ""
        for table in tables:
            where = keep if table == "users" else ""
            await platform.sql(service, f"DELETE FROM {table}{where}")
    platform.products_link.down = platform.payments_link.down = False
    for app in platform.apps.values():
        saga = getattr(app.state, "saga", None)
        if saga is not None:
            for client in (saga.products.http, saga.payments.http):
                client._breaker.failures, client._breaker.opened_at = 0, None
    return


@pytest.fixture
def make_product(platform: Platform) -> Callable[..., Any]:
    async def make(price: str = "10.00", stock: int = 10, **fields: Any) -> dict[str, Any]:
        body = {"name": fields.pop("name", "Widget"), "price": price, "stock": stock, **fields}
        response = await platform.products.post(
            "/api/v1/products", json=body, headers=platform.admin
        )
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    return make
