"""The platform under test, as ``make run`` starts it: its own databases, a loaded catalogue and
users, four processes, the Envoy gateway in front of them (rate limits off: one address drives
all the load), and the event side.

The event side (issue 31): RabbitMQ found as ``shop run`` finds it (``SHOP_AMQP_URL``, else
127.0.0.1:5672, else a private node; ``shop.devtools.broker``), on the run's own exchange and
queue names (``<prefix>events``, ``<prefix><consumer>``), so every consumer runs as it does in
``make run``: the catalogue cache's in the product service, the order-follows-refund one in the
order service, and the notification worker with the SMTP sink (``shop.devtools.mailsink``, the
local stand-in for SES) started by the same ``EventProcesses`` as ``shop run``. The outboxes are
relayed by one ``shop relay`` process for the four services (``relay="process"``, the default);
``relay="in-process"`` sets ``SHOP_RELAY_IN_PROCESS`` and every service process relays its own
outbox instead (the before of docs/events.md's comparison). ``events=False`` leaves the broker
out (the bench as it was before issue 31: the outboxes only fill).

``Platform.pids`` names every process the run samples: the services, the gateway, ``relay``,
``notifications``, ``mailsink`` (not the platform's: SES stands there in production) and
``rabbitmq`` (the broker's pid, found by its listening port; a broker shared with other work on
the machine is charged for that work too).

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
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx
import psutil
from redis.asyncio import Redis

from shop.common import migrations
from shop.common.events.broker import Topology, delete_topology
from shop.devtools.broker import find_broker
from shop.devtools.events import EventProcesses
from shop.devtools.gateway import Gateway
from shop.devtools.postgres import (
    SERVICE_DATABASES,
    Server,
    create_databases,
    drop_databases,
    find_server,
)
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
    events: EventProcesses | None = None  # the notification worker and the SMTP sink
    broker_pid: int | None = None

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
        if self.events is not None:
            if self.events.worker is not None:
                pids["notifications"] = self.events.worker.pid
            if self.events.sink is not None:
                pids["mailsink"] = self.events.sink.pid
        if self.broker_pid is not None:
            pids["rabbitmq"] = self.broker_pid
        return pids

    @property
    def mail_dir(self) -> Path | None:
        """Where the SMTP sink writes one ``.eml`` per mail received (None: no event side)."""
        return self.events.mail_dir if self.events is not None else None


# Processes whose CPU a run reports but that are not the platform's own: the SMTP sink stands
# in for Amazon SES; the load generator (wrk) and PostgreSQL are reported on lines of their own.
NOT_THE_PLATFORM = ("mailsink", "products_nocache")


def mails_received(folder: Path | None) -> int:
    """How many mails the sink has written so far."""
    if folder is None or not folder.exists():
        return 0
    return sum(1 for entry in os.scandir(folder) if entry.name.endswith(".eml"))


def listening_pid(port: int) -> int | None:
    """The pid of the process listening on loopback ``port`` (the broker's), if readable."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
                return conn.pid
    except psutil.Error:
        return None
    return None


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


@contextmanager
def scratch_catalogue(prefix: str, *, products: int) -> Iterator[str]:
    """The URL of a scratch products database, migrated to this checkout's head and loaded
    with the bench's catalogue (``load_catalogue``), dropped afterwards."""
    server = find_server(ROOT / ".shop" / "pgdata")
    name = f"{prefix}{secrets.token_hex(3)}_products"
    asyncio.run(create_databases(server, [name]))
    try:
        url = server.database_url(name)
        migrations.upgrade("products", url)
        asyncio.run(load_catalogue(url, products=products))
        yield url
    finally:
        asyncio.run(drop_databases(server, [name]))


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
    mail_folder: Path | None = None,
    relay: str = "process",
    events: bool = True,
) -> Iterator[Platform]:
    """Create, migrate and load the databases, start the four services and (with a broker and
    ``events``) the relay process, the notification worker and the SMTP sink (its folder made
    in ``mail_folder``, by default on tmpfs: ``_sink_folder``); undo it all after."""
    if relay not in RELAY_MODES:
        raise ValueError(f"relay is one of {RELAY_MODES}")
    from shop.common.auth import generate_private_key_pem
    from shop.devtools.local import prepare

    server = find_server(ROOT / ".shop" / "pgdata")
    prefix = f"bench{secrets.token_hex(3)}_"
    workdir = Path(tempfile.mkdtemp(prefix="shop-bench-"))
    mail_folder = _sink_folder(mail_folder)
    platform: Platform | None = None
    topology: Topology | None = None
    try:
        broker = find_broker(ROOT / ".shop") if events else None
        amqp: dict[str, str] = {}
        if broker is not None:
            topology = Topology(broker.url, f"{prefix}events", prefix)
            amqp = {
                "SHOP_AMQP_URL": broker.url,
                "SHOP_AMQP_EXCHANGE": topology.exchange,
                "SHOP_AMQP_QUEUE_PREFIX": topology.queue_prefix,
            }
        urls = prepare(server, prefix=prefix)
        asyncio.run(load_catalogue(urls["products"], products=products))
        asyncio.run(load_users(urls["users"], users=users))
        if synchronous_commit is not None:  # an experiment: what the WAL flush costs
            asyncio.run(_set_synchronous_commit(server, prefix, synchronous_commit))
        secrets_dir = workdir / "secrets"
        secrets_dir.mkdir(mode=0o700)
        (secrets_dir / "jwt-signing.pem").write_text(generate_private_key_pem())
        ports = {name: free_port() for name in SERVICES}
        service_token_secret = secrets.token_urlsafe(32)
        envs = platform_env(
            database_urls=urls,
            ports=ports,
            secrets_dir=secrets_dir,
            admin_password=secrets.token_urlsafe(16),
            service_token_secret=service_token_secret,
            extra={**service_env(workers, relay=relay), **amqp},
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
        platform.relay = relay if broker is not None else "none"
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
        if topology is not None:  # the notification worker and the sink, as `shop run` has them
            platform.events = EventProcesses(
                workdir / "events",
                topology.url,
                mail_folder=mail_folder,
                users_url=platform.procs["users"].url,
                service_token_secret=service_token_secret,
                extra={
                    **amqp,
                    "SHOP_REDIS_URL": redis_url or "",
                    "SHOP_INBOX_KEY_PREFIX": f"{prefix}inbox:",
                },
            )
            platform.events.start()
            platform.broker_pid = listening_pid(urlsplit(topology.url).port or 5672)
        wait_ready(list(platform.procs.values()), timeout=120)
        if platform.events is not None and topology is not None:
            _wait_for(platform.events.ready, "the notification worker", 60)
            # Events published before a consumer's queue is bound would be dropped unrouted.
            asyncio.run(_wait_for_queues(topology, ["notifications", "orders"]))
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
        if platform and platform.events:
            platform.events.stop()
        for proc in platform.procs.values() if platform else ():
            proc.stop()
        if topology is not None:
            asyncio.run(_forget_events(topology, platform.redis_url if platform else None))
        asyncio.run(drop_databases(server, _database_names(prefix)))
        if keep_logs:
            print(f"service logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        if mail_folder is not None:
            shutil.rmtree(mail_folder, ignore_errors=True)


# Where the SMTP sink keeps the bench's mails: in memory (tmpfs) where the machine has it. The
# sink stands in for SES, which keeps nothing on the platform's disks; on this machine's ext4 a
# file per mail cost 0.7-1.0 ms more of kernel CPU than on tmpfs, most of the sink's CPU
# (bench.mailsink_cost --folder; docs/events.md, "Issue 31, seventh round"). make run's sink
# writes .shop/mail/, to be read.
MEMORY_FOLDER = Path("/dev/shm")


def _sink_folder(parent: Path | None) -> Path | None:
    """A new folder for the SMTP sink in ``parent`` if given (an experiment), else on tmpfs
    where the machine has it writable; None: the sink writes under the bench's workdir."""
    if parent is None:
        if not (MEMORY_FOLDER.is_dir() and os.access(MEMORY_FOLDER, os.W_OK)):
            return None
        parent = MEMORY_FOLDER
    return Path(tempfile.mkdtemp(prefix="shop-bench-mail-", dir=parent))


def _wait_for(ready: Callable[[], bool], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} was not ready after {timeout:g} s")
        time.sleep(0.2)


async def _wait_for_queues(topology: Topology, consumers: list[str]) -> None:
    """Until every durable consumer queue exists (a passive declare succeeds), 60 s at most."""
    deadline = time.monotonic() + 60
    pending = list(consumers)
    while pending:
        connection = await topology.connect()
        async with connection:
            for consumer in list(pending):
                channel = await connection.channel()
                try:
                    await channel.declare_queue(topology.queue(consumer), passive=True)
                    pending.remove(consumer)
                except Exception:  # not declared yet (the broker closed the channel)
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"queues not declared: {pending}") from None
        if pending:
            await asyncio.sleep(0.3)


async def _forget_events(topology: Topology, redis_url: str | None) -> None:
    """The run's exchange and queues, and its notification inbox keys in Redis."""
    await delete_topology(topology, ["notifications", "orders"])
    if redis_url:
        client = Redis.from_url(redis_url)
        try:
            keys = [k async for k in client.scan_iter(match=f"{topology.queue_prefix}inbox:*")]
            for start in range(0, len(keys), 500):
                await client.delete(*keys[start : start + 500])
        finally:
            await client.aclose()


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
