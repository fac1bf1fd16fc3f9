"""The platform under test: its own databases, a loaded catalogue and users, four processes,
and the Envoy gateway in front of them (rate limits off: one address drives all the load).

With a broker (``SHOP_AMQP_URL`` in the environment, and ``SHOP_AMQP_EXCHANGE`` to keep to a
run's own exchange) the outboxes are relayed as ``shop run`` relays them: by one ``shop relay``
process for the four services (``relay="process"``, the default), whose CPU is reported as its
own line ``relay``, not in the services' CPU; ``relay="in-process"`` sets
``SHOP_RELAY_IN_PROCESS`` and every service process relays its own outbox instead (the before
of docs/events.md's comparison).

Everything is created with a random prefix on the PostgreSQL the project finds (DATABASE_URL,
else 127.0.0.1:5432, else the embedded server) and dropped at the end, so a run never sees
another's data and leaves nothing behind.
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx

from shop.devtools.gateway import Gateway
from shop.devtools.postgres import SERVICE_DATABASES, Server, drop_databases, find_server
from shop.devtools.processes import (
    SERVICES,
    RelayProcess,
    ServiceProcess,
    free_port,
    platform_env,
    relay_env,
    wait_ready,
)
from shop.devtools.redis import find_redis
from shop.edge import Limits

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "bench-password-123"  # noqa: S105 - every loaded customer's; a benchmark fixture
CATEGORIES = 20


@dataclass
class Platform:
    server: Server
    prefix: str
    urls: dict[str, str]
    workdir: Path
    products: int
    users: int
    workers: int = 1
    procs: dict[str, ServiceProcess] = field(default_factory=dict)
    gateway: Gateway | None = None
    redis_url: str | None = None
    relay: str = "process"  # or "in-process"; "none" without a broker

    def url(self, service: str, *, via_gateway: bool = False) -> str:
        """Where a client reaches ``service``: its own process, or the gateway in front."""
        if via_gateway:
            assert self.gateway is not None
            return self.gateway.url
        return self.procs[service].url

    @property
    def catalogue_prefix(self) -> str:
        """The product service's SHOP_CATALOGUE_CACHE_PREFIX in this run."""
        return catalogue_prefix(self.prefix)

    def pids(self) -> dict[str, int]:
        pids = {name: p.process.pid for name, p in self.procs.items() if p.process}
        if self.gateway is not None and self.gateway.process is not None:
            pids["gateway"] = self.gateway.process.pid
        return pids


def catalogue_prefix(prefix: str) -> str:
    return f"{prefix}catalogue:"


def _database_names(prefix: str) -> list[str]:
    return [prefix + name for name in SERVICE_DATABASES.values()] + [prefix + "pgbench"]


# The bench catalogue's words: names like "Compact Oak Lamp", so that a search word matches
# a shop's share of the catalogue (a noun ~2.5%, an adjective and a noun ~0.2%), not all of it.
ADJECTIVES = (
    "compact", "wireless", "classic", "portable", "premium", "vintage", "modern", "rustic",
    "smart", "foldable", "heavy", "light", "organic", "waterproof", "ergonomic", "electric",
    "handmade", "deluxe", "mini", "large",
)  # fmt: skip
MATERIALS = (
    "steel", "oak", "linen", "wool", "cotton", "glass", "bamboo", "leather", "clay", "copper",
    "walnut", "ceramic", "silk", "marble", "canvas", "brass", "maple", "velvet", "granite", "cork",
)  # fmt: skip
NOUNS = (
    "lamp", "chair", "kettle", "headphones", "speaker", "keyboard", "backpack", "jacket",
    "blanket", "mug", "teapot", "notebook", "wallet", "watch", "sneakers", "desk", "shelf",
    "pillow", "blender", "toaster", "camera", "bicycle", "tent", "umbrella", "scarf", "vase",
    "candle", "basket", "mirror", "clock", "charger", "monitor", "router", "printer", "drone",
    "guitar", "skillet", "thermos", "bookcase", "hammock",
)  # fmt: skip


