"""The catalogue cache against a real Redis: invalidation across two replicas, Redis down, 304.

Two product apps (two replicas: each its own near cache and subscriber) share the product
database and one Redis under a key prefix of this test's own. Their TTLs are set far above
the test's waits, so only a pub/sub invalidation can explain a replica seeing a change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from shop.common.settings import Environment
from shop.devtools.redis import RedisServer, find_redis
from shop.products.app import create_app
from shop.products.settings import ProductsSettings
from tests.integration.conftest import SERVICE_SECRET, Platform

pytestmark = pytest.mark.asyncio
LONG_TTL = 600.0


@pytest.fixture(scope="module")
def redis_url() -> str:
    url = find_redis()
    if url is None:
        pytest.skip("no Redis and no redis-server to start")
    return url


@pytest.fixture
def keys_file(platform: Platform, tmp_path: Path) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(platform.keys.jwks()))
    return path


@pytest.fixture
async def replicas(
    database_urls: dict[str, str], keys_file: Path
) -> AsyncIterator[Callable[..., Awaitable[list[httpx.AsyncClient]]]]:
    """``await replicas(n, redis_url=...)``: n product apps, running, one client each."""
    async with AsyncExitStack() as stack:

        async def start(n: int, *, redis_url: str | None, prefix: str) -> list[httpx.AsyncClient]:
            clients = []
            for i in range(n):
                app = create_app(
                    ProductsSettings(
                        env=Environment.TEST,
                        database_url=database_urls["products"],
                        service_token_secret=SERVICE_SECRET,
                        jwt_public_keys_file=keys_file,
                        db_pool_min=1,
                        db_pool_max=4,
                        db_command_timeout=30,
                        redis_url=redis_url,
                        catalogue_cache_prefix=prefix,
                        catalogue_cache_ttl_seconds=LONG_TTL,
                        catalogue_list_ttl_seconds=LONG_TTL,
                    )
                )
                await stack.enter_async_context(app.router.lifespan_context(app))
                clients.append(
                    await stack.enter_async_context(
                        httpx.AsyncClient(
                            transport=httpx.ASGITransport(app), base_url=f"http://replica{i}"
                        )
                    )
                )
            return clients

        yield start


def _prefix() -> str:
    return f"test-catalogue-{uuid.uuid4().hex[:12]}:"


async def _eventually(check: Callable[[], Awaitable[bool]], within: float = 10.0) -> bool:
    """Poll until ``check`` holds; False if it never did within the deadline (not a timing
    claim: the deadline only stops a broken invalidation from hanging the test)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.02)
    return False


