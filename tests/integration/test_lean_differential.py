"""Generated requests, each sent both ways: the way a lean route takes it and the way only the
FastAPI route does; the two answers must be the same (issue 27: the product read's lean route
once answered 404 at ids the contract rejects with 422).

A request goes to FastAPI when it carries the test's ``X-Route: fastapi`` header, which the
``lean_answered`` fixture makes every lean route (``shop.common.fastpath.LeanRoute``) decline
in its match: the FastAPI side never touches a lean handler. Compared: status, media type,
body (less the request id, and for a new order the fields of a new record) and the caching
and retry headers. The generated values lean on the boundaries: ids 2**53-1 and 2**53, keys
of 255 and 256 characters, each page bound and one past it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.routing import Match

from shop.common.fastpath import LeanRoute
from shop.common.types import (
    IDEMPOTENCY_KEY_MAX,
    MAX_ID,
    ORDER_QUANTITY_MAX,
    PAGE_LIMIT_MAX,
    PAGE_OFFSET_MAX,
)
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
def lean_answered(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Makes every lean route decline a request marked ``X-Route: fastapi``, and counts, by
    route template, the requests each of them took."""
    counts: Counter[str] = Counter()
    matches, answer = LeanRoute.matches, LeanRoute.answer

    def declining(self: LeanRoute, scope: Any) -> Any:
        if (b"x-route", b"fastapi") in scope.get("headers", ()):
            return Match.NONE, {}
        return matches(self, scope)

    async def counting(self: LeanRoute, scope: Any, receive: Any) -> Any:
        counts[self.path] += 1  # every request a lean route takes goes through its answer
        return await answer(self, scope, receive)

    monkeypatch.setattr(LeanRoute, "matches", declining)
    monkeypatch.setattr(LeanRoute, "answer", counting)
    return counts


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


# What a catalogue read's request may carry besides its path: query parameters (known,
# unknown, repeated) and If-None-Match headers (none, the body's tag, another, repeated).
noise = st.lists(
    st.tuples(bound(["limit", "x", "q", "category", ""]), bound(["1", "", "a"])), max_size=2
)
TAGS = ["current", '"other"', "*", "W/current", 'current, "other"']
if_none_match = st.lists(bound(TAGS), max_size=2)


def _tags(tags: list[str], etag: str) -> list[tuple[str, str]]:
    return [("If-None-Match", tag.replace("current", etag)) for tag in tags]


async def test_a_product_read_answers_alike_both_ways(
    platform: Platform, make_product: Any, lean_answered: Counter[str]
) -> None:
    product = await make_product(price="3.00", stock=4, category="gadgets")
    client = platform.products
    etag = (await client.get(f"/api/v1/products/{product['id']}")).headers["etag"]

    def run(wait: Callable[[Awaitable[Any]], Any]) -> None:
        @PROPERTY
        @given(
            segment=st.one_of(ids, st.just(str(product["id"])), st.integers(max_value=-1).map(str)),
            query=st.one_of(st.just([]), noise),
            tags=if_none_match,
        )
        @example(str(MAX_ID), [], [])  # the boundaries, every run
        @example(str(MAX_ID + 1), [], [])
        @example(str(product["id"]), [], ["current"])  # 304 both ways
        @example(str(product["id"]), [], ["current", '"other"'])  # a repeated header
        @example(str(product["id"]), [("limit", "1")], [])
        def both_ways(segment: str, query: list[tuple[str, str]], tags: list[str]) -> None:
            path = f"/api/v1/products/{segment}" + (f"?{urlencode(query)}" if query else "")
            headers = _tags(tags, etag)
            lean = wait(client.get(path, headers=headers))
            fastapi = wait(client.get(path, headers=[*headers, *VIA_FASTAPI.items()]))
            assert _answer(lean) == _answer(fastapi), (segment, query, tags)
            if segment.isdigit() and not segment.startswith("0") and int(segment) > MAX_ID:
                assert lean.status_code == 422, (segment, lean.text)

        both_ways()

    await _hypothesis(run)
    assert lean_answered["/api/v1/products/{product_id}"] > 0  # the plain ones went lean


