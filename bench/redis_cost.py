"""What a catalogue read's Redis GET costs the product process in CPU: redis-py's own
``GET``, one command per read, against ``shop.products.cache.GetBatch``, which sends the reads
of one event-loop iteration as one ``MGET`` (docs/performance.md, "Redis reads in batches").

    .venv/bin/python -m bench.redis_cost [--reads 30000] [--in-flight 16] [--rounds 3]

Against the machine's Redis (``SHOP_REDIS_URL``, else 127.0.0.1:6379), on uvloop as the
services run; a 450-byte value, as a product page is. Prints µs of CPU per read.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable

import uvloop
from redis.asyncio import Redis

from shop.products.cache import GetBatch

KEY = "bench:redis-cost"


async def _cpu_per_read(read: Callable[[], Awaitable[object]], reads: int, in_flight: int) -> float:
    async def reader(n: int) -> None:
        for _ in range(n):
            await read()

    await asyncio.gather(*(reader(50) for _ in range(in_flight)))  # warm: connections made
    started = time.process_time()
    await asyncio.gather(*(reader(reads // in_flight) for _ in range(in_flight)))
    return (time.process_time() - started) / reads * 1e6


async def main(reads: int, in_flight: int, rounds: int) -> None:
    url = os.environ.get("SHOP_REDIS_URL", "redis://127.0.0.1:6379/0")
    client = Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)
    await client.set(KEY, b"x" * 450)
    batch = GetBatch(client)
    try:
        for _ in range(rounds):
            one = await _cpu_per_read(lambda: client.get(KEY), reads, in_flight)
            batched = await _cpu_per_read(lambda: batch.get(KEY), reads, in_flight)
            print(
                f"{in_flight} reads in flight: GET {one:.1f} µs CPU per read,"
                f" GetBatch (MGET) {batched:.1f} µs",
                flush=True,
            )
    finally:
        await client.delete(KEY)
        await client.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reads", type=int, default=30_000)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    uvloop.run(main(args.reads, args.in_flight, args.rounds))
