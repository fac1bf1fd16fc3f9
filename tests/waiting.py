"""Waiting on other processes, failing fast and saying why.

The process-starting suites (tests/faults, tests/eventfaults) wait for state that lives in
other processes: an event on the broker, an order's status, a replica back. ``until`` polls a
condition and, if it does not hold within ``within`` seconds (a minute: every such state here
arrives in seconds, even on a crowded CI machine), fails with what it awaited and the last log
lines of the processes that should have made it true, instead of minutes of silence.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

WAIT_SECONDS = 60.0


class Logged(Protocol):
    name: str

    def log_tail(self, lines: int = 20) -> str: ...


def describe(processes: Iterable[Logged], lines: int = 15) -> str:
    return "".join(f"\n--- {p.name}, last lines:\n{p.log_tail(lines)}" for p in processes)


async def until(
    done: Callable[[], Any],
    what: str,
    *,
    within: float = WAIT_SECONDS,
    interval: float = 0.1,
    logs: Iterable[Logged] = (),
) -> Any:
    """Poll ``done`` (sync or async) until it returns something truthy, and return that; after
    ``within`` seconds fail with ``what`` and the log tails of ``logs``."""
    deadline = time.monotonic() + within
    while True:
        result = done()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"after {within:.0f}s, still waiting for {what}" + describe(logs))
        await asyncio.sleep(interval)
