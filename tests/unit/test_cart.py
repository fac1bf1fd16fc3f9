"""The cart's rules at their bounds (limits.py), its cookie store, and dates as people read them."""

from __future__ import annotations

import pytest
from starlette.responses import Response

from shop.storefront.cart import (
    CartRefused,
    CookieCartStore,
    added,
    merged,
    parsed,
    serialised,
    with_quantity,
    without,
)
from shop.storefront.limits import CART_MAX_LINES, CART_MAX_QUANTITY
from shop.storefront.web import when

FULL = dict.fromkeys(range(1, CART_MAX_LINES + 1), 1)


def test_adding_sums_up_to_the_most_of_one_product() -> None:
    cart = added({}, 7, 2)
    assert added(cart, 7, CART_MAX_QUANTITY - 2) == {7: CART_MAX_QUANTITY}
    with pytest.raises(CartRefused, match=f"At most {CART_MAX_QUANTITY}"):
        added(cart, 7, CART_MAX_QUANTITY - 1)
    for quantity in (0, -1, CART_MAX_QUANTITY + 1):
        with pytest.raises(CartRefused):
            added({}, 7, quantity)
    assert cart == {7: 2}  # the rules return new carts


def test_a_cart_holds_at_most_the_line_limit() -> None:
    almost = dict.fromkeys(range(1, CART_MAX_LINES), 1)
    assert len(added(almost, 999, 1)) == CART_MAX_LINES
    with pytest.raises(CartRefused, match=f"at most {CART_MAX_LINES}"):
        added(FULL, 999, 1)
    assert added(FULL, 1, 1)[1] == 2  # more of a product it holds still fits


def test_setting_a_quantity() -> None:
    cart = {3: 1, 4: 2}
    assert with_quantity(cart, 4, CART_MAX_QUANTITY) == {3: 1, 4: CART_MAX_QUANTITY}
    assert with_quantity(cart, 4, 0) == {3: 1}
    with pytest.raises(CartRefused):
        with_quantity(cart, 4, CART_MAX_QUANTITY + 1)
    with pytest.raises(CartRefused, match="not in the cart"):
        with_quantity(cart, 5, 1)
    assert without(cart, 3, 99) == {4: 2}


def test_a_merge_keeps_what_fits_and_never_fails() -> None:
    assert merged({1: 2}, {1: 3, 2: 1}) == {1: 5, 2: 1}
    assert merged({1: CART_MAX_QUANTITY - 1}, {1: 5}) == {1: CART_MAX_QUANTITY}
    assert merged(FULL, {999: 1}) == FULL
    assert list(merged({2: 1}, {1: 1})) == [2, 1]  # the order things were added in


def test_the_cookie_is_read_defensively() -> None:
    assert parsed(serialised({5: 2, 3: 1})) == {5: 2, 3: 1}
    assert parsed(None) == {}
    for junk in ("not json", "[1, 2]", '{"x": 1}', '{"1": "many"}', '{"1": null}'):
        assert parsed(junk) == {}
    assert parsed('{"1": 500, "2": 0, "-3": 1}') == {1: CART_MAX_QUANTITY}
    many = serialised(dict.fromkeys(range(1, CART_MAX_LINES + 10), 1))
    assert len(parsed(many)) == CART_MAX_LINES


async def test_the_cookie_store_writes_only_a_change() -> None:
    untouched = Response()
    store = CookieCartStore('{"1": 2}', secure=True)
    store.apply(untouched)
    assert "set-cookie" not in untouched.headers

    await store.update(lambda cart: added(cart, 4, 1))
    changed = Response()
    store.apply(changed)
    cookie = changed.headers["set-cookie"]
    assert cookie.startswith("shop_cart=")
    assert all(flag in cookie.lower() for flag in ("httponly", "secure", "samesite=lax"))

    await store.clear()
    emptied = Response()
    store.apply(emptied)
    assert 'shop_cart=""' in emptied.headers["set-cookie"]  # deleted
    assert "max-age=0" in emptied.headers["set-cookie"].lower()


@pytest.mark.parametrize(
    ("iso", "words"),
    [
        ("2026-12-06T01:25:17.278483+00:00", "6 December 2026, 01:25 UTC"),
        ("2026-12-06T01:25:17+02:00", "5 December 2026, 23:25 UTC"),
        ("2027-01-31T12:00:00Z", "31 January 2027, 12:00 UTC"),
        ("2026-03-01T09:05:00", "1 March 2026, 09:05 UTC"),  # no zone: the API's UTC
        ("", ""),
        ("not a date", "not a date"),
    ],
)
def test_dates_are_shown_in_words(iso: str, words: str) -> None:
    assert when(iso) == words