# A list request's parameters: the plain page's three (each valid, at its bounds, one past,
# in the forms pydantic reads as integers), the others (which only FastAPI takes), unknown
# names; any of them repeated.
numbers = bound(["+5", " 5", "5.0", "1_0", "007", "5e0", "\u0665"])
list_params = st.one_of(
    st.tuples(st.just("limit"), st.one_of(limits, numbers)),
    st.tuples(st.just("offset"), st.one_of(offsets, numbers)),
    st.tuples(st.just("category"), categories.map(lambda c: "" if c is None else c)),
    st.tuples(st.just("ids"), bound(["1,2", "1", f"{MAX_ID}", f"{MAX_ID + 1}", "x", ""])),
    st.tuples(st.just("q"), bound(["lamp", "", "gadgets", "a\x00"])),
    st.tuples(st.just("in_stock"), bound(["true", "false", "1", "maybe"])),
    st.tuples(st.just("sort"), bound(["relevance", "price", "-price", "x"])),
    st.tuples(bound(["min_price", "max_price"]), bound(["1.00", "9.99", "-1", "x"])),
    st.tuples(bound(["unknown", "limit[]", "Limit", ""]), bound(["1", ""])),
)


async def test_a_catalogue_page_answers_alike_both_ways(
    platform: Platform, make_product: Any, lean_answered: Counter[str]
) -> None:
    await make_product(price="2.00", stock=1, category="gadgets")
    client = platform.products
    etag = (await client.get("/api/v1/products")).headers["etag"]

    def run(wait: Callable[[Awaitable[Any]], Any]) -> None:
        @PROPERTY
        @given(
            limit=st.none() | limits,
            offset=st.none() | offsets,
            category=categories,
            more=st.lists(list_params, max_size=3),
            tags=if_none_match,
        )
        @example(str(PAGE_LIMIT_MAX), str(PAGE_OFFSET_MAX), None, [], [])  # every run
        @example(str(PAGE_LIMIT_MAX + 1), str(PAGE_OFFSET_MAX + 1), None, [], [])
        @example(None, None, None, [], ["current"])  # 304 both ways
        @example("5", None, None, [("limit", "5")], [])  # repeated
        @example("5", None, None, [("unknown", "1")], [])
        def both_ways(
            limit: str | None,
            offset: str | None,
            category: str | None,
            more: list[tuple[str, str]],
            tags: list[str],
        ) -> None:
            query = [
                (name, value)
                for name, value in (("limit", limit), ("offset", offset), ("category", category))
                if value is not None
            ] + more
            plain = f"/api/v1/products?{urlencode(query)}"
            headers = _tags(tags, etag)
            lean = wait(client.get(plain, headers=headers))
            fastapi = wait(client.get(plain, headers=[*headers, *VIA_FASTAPI.items()]))
            assert _answer(lean) == _answer(fastapi), (query, tags)

        both_ways()

    await _hypothesis(run)
    assert lean_answered["/api/v1/products"] > 0


words = st.one_of(
    bound(["", "lamp", "desk lamp", "lmap", "the", "!!!", "a\x00b", "a" * 200, "a" * 201]),
    st.text(max_size=12),
)
prices = st.one_of(
    st.none(), bound(["0", "2", "2.00", "2.5", "1.234", "-1", "", "10\n", "9" * 10, "9" * 11])
)
NO_SEARCH = dict.fromkeys(("q", "low", "high", "in_stock", "sort", "limit", "offset", "category"))


