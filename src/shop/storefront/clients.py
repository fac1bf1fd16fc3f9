"""Calls from the BFF to the services, as the caller: their token and X-Request-ID passed on.

Every call returns the decoded JSON body of a 2xx answer or raises ``ApiError`` with the
GraphQL error code that the service's problem status maps to (``CODES``); a service that does
not answer usefully (timeout, refused, 5xx) is ``UNAVAILABLE``. Nothing here retries a write:
``placeOrder`` is made safe to repeat by its Idempotency-Key instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NotRequired, TypedDict

import httpx

from shop.common.context import request_id_var
from shop.common.tracing import instrument_client

# A service's problem status -> the GraphQL error code of API.md.
CODES = {
    400: "BAD_USER_INPUT",
    401: "UNAUTHENTICATED",
    402: "PAYMENT_DECLINED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    409: "CONFLICT",
    413: "BAD_USER_INPUT",
    422: "BAD_USER_INPUT",
    429: "RATE_LIMITED",
}
SERVICES = ("users", "products", "orders", "payments")


# The services' answers as the storefront reads them: the published schemas' fields (ProductRead,
# OrderRead, PaymentRead, UserRead; tests/unit/test_client_contract.py holds them to it).
class ProductJson(TypedDict):
    id: int
    name: str
    description: str
    price: str
    stock: int
    category: str | None


class OrderLineJson(TypedDict):
    product_id: int
    name: str | None
    quantity: int
    unit_price: str | None
    line_total: str | None


class OrderJson(TypedDict):
    id: int
    user_id: int
    product_id: int | None
    quantity: int | None
    lines: NotRequired[list[OrderLineJson] | None]  # absent from an answer before lines
    total_price: str | None
    status: str
    failure_reason: str | None
    created_at: str


class PaymentJson(TypedDict):
    payment_id: str
    order_id: int
    status: str
    amount: str
    currency: str
    payment_method: str
    failure_reason: NotRequired[str | None]


class UserJson(TypedDict):
    id: int
    username: str
    email: str
    role: str


class ApiError(Exception):
    """A service refused or failed a call; ``code`` is the GraphQL error code."""

    def __init__(self, code: str, message: str, details: Mapping[str, Any] | None = None) -> None:
        # The problem's members as parsed (a caller may annotate its errors in place).
        super().__init__(message)
        self.code, self.message = code, message
        self.details = dict(details or {})


@dataclass
class Backend:
    """One HTTP client per service, shared by all requests (built in the app's lifespan)."""

    clients: dict[str, httpx.AsyncClient]
    calls: int = field(default=0)

    @classmethod
    def open(
        cls,
        urls: Mapping[str, str],
        *,
        timeout: float,
        transports: Mapping[str, httpx.AsyncBaseTransport] | None = None,
    ) -> Backend:
        transports = transports or {}
        return cls(
            {
                name: instrument_client(
                    httpx.AsyncClient(
                        base_url=urls[name],
                        timeout=httpx.Timeout(timeout, connect=min(timeout, 2.0)),
                        transport=transports.get(name),
                    )
                )
                for name in SERVICES
            }
        )

    async def aclose(self) -> None:
        for client in self.clients.values():
            await client.aclose()

    async def call(
        self,
        service: str,
        method: str,
        path: str,
        *,
        token: str | None = None,
        json: Any = None,
        params: Mapping[str, str | int] | None = None,
        idempotency_key: str | None = None,
    ) -> Any:
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if request_id := request_id_var.get():
            headers["X-Request-ID"] = request_id
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        self.calls += 1
        try:
            response = await self.clients[service].request(
                method, path, json=json, params=params, headers=headers
            )
        except httpx.TimeoutException:
            raise ApiError("UNAVAILABLE", f"The {service} service timed out.") from None
        except httpx.TransportError:
            raise ApiError("UNAVAILABLE", f"The {service} service is unreachable.") from None
        if response.status_code < 300:
            return response.json() if response.content else None
        problem = _problem(response)
        code = CODES.get(response.status_code, "UNAVAILABLE")
        if code == "UNAVAILABLE":
            message = f"The {service} service is unavailable; try again shortly."
        else:
            message = str(problem.get("detail") or problem.get("title") or "Refused.")
        details: dict[str, Any] = {
            k: problem[k] for k in ("order_id", "payment_id", "errors") if k in problem
        }
        raise ApiError(code, message, details)


def _problem(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
