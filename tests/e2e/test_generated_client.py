"""A client generated from the published OpenAPI works (issue 17): openapi-python-client
generates a Python package from each running service's /openapi.json into a temporary
folder (nothing generated is committed), and a customer's journey runs on the generated
functions and models alone: register, log in, order, read the payment, cancel.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from shop.devtools.processes import SERVICES
from tests.e2e.conftest import ADMIN_PASSWORD
from tests.harness import Platform

pytestmark = pytest.mark.e2e
GENERATOR = Path(sys.executable).with_name("openapi-python-client")


class Generated:
    """One service's generated package: ``client(token)`` and its modules by dotted name."""

    def __init__(self, package: str, url: str) -> None:
        self.package, self.url = package, url

    def module(self, name: str) -> ModuleType:
        return importlib.import_module(f"{self.package}.{name}")

    def client(self, token: str | None = None) -> Any:
        root = importlib.import_module(self.package)
        if token is None:
            return root.Client(base_url=self.url, raise_on_unexpected_status=True)
        return root.AuthenticatedClient(
            base_url=self.url, token=token, raise_on_unexpected_status=True
        )


@pytest.fixture(scope="module")
def generated(
    live: Platform, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Generated]]:
    out = tmp_path_factory.mktemp("generated")
    # The generator formats its output with ruff when it finds it: the venv's.
    env = {**os.environ, "PATH": f"{GENERATOR.parent}{os.pathsep}{os.environ['PATH']}"}
    packages: dict[str, Generated] = {}
    for service in SERVICES:
        package = f"shop_{service}_client_{uuid.uuid4().hex[:6]}"
        result = subprocess.run(
            [
                str(GENERATOR),
                "generate",
                "--url",
                f"{live.url(service)}/openapi.json",
                "--output-path",
                str(out / package),
                "--meta",
                "none",
                "--fail-on-warning",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        packages[service] = Generated(package, live.url(service))
    sys.path.insert(0, str(out))
    try:
        yield packages
    finally:
        sys.path.remove(str(out))


def test_a_generated_client_drives_a_customer_journey(generated: dict[str, Generated]) -> None:
    users, products = generated["users"], generated["products"]
    orders, payments = generated["orders"], generated["payments"]
    users_models = users.module("models")
    login = importlib.import_module(f"{users.package}.api.users.login")
    register = importlib.import_module(f"{users.package}.api.users.register")

    # The admin stocks a product (the generated products client, as the admin).
    admin = login.sync(
        client=users.client(),
        body=users_models.LoginRequest(username="admin", password=ADMIN_PASSWORD),
    )
    assert isinstance(admin, users_models.TokenResponse), admin
    create_product = products.module("api.products.create_product")
    product = create_product.sync(
        client=products.client(admin.access_token),
        body=products.module("models").ProductCreate(
            name="Generated-client mug", price="12.50", stock=5
        ),
    )
    assert product.stock == 5
    assert product.price == "12.50"

    # A customer registers and logs in.
    name = f"gen_{uuid.uuid4().hex[:8]}"
    user = register.sync(
        client=users.client(),
        body=users_models.UserCreate(
            username=name, email=f"{name}@example.com", password="generated client pw"
        ),
    )
    assert isinstance(user, users_models.UserRead), user
    assert user.username == name
    assert user.role.value == "customer"
    tokens = login.sync(
        client=users.client(),
        body=users_models.LoginRequest(username=name, password="generated client pw"),
    )
    assert isinstance(tokens, users_models.TokenResponse), tokens
    me = tokens.access_token

    # ... orders two, with an Idempotency-Key: paid.
    place = orders.module("api.orders.place_order")
    order_models = orders.module("models")
    order = place.sync(
        client=orders.client(me),
        body=order_models.OrderCreate(
            product_id=product.id,
            quantity=2,
            payment_method=order_models.OrderCreatePaymentMethod("paypal"),
        ),
        idempotency_key=f"gen-{name}",
    )
    assert isinstance(order, order_models.OrderRead), order
    assert order.status.value == "paid"
    assert order.total_price == "25.00"
    assert order.user_id == user.id

    # ... reads the order's payment.
    of_order = payments.module("api.payments.payment_of_order")
    payment = of_order.sync(order.id, client=payments.client(me))
    assert isinstance(payment, payments.module("models").PaymentRead), payment
    assert payment.status.value == "completed"
    assert payment.amount == "25.00"
    assert payment.payment_id == order.payment_id

    # ... and cancels: refunded, and the stock is back.
    cancel = orders.module("api.orders.cancel_order")
    cancelled = cancel.sync(order.id, client=orders.client(me))
    assert isinstance(cancelled, order_models.OrderRead), cancelled
    assert cancelled.status.value == "cancelled"
    refunded = of_order.sync(order.id, client=payments.client(me))
    assert refunded.status.value == "refunded"
    get_product = products.module("api.products.get_product")
    assert get_product.sync(product.id, client=products.client()).stock == 5

    # A problem is a typed answer too: another customer's order is not found.
    get_order = orders.module("api.orders.get_order")
    missing = get_order.sync_detailed(order.id + 10_000, client=orders.client(me))
    assert missing.status_code == 404
    assert isinstance(missing.parsed, order_models.Problem)
    assert missing.parsed.status == 404