async def _new_product(client: httpx.AsyncClient, admin: dict[str, str], **body: Any) -> Any:
    payload = {"name": "Cached widget", "price": "10.00", "stock": 5, **body}
    response = await client.post("/api/v1/products", json=payload, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_write_on_one_replica_invalidates_the_other(
    platform: Platform, replicas: Any, redis_url: str
) -> None:
    a, b = await replicas(2, redis_url=redis_url, prefix=_prefix())
    product = await _new_product(a, platform.admin)
    path = f"/api/v1/products/{product['id']}"
    assert (await b.get(path)).json()["name"] == "Cached widget"
    first_page = (await b.get("/api/v1/products?limit=5")).json()
    assert [p["name"] for p in first_page["items"]] == ["Cached widget"]
    # The create's own invalidations may still be on their way to B, and B refuses a fill
    # that raced one: read until B answers from its near cache.
    assert await _eventually(lambda: _served_from_near(b, path))

    # Behind the cache's back: B keeps serving what it cached (so it is caching).
    await platform.sql(
        "products", "UPDATE products SET name = 'Changed in SQL' WHERE id = $1", product["id"]
    )
    assert (await b.get(path)).json()["name"] == "Cached widget"

    # Through the API on A: B sees the change, and the list pages too.
    body = {"name": "Renamed on A", "price": "12.00", "description": "", "category": None}
    assert (await a.put(path, json=body, headers=platform.admin)).status_code == 200

    async def b_sees_rename() -> bool:
        return (await b.get(path)).json()["name"] == "Renamed on A"

    async def b_list_sees_rename() -> bool:
        items = (await b.get("/api/v1/products?limit=5")).json()["items"]
        return [p["name"] for p in items] == ["Renamed on A"]

    assert await _eventually(b_sees_rename)
    assert await _eventually(b_list_sees_rename)

    # A reservation of two lines (the order path) on A: B's pages of both products show the
    # new stock (each product moved is dropped), and so after the release on B.
    other = await _new_product(a, platform.admin, name="Other widget", stock=4)
    other_path = f"/api/v1/products/{other['id']}"
    assert (await b.get(other_path)).json()["stock"] == 4
    assert await _eventually(lambda: _served_from_near(b, other_path))
    lines = [
        {"product_id": product["id"], "quantity": 2},
        {"product_id": other["id"], "quantity": 1},
    ]
    reserve = await a.post(
        "/api/v1/reservations",
        json={"order_id": 4242, "lines": lines},
        headers=platform.service_token(),
    )
    assert reserve.status_code == 201, reserve.text

    async def b_sees_stock(at: str, stock: int) -> bool:
        return bool((await b.get(at)).json()["stock"] == stock)

    assert await _eventually(lambda: b_sees_stock(path, 3))
    assert await _eventually(lambda: b_sees_stock(other_path, 3))
    release = await b.delete("/api/v1/reservations/4242", headers=platform.service_token())
    assert release.status_code == 200
    assert await _eventually(lambda: _same_stock(a, path, 5))
    assert await _eventually(lambda: _same_stock(a, other_path, 4))

    # A delete on B: A answers 404.
    assert (await b.delete(path, headers=platform.admin)).status_code == 204

    async def a_sees_delete() -> bool:
        return (await a.get(path)).status_code == 404

    assert await _eventually(a_sees_delete)


async def _served_from_near(client: httpx.AsyncClient, path: str) -> bool:
    before = _near_hits()
    assert (await client.get(path)).status_code == 200
    return _near_hits() > before


def _near_hits() -> float:
    return REGISTRY.get_sample_value("shop_catalogue_cache_hits_total", {"layer": "near"}) or 0.0


async def _same_stock(client: httpx.AsyncClient, path: str, stock: int) -> bool:
    return bool((await client.get(path)).json()["stock"] == stock)


async def test_reads_fall_back_to_postgresql_while_redis_is_down(
    platform: Platform, replicas: Any
) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer()
    server.start()
    try:
        (client,) = await replicas(1, redis_url=server.url, prefix=_prefix())
        product = await _new_product(client, platform.admin)
        path = f"/api/v1/products/{product['id']}"
        assert (await client.get(path)).status_code == 200
        server.stop()

        # No error on reads or writes, and a write is seen by the next read.
        for _ in range(3):
            response = await client.get(path)
            assert response.status_code == 200
            assert response.json()["name"] == "Cached widget"
        change = await client.patch(f"{path}/stock", json={"stock": 9}, headers=platform.admin)
        assert change.status_code == 200
        assert (await client.get(path)).json()["stock"] == 9
        listing = await client.get("/api/v1/products?limit=5")
        assert listing.status_code == 200
        assert listing.json()["items"][0]["stock"] == 9

        # A change made while the replica cannot hear invalidations is not hidden by it.
        await platform.sql("products", "UPDATE products SET stock = 7 WHERE id = $1", product["id"])

        async def sees_seven() -> bool:
            return bool((await client.get(path)).json()["stock"] == 7)

        assert await _eventually(sees_seven)
    finally:
        server.stop()


async def test_a_replica_starts_and_serves_with_no_redis_at_all(
    platform: Platform, replicas: Any
) -> None:
    closed = RedisServer()  # a free port nothing listens on
    closed.stop()
    (client,) = await replicas(1, redis_url=closed.url, prefix=_prefix())
    product = await _new_product(client, platform.admin)
    response = await client.get(f"/api/v1/products/{product['id']}")
    assert response.status_code == 200
    assert response.json()["id"] == product["id"]
    assert (await client.get("/api/v1/products")).status_code == 200


@pytest.mark.parametrize("cache", ["on", "off"])
async def test_etag_and_304_on_catalogue_reads(
    platform: Platform, replicas: Any, redis_url: str, cache: str
) -> None:
    (client,) = await replicas(1, redis_url=redis_url if cache == "on" else None, prefix=_prefix())
    product = await _new_product(client, platform.admin)
    for path in (f"/api/v1/products/{product['id']}", "/api/v1/products?limit=3"):
        first = await client.get(path)
        assert first.status_code == 200
        etag = first.headers["etag"]
        assert etag.startswith('"')
        # One Cache-Control: the route's own replaces the middleware's default no-store.
        (cache_control,) = first.headers.get_list("cache-control")
        assert cache_control.startswith("public, max-age=")
        again = await client.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["etag"] == etag
        weak_list = await client.get(path, headers={"If-None-Match": f'"other", W/{etag}'})
        assert weak_list.status_code == 304
        stale = await client.get(path, headers={"If-None-Match": '"not-this-one"'})
        assert stale.status_code == 200
        assert stale.json() == first.json()
        # Served from the near cache's fast path or not, the platform's headers are there.
        assert stale.headers["x-request-id"]
        assert stale.headers["content-type"] == "application/json"

    path = f"/api/v1/products/{product['id']}"
    etag = (await client.get(path)).headers["etag"]
    await client.patch(f"{path}/stock", json={"delta": 1}, headers=platform.admin)
    changed = await client.get(path, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert changed.json()["stock"] == 6


async def test_openapi_declares_the_cache_headers_and_304(replicas: Any, redis_url: str) -> None:
    (client,) = await replicas(1, redis_url=redis_url, prefix=_prefix())
    spec = (await client.get("/openapi.json")).json()
    for path in ("/api/v1/products/{product_id}", "/api/v1/products"):
        get = spec["paths"][path]["get"]
        assert {"ETag", "Cache-Control"} <= set(get["responses"]["200"]["headers"])
        assert "304" in get["responses"]
        assert any(p["name"] == "If-None-Match" for p in get["parameters"])


@pytest.mark.parametrize("cache", ["on", "off"])
async def test_the_lean_read_routes_answer_as_the_contract_says(
    platform: Platform, replicas: Any, redis_url: str, cache: str
) -> None:
    """Plain reads take the lean routes (hit or miss); what they do not take reaches the FastAPI
    routes: a missing product is the same problem, an unknown parameter a 422, and a batch by
    ``ids`` carries the same product body as the read by id."""
    (client,) = await replicas(1, redis_url=redis_url if cache == "on" else None, prefix=_prefix())
    product = await _new_product(client, platform.admin, name="Lean widget")
    by_id = await client.get(f"/api/v1/products/{product['id']}")
    assert by_id.status_code == 200
    assert by_id.json() == product
    (in_batch,) = (await client.get(f"/api/v1/products?ids={product['id']}")).json()["items"]
    assert in_batch == by_id.json()

    missing = await client.get("/api/v1/products/999999999")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["status"] == 404
    assert missing.headers["x-request-id"]

    unknown = await client.get(f"/api/v1/products/{product['id']}?fields=name")
    assert unknown.status_code == 422
    assert unknown.headers["content-type"] == "application/problem+json"
    nul = await client.get("/api/v1/products", params={"category": "a\x00b"})
    assert nul.status_code == 422


class _StalledClose:
    """A subscription whose close never finishes, as redis-py's can (redis/redis-py#3941)
    and, from 8.2.0, without letting a cancel end it."""

    def __init__(self, pubsub: Any, stalled: list[asyncio.Future[None]]) -> None:
        self._pubsub = pubsub
        self._stalled = stalled  # the test ends them, so its event loop can close

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pubsub, name)

    async def aclose(self) -> None:
        stuck = asyncio.get_running_loop().create_future()
        self._stalled.append(stuck)
        while not stuck.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(stuck)  # shrugs off every cancel, as 8.2.0's close does


async def test_a_stalled_redis_close_does_not_hold_up_a_shutdown(redis_url: str) -> None:
    """A replica's shutdown (and so every test's teardown) ends even when closing the Redis
    subscription never does: issue 26's CI run hung there for 15 minutes with redis 8.2.0."""
    from shop.products import cache as cache_module

    cache = cache_module.CatalogueCache.from_url(redis_url, prefix=_prefix())
    real = cache._redis.pubsub
    stalled: list[asyncio.Future[None]] = []
    cache._redis.pubsub = lambda: _StalledClose(real(), stalled)  # type: ignore[method-assign]
    started = time.monotonic()
    try:
        async with asyncio.timeout(30):
            async with cache.running():
                assert cache.subscribed
        assert time.monotonic() - started < 10  # one CLOSE_SECONDS, not forever
        assert len(stalled) == 1  # the close was tried, stalled, and left behind
    finally:
        for stuck in stalled:
            stuck.set_result(None)
        await asyncio.sleep(0)


async def test_search_and_categories_are_cached_and_follow_catalogue_edits(
    platform: Platform, replicas: Any, redis_url: str
) -> None:
    a, b = await replicas(2, redis_url=redis_url, prefix=_prefix())
    product = await _new_product(a, platform.admin, name="Wireless Headphones", category="audio")
    path = f"/api/v1/products/{product['id']}"
    search = "/api/v1/products?q=wireles+headphnes&in_stock=true"

    async def b_finds(name: str | None) -> bool:
        items = (await b.get(search)).json()["items"]
        return [p["name"] for p in items] == ([] if name is None else [name])

    async def b_counts(count: int) -> bool:
        items = (await b.get("/api/v1/categories")).json()["items"]
        return items == ([{"name": "audio", "count": count}] if count else [])

    assert await _eventually(lambda: b_finds("Wireless Headphones"))
    assert await _eventually(lambda: b_counts(1))
    assert await _eventually(lambda: _served_from_near(b, search))

    # Behind the cache's back: the repeated search and the counts come from the cache.
    await platform.sql(
        "products", "UPDATE products SET stock = 0, category = 'x' WHERE id = $1", product["id"]
    )
    assert await b_finds("Wireless Headphones")
    assert await b_counts(1)

    # Through the API on A: a rename, then a stock change, each shows in B's search.
    body = {"name": "Wireless Earbuds", "price": "12.00", "description": "", "category": "audio"}
    assert (await a.put(path, json=body, headers=platform.admin)).status_code == 200
    assert await _eventually(lambda: b_finds(None))
    earbuds = "/api/v1/products?q=wireles+earbds&in_stock=true"
    assert (await b.get(earbuds)).json()["total"] == 0  # stock 0 from the SQL above
    stock = await a.patch(f"{path}/stock", json={"stock": 3}, headers=platform.admin)
    assert stock.status_code == 200

    async def b_finds_earbuds() -> bool:
        return bool((await b.get(earbuds)).json()["total"] == 1)

    assert await _eventually(b_finds_earbuds)
    assert (await a.delete(path, headers=platform.admin)).status_code == 204
    assert await _eventually(lambda: b_counts(0))


async def test_reads_in_one_loop_iteration_go_to_redis_as_one_mget(redis_url: str) -> None:
    """``GetBatch``: each caller gets its own key's value; the reads of one iteration are one
    MGET (``most`` keys each), a read alone a GET; a caller that goes away while the others
    gather leaves their answers alone."""
    from redis.asyncio import Redis

    from shop.products.cache import GetBatch

    client = Redis.from_url(redis_url)
    prefix = _prefix()
    sent: list[list[str]] = []
    real_mget, real_get = client.mget, client.get

    async def counting_mget(keys: list[str]) -> Any:
        sent.append(list(keys))
        return await real_mget(keys)

    async def counting_get(key: str) -> Any:
        sent.append([key])
        return await real_get(key)

    client.mget = counting_mget  # type: ignore[method-assign]
    client.get = counting_get  # type: ignore[method-assign]
    try:
        await client.mset({f"{prefix}{i}": f"v{i}".encode() for i in range(0, 300, 2)})
        batch = GetBatch(client, most=128)
        values = await asyncio.gather(*(batch.get(f"{prefix}{i}") for i in range(300)))
        assert values == [f"v{i}".encode() if i % 2 == 0 else None for i in range(300)]
        assert [len(keys) for keys in sent] == [128, 128, 44]

        sent.clear()
        assert await batch.get(f"{prefix}4") == b"v4"
        assert sent == [[f"{prefix}4"]]

        sent.clear()
        leaving = asyncio.ensure_future(batch.get(f"{prefix}0"))
        staying = asyncio.ensure_future(batch.get(f"{prefix}2"))
        await asyncio.sleep(0)  # the first is gathering, the second has joined it
        leaving.cancel()
        assert await staying == b"v2"
        assert sent == [[f"{prefix}2"]]
        with pytest.raises(asyncio.CancelledError):
            await leaving
    finally:
        await client.delete(*(f"{prefix}{i}" for i in range(0, 300, 2)))
        await client.aclose()


async def test_a_batch_that_fails_fails_each_of_its_reads() -> None:
    """Redis unreachable: every caller of the batch gets the error its own GET would have
    raised, which the cache turns into a read from PostgreSQL (test above)."""
    from redis.asyncio import Redis
    from redis.exceptions import ConnectionError as RedisConnectionError

    from shop.devtools.processes import free_port
    from shop.products.cache import GetBatch

    client = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.25)
    try:
        batch = GetBatch(client)
        outcomes = await asyncio.gather(
            *(batch.get(f"k{i}") for i in range(5)), return_exceptions=True
        )
        assert all(isinstance(o, RedisConnectionError) for o in outcomes), outcomes
    finally:
        await client.aclose()
