"""What a logged-in client meets the moment the platform says it is ready.

Called by the ``cluster`` fixture right after ``Cluster.wait_ready`` returns, before any test
has warmed anything: one login through the gateway (a token issued now), then that token on
every protected operation of the four services' OpenAPI, through the gateway and straight to
every replica. tests/ha/test_readiness.py asserts on what it saw.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx

from shop.common.services import SERVICES
from shop.common.types import MAX_ID
from shop.devtools.cluster import Cluster
from shop.devtools.contract import service_openapi

BODY_METHODS = {"post", "put", "patch"}


@dataclass(frozen=True)
class Answer:
    target: str  # "gateway" or the replica's URL
    method: str
    path: str
    status: int
    body: str


def protected_operations(service: str) -> list[tuple[str, str]]:
    """(method, path) of every operation the service's OpenAPI says needs a token."""
    paths = service_openapi(service)["paths"]
    return [
        (method, path)
        for path, operations in paths.items()
        for method, operation in operations.items()
        if operation.get("security")
    ]


def first_contact(cluster: Cluster, admin_password: str) -> list[Answer]:
    answers: list[Answer] = []
    gateway = cluster.gateway.url
    with httpx.Client(timeout=30) as client:
        login = client.post(
            f"{gateway}/api/v1/users/login",
            json={"username": "admin", "password": admin_password},
        )
        login.raise_for_status()
        headers = {
            "Authorization": f"Bearer {login.json()['access_token']}",
            "Idempotency-Key": "first-contact",
        }
        for service in SERVICES:
            targets = [gateway, *(replica.url for replica in cluster.replicas[service])]
            for method, path in protected_operations(service):
                # An id no test will ever reach: a probe must leave nothing a test could meet
                # (a release of order 1 leaves a tombstone, and the first real order 1 was
                # then refused its stock and stuck compensating).
                concrete = re.sub(r"\{[^}]+\}", str(MAX_ID), path)
                for target in targets:
                    response = client.request(
                        method,
                        target + concrete,
                        headers=headers,
                        json={} if method in BODY_METHODS else None,
                    )
                    answers.append(
                        Answer(
                            "gateway" if target == gateway else target,
                            method.upper(),
                            path,
                            response.status_code,
                            response.text[:200],
                        )
                    )
    return answers
