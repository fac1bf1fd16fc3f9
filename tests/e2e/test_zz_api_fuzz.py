"""Schemathesis against each running service's OpenAPI: no generated input may cause a 5xx.

Runs after the journeys (file name order), as admin so that writes reach the database code.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from tests.e2e.conftest import ADMIN_PASSWORD, LivePlatform

pytestmark = pytest.mark.e2e
FUZZ = settings(
    max_examples=12, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


@pytest.fixture(scope="module")
def admin_headers(live: LivePlatform) -> dict[str, str]:
    response = httpx.post(
        f"{live.url('users')}/api/v1/users/login",
        json={"username": "admin", "password": ADMIN_PASSWORD},
    )
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _schema_fixture(service: str):
    @pytest.fixture
    def schema(live: LivePlatform):
        return schemathesis.openapi.from_url(f"{live.url(service)}/openapi.json")

    return schema


users_schema = _schema_fixture("users")
products_schema = _schema_fixture("products")
orders_schema = _schema_fixture("orders")
payments_schema = _schema_fixture("payments")


def _check(case, live: LivePlatform, service: str, headers: dict[str, str]) -> None:
    response = case.call(base_url=live.url(service), headers=headers, timeout=15)
    case.validate_response(response, checks=[not_a_server_error])


@schemathesis.pytest.from_fixture("users_schema").parametrize()
@FUZZ
def test_users_api(case, live, admin_headers) -> None:
    _check(case, live, "users", admin_headers)


@schemathesis.pytest.from_fixture("products_schema").parametrize()
@FUZZ
def test_products_api(case, live, admin_headers) -> None:
    _check(case, live, "products", admin_headers)


@schemathesis.pytest.from_fixture("orders_schema").parametrize()
@FUZZ
def test_orders_api(case, live, admin_headers) -> None:
    _check(case, live, "orders", admin_headers)


@schemathesis.pytest.from_fixture("payments_schema").parametrize()
@FUZZ
def test_payments_api(case, live, admin_headers) -> None:
    _check(case, live, "payments", admin_headers)
