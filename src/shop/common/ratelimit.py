"""Rate limits by key (a client address, an account): at most ``count`` hits per ``seconds``.

The algorithm is GCRA (the generic cell rate algorithm, as in token buckets): one number per
key, the time at which the key would be fully rested, so memory stays small and a burst of
``count`` is allowed after a quiet period. ``MemoryRateLimiter`` keeps that number per process
(the default: each replica limits on its own); ``RedisRateLimiter`` shares one budget per key
between all replicas (``SHOP_REDIS_URL``); redis-py is imported only then (about 7 MB of RSS
in a process that does not use it; docs/performance.md, "Memory").
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shop.common.logging import get_logger

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = get_logger("shop.ratelimit")


@dataclass(frozen=True, slots=True)
class Limit:
    count: int
    seconds: float

    @property
    def interval(self) -> float:
        return self.seconds / self.count


class RateLimiter(ABC):
    @abstractmethod
    async def hit(self, key: str, limit: Limit) -> float:
        """Count a hit if allowed and return 0; else return the seconds until one is allowed
        (the hit is not counted)."""

    @abstractmethod
    async def check(self, key: str, limit: Limit) -> float:
        """Like ``hit`` without counting: 0 if a hit would be allowed now."""

    @abstractmethod
    async def reset(self, key: str) -> None:
        """Forget the key's hits."""


class MemoryRateLimiter(RateLimiter):
    """Per-process GCRA. Holds at most ``max_keys`` keys; rested keys are dropped first."""

    def __init__(
        self, *, max_keys: int = 100_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._tat: dict[str, float] = {}  # key -> theoretical arrival time
        self._max_keys, self._clock = max_keys, clock

    def _wait(self, key: str, limit: Limit, now: float) -> tuple[float, float]:
        tat = max(self._tat.get(key, now), now) + limit.interval
        return max(0.0, tat - limit.seconds - now), tat

    async def hit(self, key: str, limit: Limit) -> float:
        now = self._clock()
        wait, tat = self._wait(key, limit, now)
        if wait == 0:
            if key not in self._tat and len(self._tat) >= self._max_keys:
                self._evict(now)
            self._tat[key] = tat
        return wait

    async def check(self, key: str, limit: Limit) -> float:
        return self._wait(key, limit, self._clock())[0]

    async def reset(self, key: str) -> None:
        self._tat.pop(key, None)

    def _evict(self, now: float) -> None:
        self._tat = {k: t for k, t in self._tat.items() if t > now}
        while len(self._tat) >= self._max_keys:  # all busy: drop the oldest inserted
            del self._tat[next(iter(self._tat))]


# GCRA in one atomic step on the Redis server, with the server's clock, so every replica shares
# one budget per key. Returns 0 (and, for a hit, stores the new arrival time) or the whole
# milliseconds to wait (Redis turns a script's numbers into integers).
_GCRA = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local wait = new_tat - period - now
if wait > 0 then return math.max(1, math.ceil(wait)) end
if ARGV[3] == '1' then
  redis.call('SET', KEYS[1], new_tat, 'PX', math.max(1, math.ceil(new_tat - now)))
end
return 0
"""


class RedisRateLimiter(RateLimiter):
    """GCRA shared by every replica through Redis (``SHOP_REDIS_URL``). While Redis cannot be
    reached each process limits on its own (the in-memory limiter), so an outage of the limiter
    neither locks everyone out nor lifts the limits."""

    def __init__(
        self, client: Redis, *, prefix: str = "shop:ratelimit:", fallback: RateLimiter | None = None
    ) -> None:
        from redis.exceptions import RedisError  # loaded already, with the client

        self._redis, self._prefix = client, prefix
        self._script = client.register_script(_GCRA)
        self._fallback = fallback or MemoryRateLimiter()
        self._unreachable: tuple[type[Exception], ...] = (RedisError,)

    @classmethod
    def from_url(cls, url: str) -> RedisRateLimiter:
        from redis.asyncio import Redis

        return cls(Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5))

    async def _run(self, key: str, limit: Limit, *, count: bool) -> float:
        wait_ms = await self._script(
            keys=[self._prefix + key],
            args=[round(limit.interval * 1000, 3), round(limit.seconds * 1000, 3), int(count)],
        )
        return float(wait_ms) / 1000

    async def hit(self, key: str, limit: Limit) -> float:
        try:
            return await self._run(key, limit, count=True)
        except self._unreachable:
            log.warning("rate limiter: Redis unreachable, limiting per process")
            return await self._fallback.hit(key, limit)

    async def check(self, key: str, limit: Limit) -> float:
        try:
            return await self._run(key, limit, count=False)
        except self._unreachable:
            return await self._fallback.check(key, limit)

    async def reset(self, key: str) -> None:
        with contextlib.suppress(*self._unreachable):
            await self._redis.delete(self._prefix + key)
        await self._fallback.reset(key)

    async def aclose(self) -> None:
        await self._redis.aclose()
