"""The platform's edge, declared once: every public path, who serves it, which methods need no
token, and the per-client rate limits.

The gateway of ``shop run`` (``shop.devtools.envoy_config``), compose's gateway
(scripts/gen-compose-gateway.py), the cluster's Gateway API HTTPRoutes
(scripts/gen-gateway-routes.py) and the platform's OpenAPI (``shop.devtools.contract``) are
all generated from this table; tests/ha/test_gateway_config.py checks the rendered forms agree.
Pure data: no I/O, importable by anything (it was in devtools, where it did not belong).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

IDEMPOTENT = ("GET", "HEAD", "OPTIONS", "PUT", "DELETE")
READS = ("GET", "HEAD")
PAGES = ("GET", "HEAD", "POST")  # pages and forms, and GraphQL (queries by GET or POST)


@dataclass(frozen=True, slots=True)
class Route:
    """A path of the platform and who serves it.

    ``public`` lists the methods that need no token; ``optional_token`` routes take a token if
    one is given (it must then be valid) and pass without one; ``limit`` names the rate-limit
    bucket (``default`` or ``auth``, the tighter one of login and register).
    """

    path: str
    service: str
    public: tuple[str, ...] = ()
    exact: bool = False
    optional_token: bool = False
    limit: str = "default"


# The one table of the platform's paths: Envoy's routes here, the cluster's HTTPRoutes and the
# Istio policies in deploy/k8s follow it (tests/gateway checks they agree). Order matters:
# the first match wins, so exact paths come before the prefixes that contain them.
ROUTES: tuple[Route, ...] = (
    Route("/.well-known/jwks.json", "users", public=READS, exact=True),
    Route("/api/v1/users/register", "users", public=("POST",), exact=True, limit="auth"),
    Route("/api/v1/users/login", "users", public=("POST",), exact=True, limit="auth"),
    Route("/api/v1/users/refresh", "users", public=("POST",), exact=True, limit="auth"),
    Route("/api/v1/users/logout", "users", public=("POST",), exact=True),
    Route("/api/v1/users", "users"),
    Route("/api/v1/products", "products", public=READS),
    Route("/api/v1/categories", "products", public=READS, exact=True),
    Route("/api/v1/orders", "orders"),
    Route("/api/v1/payments", "payments"),
    # The storefront (GraphQL BFF and pages) checks its own sessions; a token sent to it must
    # still be valid. Generated only when a storefront is among the upstreams.
    Route("/graphql", "storefront", public=PAGES, optional_token=True),
    Route("/static/", "storefront", public=READS, optional_token=True),
    Route("/admin", "storefront", public=PAGES, optional_token=True),
    Route("/", "storefront", public=PAGES, optional_token=True),
)


@dataclass(frozen=True, slots=True)
class Bucket:
    """A token bucket per client address: ``burst`` requests at once, ``rate`` more every
    ``period`` seconds."""

    rate: int
    burst: int
    period: int = 1


@dataclass(frozen=True, slots=True)
class Limits:
    """The edge's rate limits: ``default`` for every route, ``auth`` for login, register and
    refresh (where password guessing and sign-up floods live). Set ``enabled`` false, or
    ``SHOP_RATE_LIMITING=false``, for load tests that drive everything from one address."""

    default: Bucket = Bucket(rate=500, burst=1000)
    auth: Bucket = Bucket(rate=60, burst=30, period=60)
    enabled: bool = True

    @classmethod
    def from_env(cls) -> Limits:
        flag = os.environ.get("SHOP_RATE_LIMITING", "true").strip().lower()
        return cls(enabled=flag not in {"false", "0", "no", "off"})