def catalogue_rows(products: int, *, seed: int = 8) -> Iterator[tuple[object, ...]]:
    """The bench catalogue's rows (name, description, price, stock, category), reproducible."""
    rng = random.Random(seed)
    for i in range(1, products + 1):
        adjective, material, noun = (
            rng.choice(ADJECTIVES),
            rng.choice(MATERIALS),
            rng.choice(NOUNS),
        )
        extra = " ".join(rng.sample(ADJECTIVES + MATERIALS, 3))
        yield (
            f"{adjective.title()} {material.title()} {noun.title()} {i:05d}",
            f"A {adjective} {noun} made of {material}, number {i} of the benchmark catalogue."
            f" Also described as {extra}. " * 2,
            Decimal(rng.randrange(199, 50_000)) / 100,
            rng.randrange(2_000, 10_000),  # every product in stock: the order scenarios buy any
            f"category-{rng.randrange(1, CATEGORIES + 1):02d}",
        )


async def load_catalogue(url: str, *, products: int, seed: int = 8) -> None:
    """``products`` products in CATEGORIES categories, with prices and stock like a shop's:
    one COPY (100,000 rows in seconds, not 100,000 requests)."""
    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table(
            "products",
            records=catalogue_rows(products, seed=seed),
            columns=["name", "description", "price", "stock", "category"],
        )
        # A catalogue in steady state: statistics and a visibility map (index-only counts),
        # and the GIN indexes' pending lists merged.
        await conn.execute("VACUUM ANALYZE products")
    finally:
        await conn.close()


async def load_users(url: str, *, users: int) -> None:
    """``users`` customers, bench_user_00001..., whose password hashes at the service's cost."""
    from argon2 import PasswordHasher

    from shop.users.settings import UsersSettings

    fields = UsersSettings.model_fields
    hasher = PasswordHasher(
        time_cost=fields["argon2_time_cost"].default,
        memory_cost=fields["argon2_memory_kib"].default,
        parallelism=fields["argon2_parallelism"].default,
    )
    # One hash for all: each login still verifies at full cost, and loading stays fast.
    password_hash = hasher.hash(PASSWORD)
    rows = [
        (f"bench_user_{i:05d}", f"bench_user_{i:05d}@bench.example", password_hash, "customer")
        for i in range(1, users + 1)
    ]
    conn = await asyncpg.connect(url)
    try:
        await conn.copy_records_to_table(
            "users", records=rows, columns=["username", "email", "password_hash", "role"]
        )
        await conn.execute("ANALYZE users")
    finally:
        await conn.close()


def login_tokens(platform: Platform, count: int) -> list[str]:
    """Access tokens of the first ``count`` customers, logged in through the API."""
    tokens = []
    with httpx.Client(base_url=platform.url("users"), timeout=30) as client:
        for i in range(1, count + 1):
            r = client.post(
                "/api/v1/users/login",
                json={"username": f"bench_user_{i:05d}", "password": PASSWORD},
            )
            r.raise_for_status()
            tokens.append(r.json()["access_token"])
    return tokens


RELAY_MODES = ("process", "in-process")


def service_env(workers: int, *, relay: str = "process") -> dict[str, str]:
    return {
        "SHOP_RELAY_IN_PROCESS": "true" if relay == "in-process" else "false",
        # One client address drives all the load: the per-IP login limit would refuse it.
        "SHOP_RATE_LIMITING": "false",
        "SHOP_WORKERS": str(workers),
        "SHOP_LOG_LEVEL": "INFO",  # the access log stays on: it is part of the cost
        # Recovery's pass is a query every 5 s, committed in the order database like the saga's
        # writes: once a minute here, so the commits counted per order are the saga's.
        "SHOP_RECOVERY_INTERVAL_SECONDS": "60",
        # The pools' defaults (10 per process) are the deployment's; kept as they are.
    }


