"""The catalogue cache: product pages and list pages served as pre-serialised JSON bytes.

Two layers, both holding the exact response body and its ``ETag``:

* a **near cache** in each process (a bounded dict): a hit costs no I/O at all, which is what
  lets a cached read approach a raw Starlette endpoint (docs/performance.md);
* a **shared Redis** (``SHOP_REDIS_URL``): a replica's near miss is another replica's fill.

Contract, as every replica sees it:

* ``invalidate(product_id)`` drops that product's page, ``invalidate(None)`` every list page,
  in Redis and in the near cache of **every replica**: the writer deletes the Redis keys and
  publishes on the channel ``<prefix>invalidate``; each replica's subscriber drops its near
  entries on receipt (milliseconds on one network).
* **Bound**: a product page is at most ``ttl`` (``SHOP_CATALOGUE_CACHE_TTL_SECONDS``, 300 s)
  stale even if a message is lost, and in normal operation is stale only for the time a
  pub/sub message takes. While a replica is not subscribed (Redis down, reconnecting) it does
  not use its near cache, and it empties it when it subscribes again. List pages carry stock,
  which every order changes: catalogue edits (create, update, delete, an admin's stock change)
  invalidate them at once; reservations and releases only the product's page, so stock on a
  list page lags by at most ``list_ttl`` (5 s). Placing an order always checks real stock in
  PostgreSQL, never the cache.
* **Spread expiry**: each fill lives a TTL drawn between ``TTL_SPREAD`` and 1 of the bound,
  so pages filled together (a cold start, a deploy, a walk of the catalogue) do not all expire
  in the same second and send the whole catalogue to PostgreSQL at once (docs/performance.md,
  "The fourth round's make bench"). The bounds above still hold: every TTL is at most its bound.
* A fill that raced an invalidation (read from PostgreSQL before the write, stored after the
  invalidation) is bounded by the same TTLs; the near cache refuses such fills outright.
* **Redis down**: every Redis call is bounded by a short socket timeout and, after a failure,
  the reads skip Redis for ``retry_seconds``; they then go to PostgreSQL and answer as usual
  (no error). Invalidations are tried every time.

Chosen: redis-py's asyncio client (already the rate limiter's), no other cache library: the
near cache is a dict because its entries must be dropped by key on a pub/sub message, which
is all it needs. redis-py spends 70-80 µs of CPU on each command it sends (its pool, its
locks and timeouts), more than the rest of a near miss, so the reads of one event-loop
iteration go to Redis as one ``MGET`` (``GetBatch``): about 11 µs a read at 16 reads in
flight, with hiredis (``python -m bench.redis_cost``). A DataLoader does the same, but the
one installed is strawberry's, and the product service does not speak GraphQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError

from shop.common.logging import get_logger
from shop.common.metrics import (
    CATALOGUE_CACHE_ERRORS,
    CATALOGUE_CACHE_HITS,
    CATALOGUE_CACHE_INVALIDATIONS,
    CATALOGUE_CACHE_MISSES,
)
from shop.products.settings import NEAR_BYTES, NEAR_ENTRIES

T = TypeVar("T")

log = get_logger("shop.products.cache")

_LISTS = "lists"
# Labelled once: a near hit is the hot path (prometheus_client's labels() locks per call).
_NEAR_HITS = CATALOGUE_CACHE_HITS.labels("near")
_REDIS_HITS = CATALOGUE_CACHE_HITS.labels("redis")
_ETAG_SEPARATOR = b"\n"
# What a near entry costs besides its body: the key, the tuple, the CachedBody, its ETag and the
# dict's slot (measured: 10,000 product pages of ~390 bytes took 7.1 MB of RSS).
ENTRY_OVERHEAD = 320
TTL_SPREAD = 0.8  # a fill's TTL is drawn from [TTL_SPREAD, 1] x the bound


class GetBatch:
    """``GET``s asked for in one event-loop iteration, sent as one ``MGET`` (``most`` keys at
    most each). The first read of an iteration waits one turn of the loop for others to join;
    alone, it sends its own ``GET``, so a quiet process pays no more than before. Each caller
    gets its key's value, or the command's exception; a caller that goes away (a cancelled
    request) leaves the others' answers as they are."""

    def __init__(self, client: Redis, most: int = 128) -> None:
        self._client = client
        self._most = most
        self._joining: list[tuple[str, asyncio.Future[bytes | str | None]]] | None = None
        self._sending: set[asyncio.Task[None]] = set()  # held until done (asyncio keeps weak refs)

    async def get(self, key: str) -> bytes | str | None:
        loop = asyncio.get_running_loop()
        if self._joining is not None:  # a read of this iteration is gathering others: join it
            waiter: asyncio.Future[bytes | str | None] = loop.create_future()
            self._joining.append((key, waiter))
            return await waiter
        joined = self._joining = []
        try:
            await asyncio.sleep(0)  # the other reads of this iteration join
        except asyncio.CancelledError:  # this caller went away while gathering: send the rest
            self._joining = None
            if joined:
                self._send(joined)
            raise
        self._joining = None
        if not joined:
            return await self._client.get(key)
        mine: asyncio.Future[bytes | str | None] = loop.create_future()
        self._send([(key, mine), *joined])
        return await mine

    def _send(self, reads: list[tuple[str, asyncio.Future[bytes | str | None]]]) -> None:
        for start in range(0, len(reads), self._most):
            task = asyncio.ensure_future(self._mget(reads[start : start + self._most]))
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)

    async def _mget(self, reads: list[tuple[str, asyncio.Future[bytes | str | None]]]) -> None:
        try:
            values = await self._client.mget([key for key, _ in reads])
        except asyncio.CancelledError:
            for _, waiter in reads:
                waiter.cancel()
            raise
        except Exception as exc:  # the callers' to handle, as from their own GET
            for _, waiter in reads:
                if not waiter.done():
                    waiter.set_exception(exc)
            return
        for (_, waiter), value in zip(reads, values, strict=True):
            if not waiter.done():
                waiter.set_result(value)