async def test_a_search_answers_alike_both_ways(
    platform: Platform, make_product: Any, lean_answered: Counter[str]
) -> None:
    """Searches and filters (issue 29) take the lean route too when every parameter is one the
    declaration accepts; a bad one, or min_price above max_price (the use case's 422), answers
    alike."""
    for name, price in (("Desk Lamp", "2.00"), ("Floor Lamp", "5.00"), ("Lamp Shade", "1.50")):
        await make_product(name=name, price=price, stock=1, category="gadgets")
    client = platform.products

    def run(wait: Callable[[Awaitable[Any]], Any]) -> None:
        @PROPERTY
        @given(
            q=st.none() | words,
            low=prices,
            high=prices,
            in_stock=st.none() | bound(["true", "false", "True", "1", "no", ""]),
            sort=st.none() | bound(["relevance", "price", "-price", "newest", "name", "x", ""]),
            limit=st.none() | bound(["1", "2", str(PAGE_LIMIT_MAX + 1)]),
            offset=st.none() | bound(["0", "1", "-1"]),
            category=st.none() | bound(["gadgets", "", "c" * 101]),
        )
        @example(**NO_SEARCH | {"q": "lamp"})
        @example(**NO_SEARCH | {"q": "lmap", "low": "1", "high": "3", "in_stock": "true"})
        @example(**NO_SEARCH | {"q": "lmap", "sort": "price", "limit": "2", "offset": "1"})
        @example(**NO_SEARCH | {"low": "5", "high": "2"})  # the use case's 422
        def both_ways(**params: str | None) -> None:
            names = {"low": "min_price", "high": "max_price"}
            query = {names.get(k, k): v for k, v in params.items() if v is not None}
            path = f"/api/v1/products?{urlencode(query)}"
            lean = wait(client.get(path))
            fastapi = wait(client.get(path, headers=VIA_FASTAPI))
            assert _answer(lean) == _answer(fastapi), query

        both_ways()

    await _hypothesis(run)
    before = lean_answered["/api/v1/products"]
    assert (await client.get("/api/v1/products?q=lmap&sort=price")).status_code == 200
    assert lean_answered["/api/v1/products"] == before + 1  # a search is the lean route's


async def test_a_reservation_answers_alike_both_ways_at_the_boundaries(
    platform: Platform, lean_answered: Counter[str]
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
                wait(client.post(path, content=body, headers={**headers, **via}))
                for via in (JSON, {**JSON, **VIA_FASTAPI})
            ]
            assert _answer(answers[0]) == _answer(answers[1]), (product, order_id, key)
            assert answers[0].status_code in (401, 404, 422), answers[0].text

        both_ways()

    await _hypothesis(run)
    assert await platform.sql("products", "SELECT 1 FROM reservation_lines") == []
    assert lean_answered["/api/v1/reservations"] > 0


JSON = {"Content-Type": "application/json"}
NEW_RECORD = {"id", "order_id", "payment_id", "transaction_id", "created_at", "updated_at"}
_serial = itertools.count()


def _key(length: int) -> dict[str, str]:
    """An Idempotency-Key of ``length`` characters (none for 0), unique to its request."""
    return {"Idempotency-Key": f"{next(_serial)}-".ljust(length, "k")[:length]} if length else {}


def _body(value: Any) -> bytes:
    return httpx.Request("POST", "/", json=value).content