@contextmanager
def running_platform(
    *,
    products: int,
    users: int,
    workers: int = 1,
    keep_logs: bool = False,
    synchronous_commit: str | None = None,
    relay: str = "process",
) -> Iterator[Platform]:
    """Create, migrate and load the databases, start the four services (and, with a broker and
    ``relay="process"``, the relay process); undo it all after."""
    if relay not in RELAY_MODES:
        raise ValueError(f"relay is one of {RELAY_MODES}")
    from shop.common.auth import generate_private_key_pem
    from shop.devtools.local import prepare

    server = find_server(ROOT / ".shop" / "pgdata")
    prefix = f"bench{secrets.token_hex(3)}_"
    workdir = Path(tempfile.mkdtemp(prefix="shop-bench-"))
    platform: Platform | None = None
    try:
        urls = prepare(server, prefix=prefix)
        asyncio.run(load_catalogue(urls["products"], products=products))
        asyncio.run(load_users(urls["users"], users=users))
        if synchronous_commit is not None:  # an experiment: what the WAL flush costs
            asyncio.run(_set_synchronous_commit(server, prefix, synchronous_commit))
        secrets_dir = workdir / "secrets"
        secrets_dir.mkdir(mode=0o700)
        (secrets_dir / "jwt-signing.pem").write_text(generate_private_key_pem())
        ports = {name: free_port() for name in SERVICES}
        envs = platform_env(
            database_urls=urls,
            ports=ports,
            secrets_dir=secrets_dir,
            admin_password=secrets.token_urlsafe(16),
            service_token_secret=secrets.token_urlsafe(32),
            extra=service_env(workers, relay=relay),
        )
        # The catalogue cache: Redis found as PostgreSQL is (SHOP_REDIS_URL, else the local one,
        # else a private redis-server), under this run's own key prefix. A second product
        # process with the cache off serves the *_nocache scenarios.
        redis_url = find_redis()
        cache_env = (
            {"SHOP_REDIS_URL": redis_url, "SHOP_CATALOGUE_CACHE_PREFIX": catalogue_prefix(prefix)}
            if redis_url
            else {}
        )
        envs["products"] = {**envs["products"], **cache_env}
        ports["products_nocache"] = free_port()
        envs["products_nocache"] = {
            **envs["products"],
            "SHOP_PORT": str(ports["products_nocache"]),
            "SHOP_CATALOGUE_CACHE": "false",
        }
        platform = Platform(server, prefix, urls, workdir, products, users, workers)
        platform.redis_url = redis_url
        platform.relay = relay if os.environ.get("SHOP_AMQP_URL") else "none"
        for name in [*SERVICES, "products_nocache"]:
            proc = ServiceProcess(
                name if name in SERVICES else "products",
                ports[name],
                envs[name],
                workdir / f"{name}.log",
            )
            platform.procs[name] = proc
            proc.start()
        if platform.relay == "process":  # the four outboxes, as `shop run` relays them
            port = free_port()
            platform.procs["relay"] = RelayProcess(
                "relay",
                port,
                relay_env(envs, SERVICES, port),
                workdir / "relay.log",
                services=SERVICES,
            )
            platform.procs["relay"].start()
        wait_ready(list(platform.procs.values()), timeout=120)
        platform.gateway = Gateway(
            state_dir=workdir / "gateway",
            port=free_port(),
            upstreams={name: [ports[name]] for name in SERVICES},
            limits=Limits(enabled=False),
        )
        platform.gateway.start()
        yield platform
    finally:
        if platform and platform.gateway:
            platform.gateway.stop()
        for proc in platform.procs.values() if platform else ():
            proc.stop()
        asyncio.run(drop_databases(server, _database_names(prefix)))
        if keep_logs:
            print(f"service logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


async def _set_synchronous_commit(server: Server, prefix: str, value: str) -> None:
    conn = await asyncpg.connect(server.url)
    try:
        for name in SERVICE_DATABASES.values():
            await conn.execute(
                f'ALTER DATABASE "{prefix}{name}" SET synchronous_commit = '
                + {"on": "on", "off": "off"}[value]
            )
    finally:
        await conn.close()


def pgbench_database(platform: Platform) -> str:
    """The URL of this run's pgbench database (created empty; pgbench -i fills it)."""
    name = platform.prefix + "pgbench"

    async def create() -> None:
        conn = await asyncpg.connect(platform.server.url)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return platform.server.database_url(name)


def environment() -> dict[str, str]:
    """What a result should say about where it ran."""
    return {
        "cpus": str(os.cpu_count()),
        "load_average": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
