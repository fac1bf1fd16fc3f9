"""Helpers of the security suite."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.conftest import Platform

PASSWORD = "correct horse battery"
PROTECTED = {
    # one endpoint per service that needs a valid user token
    "users": ("GET", "/api/v1/users/{uid}"),
    "products": ("POST", "/api/v1/products"),  # admin-only
    "orders": ("GET", "/api/v1/orders/user/{uid}"),
    "payments": ("GET", "/api/v1/payments/user/{uid}"),
}


async def register(platform: Platform, username: str) -> dict[str, Any]:
    response = await platform.users.post(
        "/api/v1/users/register",
        json={"username": username, "email": f"{username}@example.com", "password": PASSWORD},
    )
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert "Traceback" not in response.text
    return body
