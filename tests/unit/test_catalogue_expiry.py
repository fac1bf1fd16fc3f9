"""Pages filled together do not expire together: each fill's TTL is drawn below its bound."""

from __future__ import annotations

import time

from shop.products.cache import TTL_SPREAD, CatalogueCache


class _Redis:
    """Nothing stored (every read loads); the TTL of each SET is recorded."""

    def __init__(self) -> None:
        self.ttls_ms: list[int] = []

    async def get(self, key: str) -> None:
        return None

    async def mget(self, keys: list[str]) -> list[None]:
        return [None] * len(keys)

    async def set(self, key: str, value: bytes, px: int) -> None:
        self.ttls_ms.append(px)


async def _load() -> bytes:
    return b'{"id": 1}'


async def test_fills_expire_spread_out_below_the_bound() -> None:
    redis = _Redis()
    cache = CatalogueCache(redis, ttl=300.0)  # type: ignore[arg-type]
    cache._subscribed.set()  # as if subscribed to invalidations: the near cache is used
    start = time.monotonic()
    for product_id in range(1, 201):
        await cache.product(product_id, _load)
    end = time.monotonic()
    assert len(redis.ttls_ms) == 200
    assert all(TTL_SPREAD * 300_000 - 1 <= px <= 300_000 for px in redis.ttls_ms)
    assert max(redis.ttls_ms) - min(redis.ttls_ms) > 0.1 * 300_000  # spread, not one instant
    near_expiries = [expires for expires, _, _ in cache._near.values()]
    assert all(start + TTL_SPREAD * 300 <= e <= end + 300 for e in near_expiries)
    assert max(near_expiries) - min(near_expiries) > 0.1 * 300
