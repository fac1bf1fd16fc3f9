"""The event loop of the platform's processes that are not uvicorn's: the relay and the
notification worker run on the loop uvicorn picks for the services.

uvicorn's ``auto`` (the services' setting) is uvloop where it is installed (``uvicorn[standard]``
brings it on Linux) and asyncio's own loop elsewhere; taking the choice from uvicorn keeps it
one rule for every process. The event side is a chain of short round trips (a delivery, a Redis
claim, four SMTP replies per mail; a claim and the confirms per relay round), and asyncio's
selector loop, written in Python, cost the worker about twice uvloop's CPU per round trip
(docs/events.md, "Issue 31, third round").
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Coroutine
from typing import Any, TypeVar

from uvicorn.loops.auto import auto_loop_factory

T = TypeVar("T")


def freeze_startup() -> None:
    """Keep what start-up made (the modules, mostly) out of the collector's passes, which
    otherwise cause the slowest requests (docs/performance.md): every long-running process of
    the platform calls this once, as it starts serving (``shop serve`` once its app has
    started, in ``shop.common.server``; the relay and the worker in ``run`` below)."""
    gc.collect()
    gc.freeze()


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` on the services' event loop (uvloop where installed), start-up's
    objects frozen first (``freeze_startup``)."""
    freeze_startup()
    with asyncio.Runner(loop_factory=auto_loop_factory()) as runner:
        return runner.run(main)
