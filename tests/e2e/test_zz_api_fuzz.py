"""Schemathesis against each running service's OpenAPI: no generated input may cause a 5xx.

Every operation of every service gets generated requests (valid and invalid), sent as the
admin so that writes reach the database code. Runs after the journeys (file name order).
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from shop.devtools.processes import SERVICES
from tests.e2e.conftest import ADMIN_PASSWORD, LivePlatform

pytestmark = pytest.mark.e2e
EXAMPLES_PER_OPERATION = 8


@pytest.fixture(scope="module")
def admin_headers(live: LivePlatform) -> dict[str, str]:
    response = httpx.post(
        f"{live.url('users')}/api/v1/users/login",
        json={"username": "admin", "password": ADMIN_PASSWORD},
    )
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.mark.parametrize("service", SERVICES)
def test_no_generated_request_causes_a_server_error(
    live: LivePlatform, admin_headers: dict[str, str], service: str
) -> None:
    schema = schemathesis.openapi.from_url(f"{live.url(service)}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def check(case) -> None:
            response = case.call(base_url=live.url(service), headers=admin_headers, timeout=30)
            case.validate_response(response, checks=[not_a_server_error])

        check()