async def test_an_order_answers_alike_both_ways_at_the_boundaries(
    platform: Platform, make_product: Any, lean_answered: Counter[str]
) -> None:
    """Each request is placed once each way: with a key the FastAPI way replays the lean way's
    order (the same answer, ids and all); without one each way places an order, compared less
    the new record's ids and times."""
    product = await make_product(price="1.00", stock=10**6)
    client, path = platform.orders, "/api/v1/orders"

    def run(wait: Callable[[Awaitable[Any]], Any]) -> None:
        @PROPERTY
        @given(
            product_id=st.sampled_from([product["id"], 99999999, MAX_ID, MAX_ID + 1, 2**63]),
            quantity=st.sampled_from([0, 1, 2, ORDER_QUANTITY_MAX + 1]),
            key=key_lengths,
            who=st.sampled_from(["user", "service", "nobody"]),
        )
        @example(product["id"], 1, IDEMPOTENCY_KEY_MAX, "user")  # the boundaries, every run
        @example(product["id"], 1, IDEMPOTENCY_KEY_MAX + 1, "user")
        @example(MAX_ID, 1, 0, "user")
        @example(MAX_ID + 1, 1, 0, "user")
        def both_ways(product_id: int, quantity: int, key: int, who: str) -> None:
            token = {
                "user": platform.token(21),
                "service": platform.service_token(),
                "nobody": {},
            }[who]
            headers = {**token, **_key(key), **JSON}
            body = _body({"product_id": product_id, "quantity": quantity})
            lean = wait(client.post(path, content=body, headers=headers))
            fastapi = wait(client.post(path, content=body, headers={**headers, **VIA_FASTAPI}))
            if key:
                assert _answer(lean) == _answer(fastapi), (product_id, quantity, key, who)
            else:  # two orders (a failed one's problem names it: order_id)
                assert _new(lean) == _new(fastapi), (product_id, quantity, who)
            if key > IDEMPOTENCY_KEY_MAX or product_id > MAX_ID:
                assert lean.status_code in (401, 422), lean.text  # 401: no token at all

        both_ways()

    await _hypothesis(run)
    assert lean_answered["/api/v1/orders"] > 0
    assert await platform.sql("orders", "SELECT 1 FROM orders WHERE status = 'paid' LIMIT 1")


async def test_a_payment_answers_alike_both_ways_at_the_boundaries(
    platform: Platform, lean_answered: Counter[str]
) -> None:
    """Each request is sent first to set the scene (the order's payment, the key's record),
    then once each way: a repeat, answered alike whichever way it goes."""
    client, path = platform.payments, "/api/v1/payments"
    orders = itertools.count(1)

    def run(wait: Callable[[Awaitable[Any]], Any]) -> None:
        @PROPERTY
        @given(
            order_id=st.sampled_from([0, None, MAX_ID, MAX_ID + 1, 2**63]),
            user_id=st.sampled_from([1, MAX_ID, MAX_ID + 1]),
            amount=st.sampled_from(["12.50", "0.00", "9999999999.99", "10000000000.00"]),
            key=key_lengths,
            who=st.sampled_from(["service", "user", "nobody"]),
        )
        @example(None, MAX_ID, "12.50", IDEMPOTENCY_KEY_MAX, "service")  # every run
        @example(None, 1, "12.50", IDEMPOTENCY_KEY_MAX + 1, "service")
        @example(MAX_ID, 1, "12.50", 0, "service")
        @example(MAX_ID + 1, 1, "12.50", 0, "service")
        def both_ways(order_id: int | None, user_id: int, amount: str, key: int, who: str) -> None:
            token = {
                "service": platform.service_token(),
                "user": platform.token(3),
                "nobody": {},
            }[who]
            headers = {**token, **_key(key), **JSON}
            payment = {
                "order_id": next(orders) if order_id is None else order_id,
                "user_id": user_id,
                "amount": amount,
                "payment_method": "card",
                "confirm": True,
            }
            body = _body(payment)
            wait(client.post(path, content=body, headers=headers))
            lean = wait(client.post(path, content=body, headers=headers))
            fastapi = wait(client.post(path, content=body, headers={**headers, **VIA_FASTAPI}))
            assert _answer(lean) == _answer(fastapi), payment
            if key > IDEMPOTENCY_KEY_MAX or max(payment["order_id"], user_id) > MAX_ID:
                assert lean.status_code in (401, 403, 422), lean.text

        both_ways()

    await _hypothesis(run)
    assert lean_answered["/api/v1/payments"] > 0
    assert await platform.sql("payments", "SELECT 1 FROM payments WHERE order_id = $1", MAX_ID)


def _new(response: httpx.Response) -> tuple[int, dict[str, str], Any]:
    """An answer less the fields a new record has of its own."""
    status, headers, body = _answer(response)
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in NEW_RECORD}
    return status, headers, body
