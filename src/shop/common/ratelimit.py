"""Rate limits by key (a client address, an account): at most ``count`` hits per ``seconds``.

The algorithm is GCRA (the generic cell rate algorithm, as in token buckets): one number per
key, the time at which the key would be fully rested, so memory stays small and a burst of
``count`` is allowed after a quiet period. ``MemoryRateLimiter`` keeps that number per process
(the default: each replica limits on its own); a shared store can implement ``RateLimiter``.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass


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
