"""Generated requests, each sent both ways: the way a lean route takes it and the way only the
FastAPI route does; the two answers must be the same (issue 27: the product read's lean route
once answered 404 at ids the contract rejects with 422).

A catalogue read goes to FastAPI when it carries the test's ``X-Route: fastapi`` header, which
the ``routes`` fixture makes the catalogue's lean routes decline (only their match is wrapped:
the FastAPI side never touches a lean handler); a body goes to FastAPI with a ``+json`` media
type, as tests/integration/test_lean_routes.py sends it. Compared:
status, media type, body (less the request id) and the caching and retry headers. The
generated values lean on the boundaries: ids 2**53-1 and 2**53, keys of 255 and 256
characters, each page bound and one past it.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.routing import Match

from shop.common.types import IDEMPOTENCY_KEY_MAX, MAX_ID, PAGE_LIMIT_MAX, PAGE_OFFSET_MAX
from shop.products.fastpath import PageRoute, ProductRoute
from tests.integration.conftest import Platform

HEADERS = ("content-type", "etag", "cache-control", "retry-after")
EXAMPLES = 60  # per property; each example is two in-process requests

BOUNDARY_IDS = ["0", "1", str(MAX_ID), str(MAX_ID + 1), str(2**63 - 1), str(2**63), "01", "-1"]
ids = st.one_of(
    st.sampled_from(BOUNDARY_IDS),
    st.integers(min_value=1, max_value=2**64).map(str),
    st.text(alphabet="0123456789a", min_size=1, max_size=20),
)
bound = st.sampled_from
limits = st.one_of(bound(["0", "1", str(PAGE_LIMIT_MAX), str(PAGE_LIMIT_MAX + 1), "", "x"]), ids)
offsets = st.one_of(bound(["0", str(PAGE_OFFSET_MAX), str(PAGE_OFFSET_MAX + 1), "-1", ""]), ids)
categories = st.one_of(
    st.none(),
    bound(["", "gadgets", "c" * 100, "c" * 101, "a\x00b", "né"]),
    st.text(max_size=8),
)
key_lengths = st.sampled_from([0, 1, IDEMPOTENCY_KEY_MAX, IDEMPOTENCY_KEY_MAX + 1])


def _answer(response: httpx.Response) -> tuple[int, dict[str, str], Any]:
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if isinstance(body, dict):
        body.pop("request_id", None)
    headers = {name: response.headers[name] for name in HEADERS if name in response.headers}
    return response.status_code, headers, body


VIA_FASTAPI = {"X-Route": "fastapi"}


@pytest.fixture
def lean_answered(platform: Platform) -> Iterator[Counter[str]]:
    """Makes the catalogue's lean routes decline a request marked ``X-Route: fastapi``, and
    counts the reads each of them answered."""
    counts: Counter[str] = Counter()
    originals = {cls: (cls.matches, cls.handle) for cls in (ProductRoute, PageRoute)}

    def wrapped(cls: type, matches: Any, handle: Any) -> tuple[Any, Any]:
        def declining(self: Any, scope: Any) -> Any:
            if (b"x-route", b"fastapi") in scope.get("headers", ()):
                return Match.NONE, {}
            return matches(self, scope)

        async def counting(self: Any, scope: Any, receive: Any, send: Any) -> None:
            counts[cls.__name__] += 1
            await handle(self, scope, receive, send)

        return declining, counting

    for cls, (matches, handle) in originals.items():
        cls.matches, cls.handle = wrapped(cls, matches, handle)  # type: ignore[method-assign]
    yield counts
    for cls, (matches, handle) in originals.items():
        cls.matches, cls.handle = matches, handle  # type: ignore[method-assign]


async def _hypothesis(run: Callable[[Callable[[Awaitable[Any]], Any]], None]) -> None:
    """Run a hypothesis property in a thread while this loop serves its requests."""
    loop = asyncio.get_running_loop()

    def wait(coroutine: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=60)  # type: ignore[arg-type]

    await asyncio.to_thread(run, wait)


PROPERTY = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no example database in the checkout; the boundaries are drawn each run
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


async def test_a_product_read_answers_alike_both_ways(
    platform: Platform, make_product: Any, lean_answered: Counter[str]
) -> None:
    product = await make_product(price="3.00", stock=4, category="gadgets")
    client = platform.products

    def run(wait: Callable[[Awaitable[Any]], Any]) -> None:
        @PROPERTY
        @given(segment=st.one_of(ids, st.just(str(product["id"]))))
        def both_ways(segment: str) -> None:
            lean = wait(client.get(f"/api/v1/products/{segment}"))
            fastapi = wait(client.get(f"/api/v1/products/{segment}", headers=VIA_FASTAPI))
            assert _answer(lean) == _answer(fastapi), segment
            if segment.isdigit() and not segment.startswith("0") and int(segment) > MAX_ID:
                assert lean.status_code == 422, (segment, lean.text)

        both_ways()

    await _hypothesis(run)
    assert lean_answered["ProductRoute"] > 0  # the plain ones did go the lean way


async def test_a_catalogue_page_answers_alike_both_ways(
    platform: Platform, make_product: Any, lean_answered: Counter[str]
) -> None:
    await make_product(price="2.00", stock=1, category="gadgets")
    client = platform.products

    def run(wait: Callable[[Awaitable[Any]], Any]) -> None:
        @PROPERTY
        @given(limit=st.none() | limits, offset=st.none() | offsets, category=categories)
        def both_ways(limit: str | None, offset: str | None, category: str | None) -> None:
            query = {
                name: value
                for name, value in (("limit", limit), ("offset", offset), ("category", category))
                if value is not None
            }
            plain = f"/api/v1/products?{urlencode(query)}"
            lean = wait(client.get(plain))
            fastapi = wait(client.get(plain, headers=VIA_FASTAPI))
            assert _answer(lean) == _answer(fastapi), query

        both_ways()

    await _hypothesis(run)
    assert lean_answered["PageRoute"] > 0


async def test_a_reservation_answers_alike_both_ways_at_the_boundaries(
    platform: Platform,
) -> None:
    """No product exists at these ids, so neither way reserves anything: 404, 422 or 401."""
    client, service = platform.products, platform.service_token()

    def run(wait: Callable[[Awaitable[Any]], Any]) -> None:
        @PROPERTY
        @given(
            product=st.sampled_from([99999999, MAX_ID, MAX_ID + 1, 2**63]),
            order_id=st.sampled_from([0, 1, MAX_ID, MAX_ID + 1, 2**63]),
            key=key_lengths,
            authorised=st.booleans(),
        )
        def both_ways(product: int, order_id: int, key: int, authorised: bool) -> None:
            headers = {**(service if authorised else {})}
            if key:
                headers["Idempotency-Key"] = "k" * key
            path = "/api/v1/reservations"
            line = {"product_id": product, "quantity": 1}
            body = httpx.Request("POST", "/", json={"order_id": order_id, "lines": [line]}).content
            answers = [
                wait(client.post(path, content=body, headers={**headers, "Content-Type": kind}))
                for kind in ("application/json", "application/vnd.shop+json")
            ]
            assert _answer(answers[0]) == _answer(answers[1]), (product, order_id, key)
            assert answers[0].status_code in (401, 404, 422), answers[0].text

        both_ways()

    await _hypothesis(run)
    assert await platform.sql("products", "SELECT 1 FROM reservation_lines") == []