@dataclass(slots=True)
class CachedBody:
    """A response body as sent, and its strong ETag (a hash of the bytes). Not frozen: a near
    hit makes one (``CatalogueCache._near``), and a frozen dataclass's ``__init__`` sets each
    field through ``object.__setattr__``, a few thousand instructions more per hit."""

    body: bytes
    etag: str

    @classmethod
    def of(cls, body: bytes) -> CachedBody:
        return cls(body, f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"')

    def matches(self, if_none_match: str | None) -> bool:
        """Whether an ``If-None-Match`` header names this body (weak comparison, RFC 9110)."""
        if not if_none_match:
            return False
        for tag in if_none_match.split(","):
            tag = tag.strip()
            if tag == "*" or tag.removeprefix("W/") == self.etag:
                return True
        return False

    def packed(self) -> bytes:
        return self.etag.encode() + _ETAG_SEPARATOR + self.body

    @classmethod
    def unpacked(cls, raw: bytes) -> CachedBody:
        etag, _, body = raw.partition(_ETAG_SEPARATOR)
        return cls(body, etag.decode())


Loader = Callable[[], Awaitable[bytes]]


def exact(body: bytes) -> bytes:
    """``body`` in an allocation of its own size, for keeping. orjson returns its output in
    the buffer it wrote into (4 KiB at the least), so a 400-byte product page kept as returned
    holds about 4 KiB: a near cache of the 10,000-product catalogue took 39 MB of malloc'd
    memory instead of 4, the whole of the product service's growth under the bench
    (docs/performance.md, "Memory"). The copy costs a few hundred bytes of memcpy per miss."""
    return bytes(memoryview(body))


# How long closing a Redis subscription or client may take before it is given up on.
CLOSE_SECONDS = 1.0


async def _bounded_close(closing: Awaitable[None], what: str) -> None:
    """Close a Redis object without letting it hold up a shutdown. redis-py's PubSub close can
    stall on its connection (redis/redis-py#3941), and from 8.2.0 it shields itself from
    cancellation, so neither ``wait_for`` nor a cancel would end it: it runs as its own task,
    and after ``CLOSE_SECONDS`` the shutdown goes on without it (the process is exiting, or the
    listener reconnects with a new subscription; the socket goes with the client)."""
    task = asyncio.ensure_future(closing)
    done, _ = await asyncio.wait({task}, timeout=CLOSE_SECONDS)
    if task in done:
        error = task.exception()
        if error is not None and not isinstance(error, (RedisError, OSError)):
            raise error
        return
    task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved: no warning
    log.warning("catalogue cache: closing Redis timed out; left behind", closing=what)


class CatalogueCache:
    """Read-through cache of catalogue responses; see the module docstring for the contract."""

    def __init__(
        self,
        client: Redis,
        *,
        prefix: str = "shop:catalogue:",
        ttl: float = 300.0,
        list_ttl: float = 5.0,
        near_entries: int = NEAR_ENTRIES,
        near_bytes: int = NEAR_BYTES,
        retry_seconds: float = 1.0,
    ) -> None:
        self._redis = client
        self._gets = GetBatch(client)
        self._prefix = prefix
        self._channel = f"{prefix}invalidate"
        self._ttl_ms, self._list_ttl_ms = int(ttl * 1000), int(list_ttl * 1000)
        self._ttl, self._list_ttl = ttl, list_ttl
        # key -> (expiry, body, ETag): a tuple of atoms, which the collector stops tracking at
        # its first pass, so tens of thousands of entries filled and dropped under load do not
        # pile up in its oldest generation (a CachedBody each would, and each full pass walks
        # them all); the hit makes its CachedBody.
        self._near: dict[str, tuple[float, bytes, str]] = {}
        # The near list pages' keys ("l:..."), so dropping every list page walks only them,
        # not the product pages beside them (up to near_entries; this was 2 ms per order).
        self._near_lists: set[str] = set()
        self._near_entries = near_entries
        # Bodies plus ENTRY_OVERHEAD each: list pages of up to 100 products are ~40 KB, so a
        # count alone would let 20,000 distinct pages hold 800 MB.
        self._near_bytes, self._near_size = near_bytes, 0
        self._retry_seconds = retry_seconds
        self._redis_down_until = 0.0
        self._subscribed = asyncio.Event()
        self._epoch = 0  # bumped by every invalidation this process learns of
        self._list_generation: int | None = None
        self._listener: asyncio.Task[None] | None = None
        self._closing = False  # the listener's own stop signal (see running)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> CatalogueCache:
        client = Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)
        return cls(client, **options)

    # --- lifecycle -------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[CatalogueCache]:
        """Subscribe to invalidations for as long as the block runs, then close the client."""
        self._listener = asyncio.create_task(self._listen(), name="catalogue-cache-listener")
        # Give the subscription a moment so a fresh replica uses its near cache from the start.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._subscribed.wait(), timeout=1.0)
        try:
            yield self
        finally:
            # A cancel alone is not enough: redis-py can swallow the CancelledError that lands
            # in a read whose own timeout expires at the same moment (the task stays
            # "cancelling" and the loop goes on, forever: a CI run hung 15 minutes here). The
            # flag ends the loop within one get_message timeout either way.
            self._closing = True
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            await _bounded_close(self._redis.aclose(), "client")

    @property
    def subscribed(self) -> bool:
        """Whether this replica receives invalidations now (and so uses its near cache)."""
        return self._subscribed.is_set()

    async def _listen(self) -> None:
        while not self._closing:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.subscribe(self._channel)
                self._forget_all()  # messages may have been missed while unsubscribed
                self._subscribed.set()
                while not self._closing:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if message is None:
                        await pubsub.ping()  # notice a dead connection within a second
                        continue
                    data = message.get("data")
                    if message.get("type") == "message" and isinstance(data, bytes):
                        self._apply(data.decode())
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self._subscribed.is_set():
                    log.warning("catalogue cache: invalidations lost", error=type(exc).__name__)
                self._subscribed.clear()
                self._forget_all()
                await asyncio.sleep(self._retry_seconds)
            finally:
                await _bounded_close(pubsub.aclose(), "subscription")  # type: ignore[no-untyped-call]

    # --- reads -----------------------------------------------------------------------------

    def near_product(self, product_id: int) -> CachedBody | None:
        """The product's page if this replica's near cache holds it fresh (no I/O, counted
        as a hit); None otherwise, including while invalidations cannot be received."""
        if not self._subscribed.is_set():
            return None
        return self._near_hit(f"p:{product_id}", time.monotonic())

    def near_page(self, query: str) -> CachedBody | None:
        """A list page if this replica's near cache holds it fresh (see ``near_product``)."""
        if not self._subscribed.is_set() or self._list_generation is None:
            return None
        return self._near_hit(f"l:{query}", time.monotonic())

    def _near_hit(self, key: str, now: float) -> CachedBody | None:
        """The near entry under ``key`` if fresh at ``now`` (counted as a hit), else None."""
        entry = self._near.get(key)
        if entry is None or entry[0] <= now:
            return None
        _NEAR_HITS.inc()
        return CachedBody(entry[1], entry[2])

    async def product(self, product_id: int, load: Loader) -> CachedBody:
        """The product's page: near cache, else Redis, else ``load()`` (stored in both)."""
        return await self._read(f"p:{product_id}", None, self._ttl, self._ttl_ms, load)

    async def page(self, query: str, load: Loader) -> CachedBody:
        """A list page, keyed by its normalised query (category, limit, offset)."""
        return await self._read(
            f"l:{query}", await self._generation(), self._list_ttl, self._list_ttl_ms, load
        )

    async def _read(
        self, key: str, generation: int | None, ttl: float, ttl_ms: int, load: Loader
    ) -> CachedBody:
        near_ok = self._subscribed.is_set()
        now = time.monotonic()
        if near_ok and (hit := self._near_hit(key, now)) is not None:
            return hit
        epoch = self._epoch
        redis_key = self._prefix + (key if generation is None else f"{key}:g{generation}")
        raw = await self._redis_call(self._gets.get(redis_key))
        share = random.uniform(TTL_SPREAD, 1.0)  # noqa: S311 (spreading expiry, not a secret)
        if isinstance(raw, bytes):
            _REDIS_HITS.inc()
            cached = CachedBody.unpacked(raw)
        else:
            CATALOGUE_CACHE_MISSES.inc()
            cached = CachedBody.of(exact(await load()))
            if epoch == self._epoch:
                px = max(1, int(ttl_ms * share))
                await self._redis_call(self._redis.set(redis_key, cached.packed(), px=px))
        if near_ok and epoch == self._epoch and self._subscribed.is_set():
            self._keep(key, now + ttl * share, cached)
        return cached

    def _keep(self, key: str, expires: float, cached: CachedBody) -> None:
        """Hold ``cached`` near, dropping the oldest fills while over either bound."""
        self._drop(key)
        size = len(cached.body) + ENTRY_OVERHEAD
        if size > self._near_bytes:
            return
        if len(self._near) >= self._near_entries or self._near_size + size > self._near_bytes:
            self._evict(size)
        if self._near_entries > 0:
            self._near[key] = (expires, cached.body, cached.etag)
            self._near_size += size
            if key.startswith("l:"):
                self._near_lists.add(key)

    def _evict(self, size: int) -> None:
        """Drop the oldest fills until one more of ``size`` fits under both bounds, and then a
        64th of what is held more. A dict iterates from its first slot, over the holes that
        earlier drops left there until it resizes: dropping the one oldest fill per fill walked
        thousands of holes each time (``_keep`` was 5.4% of the product service's CPU with
        100,000 products, ``python -m bench profile --scenarios product_by_id``); one walk per
        batch spreads that over the batch."""
        entries, total = len(self._near), self._near_size
        more = entries // 64
        oldest = []
        for key, (_, body, _etag) in self._near.items():  # the oldest fill first
            if entries < self._near_entries and total + size <= self._near_bytes:
                if more == 0:
                    break
                more -= 1
            oldest.append(key)
            entries -= 1
            total -= len(body) + ENTRY_OVERHEAD
        for key in oldest:
            self._drop(key)

    def _drop(self, key: str) -> None:
        entry = self._near.pop(key, None)
        if entry is not None:
            self._near_size -= len(entry[1]) + ENTRY_OVERHEAD
            self._near_lists.discard(key)

    @property
    def near_size(self) -> tuple[int, int]:
        """How many entries the near cache holds, and their bytes as it counts them."""
        return len(self._near), self._near_size

    async def _generation(self) -> int:
        """The list pages' generation: a counter in Redis that ``invalidate(None)`` bumps, so
        every old list key is dead at once; kept locally while subscribed (the message says)."""
        if self._list_generation is not None and self._subscribed.is_set():
            return self._list_generation
        raw = await self._redis_call(self._gets.get(self._prefix + "lists:generation"))
        generation = int(raw) if isinstance(raw, bytes) else 0
        if self._subscribed.is_set():
            self._list_generation = generation
        return generation

    # --- invalidation ----------------------------------------------------------------------

    async def invalidate(self, product_id: int | None) -> None:
        """Drop a product's page (``None``: every list page) here, in Redis and on every
        replica. Never raises: with Redis down the TTLs bound what other replicas serve."""
        if product_id is None:
            CATALOGUE_CACHE_INVALIDATIONS.labels("lists").inc()
            message = _LISTS
            generation = await self._redis_call(
                self._redis.incr(self._prefix + "lists:generation"), always=True
            )
            if isinstance(generation, int):
                message = f"{_LISTS}:{generation}"
            self._apply(message)
            await self._redis_call(self._redis.publish(self._channel, message), always=True)
            return
        await self.invalidate_products((product_id,))

    async def invalidate_products(self, product_ids: Sequence[int]) -> None:
        """Drop the pages of several products (every line of a reservation or a release) as
        ``invalidate`` drops one: every delete and message in one round trip (a pipeline, not a
        transaction: each command stands alone), one message per product as subscribers know
        them. Dropped here only once Redis no longer holds them, so a read on this replica in
        between cannot fill the near cache from Redis's old copy."""
        if not product_ids:
            return
        CATALOGUE_CACHE_INVALIDATIONS.labels("product").inc(len(product_ids))
        messages = [f"p:{product_id}" for product_id in product_ids]
        pipe = self._redis.pipeline(transaction=False)
        for message in messages:
            pipe.delete(self._prefix + message)
            pipe.publish(self._channel, message)
        await self._redis_call(pipe.execute(), always=True)
        for message in messages:
            self._apply(message)

    def _apply(self, message: str) -> None:
        self._epoch += 1
        if message.startswith(_LISTS):
            _, _, generation = message.partition(":")
            self._list_generation = int(generation) if generation.isdigit() else None
            for key in list(self._near_lists):
                self._drop(key)
        else:
            self._drop(message)

    def _forget_all(self) -> None:
        self._epoch += 1
        self._near.clear()
        self._near_lists.clear()
        self._near_size = 0
        self._list_generation = None

    async def _redis_call(self, call: Awaitable[T], *, always: bool = False) -> T | None:
        """Run one Redis command; None if Redis is down (and skip it for a while after,
        unless ``always``: an invalidation is always tried, since one skipped leaves the other
        replicas a stale page for up to its TTL, where a skipped read only costs PostgreSQL a
        query. A CI run lost a delete's invalidation to the window a timed-out read opened)."""
        if not always and time.monotonic() < self._redis_down_until:
            if asyncio.iscoroutine(call):
                call.close()
            return None
        try:
            return await call
        except (RedisError, OSError) as exc:
            CATALOGUE_CACHE_ERRORS.inc()
            if self._redis_down_until == 0.0 or time.monotonic() > self._redis_down_until + 5:
                log.warning("catalogue cache: Redis unavailable", error=type(exc).__name__)
            self._redis_down_until = time.monotonic() + self._retry_seconds
            return None
