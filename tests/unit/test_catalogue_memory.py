"""What the catalogue cache costs in memory: each body its own bytes, the near cache its bound."""

from __future__ import annotations

import gc
import tracemalloc

import orjson
from redis.exceptions import TimeoutError as RedisTimeoutError

from shop.products.cache import ENTRY_OVERHEAD, CatalogueCache, exact

PAGE = {"id": 1, "name": "Product 00001 oak", "description": "An oak item. " * 25, "stock": 7}


def _traced_bytes(make: object) -> int:
    """Bytes still allocated after keeping 200 results of ``make()``."""
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        kept = [make() for _ in range(200)]  # type: ignore[operator]
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert len(kept) == 200
    return sum(s.size_diff for s in after.compare_to(before, "filename"))


def test_a_kept_body_holds_about_its_own_size() -> None:
    body = orjson.dumps(PAGE)
    assert exact(body) == body
    per_body = _traced_bytes(lambda: exact(orjson.dumps(PAGE))) / 200
    assert per_body < len(body) + 200  # the object header and the list's slot


def test_orjson_output_as_returned_holds_its_whole_buffer() -> None:
    """Why ``exact`` exists: were this to stop holding, the copy could go."""
    body = orjson.dumps(PAGE)
    per_body = _traced_bytes(lambda: orjson.dumps(PAGE)) / 200
    assert per_body > 3 * len(body)


class _Redis:
    """The commands a read and an invalidation use; nothing is stored: every read loads.
    ``sent`` holds each pipeline's commands as executed."""

    def __init__(self) -> None:
        self.sent: list[list[tuple[str, str]]] = []

    async def get(self, key: str) -> None:
        return None

    async def mget(self, keys: list[str]) -> list[None]:
        return [None] * len(keys)

    async def set(self, key: str, value: bytes, px: int) -> None:
        pass

    async def delete(self, key: str) -> int:
        return 0

    async def publish(self, channel: str, message: str) -> int:
        return 0

    def pipeline(self, transaction: bool = True) -> _Pipeline:
        return _Pipeline(self.sent)

    async def incr(self, key: str) -> int:
        return 1


class _Pipeline:
    """A product page's invalidation: DEL and PUBLISH sent together."""

    def __init__(self, sent: list[list[tuple[str, str]]]) -> None:
        self.sent = sent
        self.commands: list[tuple[str, str]] = []

    def delete(self, key: str) -> None:
        self.commands.append(("DEL", key))

    def publish(self, channel: str, message: str) -> None:
        self.commands.append(("PUBLISH", message))

    async def execute(self) -> list[int]:
        self.sent.append(self.commands)
        return [0] * len(self.commands)


def _cache(**bounds: int) -> CatalogueCache:
    cache = CatalogueCache(_Redis(), **bounds)  # type: ignore[arg-type]
    cache._subscribed.set()  # as if subscribed to invalidations: the near cache is used
    return cache


async def _fill(cache: CatalogueCache, product_id: int, size: int) -> None:
    async def load() -> bytes:
        return b"x" * size

    await cache.product(product_id, load)


async def test_the_near_cache_holds_at_most_its_bytes_dropping_the_oldest() -> None:
    entry = 1000 + ENTRY_OVERHEAD
    cache = _cache(near_bytes=3 * entry)
    for product_id in range(1, 6):
        await _fill(cache, product_id, 1000)
    assert cache.near_size == (3, 3 * entry)
    assert cache.near_product(2) is None
    assert cache.near_product(3) is not None
    assert cache.near_product(5) is not None
    await _fill(cache, 6, 2000)  # a larger body pushes out as many as it needs
    assert cache.near_size == (2, entry + 2000 + ENTRY_OVERHEAD)
    await cache.invalidate(6)
    assert cache.near_size == (1, entry)


