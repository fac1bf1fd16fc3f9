"""What the product process's near cache costs in CPU when it is full: a fill that pushes the
oldest pages out, and a catalogue read that misses it and is answered by Redis, against one
it answers itself (docs/performance.md, "The catalogue at 100,000 products").

    .venv/bin/python -m bench.near_cost [--products 100000] [--near 20000] [--rounds 3]

``fill``: ``CatalogueCache``'s keeping of a page in a full near cache of ``--near`` entries,
for pages of random products (the eviction included). ``read``: ``CatalogueCache.product``
by 64 concurrent readers of random products, on uvloop as the services run, against the
machine's Redis (``SHOP_REDIS_URL``, else 127.0.0.1:6379) holding every page, after a walk
of the whole catalogue, with a near cache of ``--near`` entries (0: every read a Redis hit)
and of the whole catalogue (every read a near hit). Prints µs of CPU per fill and per read.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time

import uvloop
from redis.asyncio import Redis

from shop.products.cache import CachedBody, CatalogueCache

PREFIX = "bench:near-cost:"
PAGE = CachedBody.of(b"x" * 430)  # a product page's size
READERS = 64


def fill_cost(products: int, near: int, fills: int = 100_000) -> float:
    cache = CatalogueCache(Redis(), near_entries=near)  # no command is sent
    keys = [f"p:{i}" for i in range(1, products + 1)]
    for key in keys[:near]:
        cache._keep(key, time.monotonic() + 300, PAGE)
    started = time.process_time()
    for _ in range(fills):
        cache._keep(random.choice(keys), time.monotonic() + 300, PAGE)
    return (time.process_time() - started) / fills * 1e6


async def _fill_redis(url: str, products: int) -> None:
    client = Redis.from_url(url)
    try:
        for start in range(1, products + 1, 5000):
            pipe = client.pipeline(transaction=False)
            for i in range(start, min(start + 5000, products + 1)):
                pipe.set(f"{PREFIX}p:{i}", PAGE.packed(), px=600_000)
            await pipe.execute()
    finally:
        await client.aclose()


async def read_cost(url: str, products: int, near: int, reads: int = 32_000) -> float:
    async def load() -> bytes:
        raise AssertionError("every page is in Redis")

    cache = CatalogueCache.from_url(url, prefix=PREFIX, near_entries=near, near_bytes=2**30)
    async with cache.running():

        async def reader(n: int) -> None:
            for _ in range(n):
                await cache.product(random.randint(1, products), load)

        async def walk(first: int) -> None:  # as the bench's warm-up walks the catalogue
            for product_id in range(first, products + 1, READERS):
                await cache.product(product_id, load)

        await asyncio.gather(*(walk(first) for first in range(1, READERS + 1)))
        started = time.process_time()
        await asyncio.gather(*(reader(reads // READERS) for _ in range(READERS)))
        return (time.process_time() - started) / reads * 1e6


async def reads(url: str, products: int, near: int, rounds: int) -> None:
    await _fill_redis(url, products)
    for n in range(1, rounds + 1):
        figures = [await read_cost(url, products, size) for size in (0, near, products)]
        print(
            f"round {n}: read {figures[0]:.1f} µs CPU with no near cache, {figures[1]:.1f}"
            f" with {near:,} entries, {figures[2]:.1f} with the whole catalogue"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--near", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    for n in range(1, args.rounds + 1):
        print(f"round {n}: fill {fill_cost(args.products, args.near):.2f} µs CPU")
    url = os.environ.get("SHOP_REDIS_URL", "redis://127.0.0.1:6379/0")
    uvloop.run(reads(url, args.products, args.near, args.rounds))


if __name__ == "__main__":
    main()