async def test_a_full_near_cache_drops_its_oldest_64th_at_once() -> None:
    """One walk of the dict per batch of drops, not one per fill (the walk crosses the holes
    earlier drops left at its front): a fill into a full cache of 640 drops the oldest one it
    needs and 10 more, and the next 10 fills drop nothing."""
    cache = _cache(near_entries=640)
    for product_id in range(1, 642):
        await _fill(cache, product_id, 10)
    assert cache.near_size[0] == 630
    assert cache.near_product(11) is None
    assert cache.near_product(12) is not None
    for product_id in range(642, 652):
        await _fill(cache, product_id, 10)
    assert cache.near_size[0] == 640
    assert cache.near_product(12) is not None


async def test_near_entries_leave_the_collector_at_its_first_pass() -> None:
    """A full near cache is tens of thousands of entries, filled and dropped under load: each
    one a tracked object would reach the collector's oldest generation, and every full pass
    would walk them all. A tuple of atoms stops being tracked at the first pass."""
    cache = _cache()
    await _fill(cache, 1, 10)
    gc.collect()
    assert not gc.is_tracked(cache._near["p:1"])
    assert cache.near_product(1) is not None


async def test_the_lines_of_a_reservation_are_dropped_in_one_round_trip() -> None:
    cache = _cache()
    for product_id in (1, 2, 3):
        await _fill(cache, product_id, 10)
    redis: _Redis = cache._redis  # type: ignore[assignment]
    await cache.invalidate_products([1, 3])
    assert cache.near_product(1) is None
    assert cache.near_product(3) is None
    assert cache.near_product(2) is not None
    # One pipeline: each page's delete and its message, as a single invalidation sends them.
    [commands] = redis.sent
    assert [c for c, _ in commands] == ["DEL", "PUBLISH", "DEL", "PUBLISH"]
    assert [m for c, m in commands if c == "PUBLISH"] == ["p:1", "p:3"]
    await cache.invalidate_products([])
    assert len(redis.sent) == 1  # nothing moved: no round trip


async def test_an_invalidation_is_sent_while_reads_skip_a_failed_redis() -> None:
    """A read that fails opens a window in which reads skip Redis; an invalidation in it is
    still sent (skipped, it would leave the other replicas the old page for its TTL)."""
    cache = _cache()
    redis: _Redis = cache._redis  # type: ignore[assignment]

    async def timed_out(key: str) -> None:
        raise RedisTimeoutError("Timeout reading from socket")

    redis.get = timed_out  # type: ignore[method-assign]
    await _fill(cache, 1, 10)  # the read fails: loaded, and Redis skipped for a while
    assert cache._redis_down_until > 0
    await cache.invalidate_products([1])
    assert [[c for c, _ in commands] for commands in redis.sent] == [["DEL", "PUBLISH"]]


async def test_a_body_larger_than_the_bound_is_not_held_near() -> None:
    cache = _cache(near_bytes=500)
    await _fill(cache, 1, 1000)
    assert cache.near_size == (0, 0)


async def test_no_near_entries_means_no_near_cache() -> None:
    cache = _cache(near_entries=0)
    await _fill(cache, 1, 10)
    assert cache.near_size == (0, 0)


async def test_dropping_the_list_pages_keeps_the_product_pages() -> None:
    """invalidate(None) drops every near list page and only those (it walks the list keys
    alone: a walk of every near key was 2 ms per order with 20,000 product pages held)."""
    entry = 100 + ENTRY_OVERHEAD
    cache = _cache(near_entries=5)

    async def load() -> bytes:
        return b"x" * 100

    for product_id in range(1, 4):
        await _fill(cache, product_id, 100)
    for offset in (0, 20, 40):
        await cache.page(f"offset={offset}", load)
    # Five entries at most: the oldest product page made room for the last list page.
    assert cache.near_size == (5, 5 * entry)
    assert cache.near_page("offset=40") is not None
    await cache.invalidate(None)
    assert cache.near_size == (2, 2 * entry)
    assert cache.near_page("offset=0") is None
    assert cache.near_product(2) is not None
    assert cache.near_product(3) is not None
    # The list keys' record follows evictions too: a page pushed out is not dropped again.
    for offset in range(0, 200, 20):
        await cache.page(f"offset={offset}", load)
    assert cache.near_size == (5, 5 * entry)
    await cache.invalidate(None)
    assert cache.near_size == (0, 0)
