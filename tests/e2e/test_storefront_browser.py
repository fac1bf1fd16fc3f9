"""The storefront in a real browser: Debian's Chromium driven by Playwright, against the four
services and the storefront as real processes.

One browser for the module; a fresh context (cookies) per journey.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from shop.devtools.processes import ServiceProcess, free_port, storefront_env, wait_ready
from shop.devtools.redis import find_redis
from tests.e2e.conftest import ADMIN_PASSWORD
from tests.harness import Platform

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "correct horse battery"
# A date as the pages show it: "6 December 2026, 01:25 UTC", never the API's ISO string.
IN_WORDS = re.compile(r"^\d{1,2} [A-Z][a-z]+ \d{4}, \d\d:\d\d UTC$")
XSS_NAME = "<img src=x onerror=alert(1)>"
# `make screenshots` sets this: the journeys then save the main pages for docs/storefront.md.
SCREENSHOTS = os.environ.get("SHOP_SCREENSHOTS")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]


@pytest.fixture(scope="module")
def storefront(live: Platform) -> Iterator[str]:
    port = free_port()
    # Signed-in carts in Redis (found as PostgreSQL is), under keys of this run only.
    redis_url = find_redis()
    carts = {"SHOP_REDIS_URL": redis_url} if redis_url else {}
    env = storefront_env(
        services={name: proc.url for name, proc in live.procs.items()},
        port=port,
        shared={
            "SHOP_ENV": "test",
            "SHOP_CART_PREFIX": f"shop:e2e-cart:{secrets.token_hex(4)}:",
            **carts,
        },
    )
    proc = ServiceProcess("storefront", port, env, live.logs / "storefront.log")
    proc.start()
    try:
        wait_ready([proc], timeout=300)
        yield proc.url
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser, storefront: str) -> Iterator[Page]:
    context = browser.new_context(base_url=storefront, viewport={"width": 390, "height": 844})
    page = context.new_page()
    page.set_default_timeout(60_000)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    yield page
    assert dialogs == [], f"a script ran: {dialogs}"  # the XSS case: no alert ever
    context.close()


def shot(page: Page, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def _admin_token(live: Platform) -> str:
    with live.sync_client("users") as users:
        r = users.post(
            "/api/v1/users/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        return str(r.json()["access_token"])


def _register(page: Page, username: str) -> None:
    page.goto("/register")
    page.get_by_test_id("register-username").fill(username)
    page.get_by_test_id("register-email").fill(f"{username}@example.com")
    page.get_by_test_id("register-password").fill(PASSWORD)
    page.get_by_test_id("register-submit").click()
    expect(page.get_by_test_id("logout")).to_be_visible()


def _log_in(page: Page, username: str) -> None:
    page.goto("/login")
    page.get_by_test_id("login-username").fill(username)
    page.get_by_test_id("login-password").fill(PASSWORD)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("logout")).to_be_visible()


def _add(page: Page, product_id: int, quantity: int = 1) -> None:
    page.goto(f"/products/{product_id}")
    page.get_by_label("Quantity").fill(str(quantity))
    page.get_by_test_id("add-to-cart").click()
    expect(page).to_have_url(re.compile(r"/cart$"))


class Api:
    """What the platform says, over REST, as the customer."""

    def __init__(self, live: Platform, username: str) -> None:
        self.live = live
        with live.sync_client("users") as users:
            login = users.post(
                "/api/v1/users/login", json={"username": username, "password": PASSWORD}
            )
        token = login.json()["access_token"]
        claims = token.split(".")[1]
        payload = base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4))
        self.user_id = int(json.loads(payload)["sub"])
        self.headers = {"Authorization": f"Bearer {token}"}

    def get(self, service: str, path: str) -> Any:
        with self.live.sync_client(service) as client:
            r = client.get(path, headers=self.headers)
        assert r.status_code == 200, r.text
        return r.json()

    def orders(self) -> list[dict[str, Any]]:
        return list(self.get("orders", f"/api/v1/orders/user/{self.user_id}")["items"])

    def payments(self) -> list[dict[str, Any]]:
        return list(self.get("payments", f"/api/v1/payments/user/{self.user_id}")["items"])

    def stock(self, product_id: int) -> int:
        return int(self.get("products", f"/api/v1/products/{product_id}")["stock"])


def _product(live: Platform, name: str, price: str, stock: int = 10) -> int:
    with live.sync_client("products") as products:
        r = products.post(
            "/api/v1/products",
            json={"name": name, "price": price, "stock": stock, "category": "browser"},
            headers={"Authorization": f"Bearer {_admin_token(live)}"},
        )
        assert r.status_code == 201, r.text
        return int(r.json()["id"])


def test_customer_buys_cancels_and_sees_the_refund(page: Page, live: Platform) -> None:
    product_id = _product(live, "Browser kettle", "19.90")
    _product(live, XSS_NAME, "1.00")

    page.goto("/register")
    page.get_by_test_id("register-username").fill("browser_buyer")
    page.get_by_test_id("register-email").fill("browser_buyer@example.com")
    page.get_by_test_id("register-password").fill("correct horse battery")
    page.get_by_test_id("register-submit").click()
    expect(page.get_by_test_id("logout")).to_be_visible()

    page.goto("/?category=browser")
    names = page.get_by_test_id("product-name")
    expect(names.filter(has_text=XSS_NAME)).to_have_count(1)  # shown as text, not an element
    assert page.locator("img").count() == 0
    shot(page, "catalogue")
    card = page.get_by_test_id("product-card").filter(has_text="Browser kettle")
    expect(card.get_by_test_id("product-price")).to_have_text("19.90")
    card.get_by_test_id("product-name").click()
    expect(page).to_have_url(f"{page.url.split('/products')[0]}/products/{product_id}")
    shot(page, "product")
    page.get_by_test_id("add-to-cart").click()
    expect(page.get_by_test_id("cart-count")).to_have_text("1")
    shot(page, "cart")

    page.get_by_test_id("checkout").click()
    page.get_by_test_id("payment-method").select_option("PAYPAL")
    shot(page, "checkout")
    page.get_by_test_id("place-order").dblclick()  # a double click places one order
    expect(page.get_by_test_id("order-status")).to_have_text("paid")
    shot(page, "order-paid")

    page.goto("/orders")
    expect(page.get_by_test_id("order-row")).to_have_count(1)
    page.get_by_test_id("cancel-order").click()
    expect(page.get_by_test_id("order-status")).to_have_text("cancelled")
    expect(page.get_by_test_id("payment-status")).to_contain_text("refunded")
    shot(page, "order-refunded")

    # Log out revokes the refresh token; the pages forget the visitor.
    page.get_by_test_id("logout").click()
    expect(page.get_by_test_id("logout")).to_have_count(0)


def test_declined_payment_is_explained(page: Page, live: Platform) -> None:
    _product(live, "Browser diamond", "20000.00", stock=1)
    page.goto("/register")
    page.get_by_test_id("register-username").fill("browser_big")
    page.get_by_test_id("register-email").fill("browser_big@example.com")
    page.get_by_test_id("register-password").fill("correct horse battery")
    page.get_by_test_id("register-submit").click()
    page.goto("/?category=browser")
    page.get_by_test_id("product-card").filter(has_text="Browser diamond").get_by_test_id(
        "add-to-cart"
    ).click()
    page.get_by_test_id("checkout").click()
    page.get_by_test_id("place-order").click()
    expect(page.get_by_test_id("error")).to_contain_text("declined")
    shot(page, "checkout-declined")


def test_state_changes_need_the_csrf_token(storefront: str) -> None:
    with httpx.Client(base_url=storefront) as client:
        client.get("/")  # gets a CSRF cookie
        assert client.cookies.get("shop_csrf")
        forged = client.post("/cart", data={"product_id": "1"})  # no token: another site's form
        assert forged.status_code == 403
        wrong = client.post("/logout", data={"csrf_token": "guessed"})
        assert wrong.status_code == 403
        good = client.post(
            "/cart", data={"product_id": "1", "csrf_token": client.cookies["shop_csrf"]}
        )
        assert good.status_code == 303
        page = client.get("/")
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "unsafe-inline" not in page.headers["content-security-policy"]


def _paid_order(live: Platform, product_id: int) -> int:
    with live.sync_client("users") as users, live.sync_client("orders") as orders:
        body = {"username": "rest_buyer", "email": "rest_buyer@example.com"}
        users.post("/api/v1/users/register", json={**body, "password": "correct horse battery"})
        login = users.post(
            "/api/v1/users/login",
            json={"username": "rest_buyer", "password": "correct horse battery"},
        )
        token = login.json()["access_token"]
        r = orders.post(
            "/api/v1/orders",
            json={"product_id": product_id, "quantity": 1, "payment_method": "card"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.json()["status"] == "paid", r.text
        return int(r.json()["id"])


def test_admin_creates_a_product_and_ships_an_order(page: Page, live: Platform) -> None:
    page.goto("/admin")  # a visitor is sent to log in first
    page.get_by_test_id("login-username").fill("admin")
    page.get_by_test_id("login-password").fill(ADMIN_PASSWORD)
    page.get_by_test_id("login-submit").click()
    form = page.get_by_test_id("product-form").first
    form.get_by_label("Name").fill("Admin-made teapot")
    form.get_by_label("Price (USD)").fill("31.00")
    form.get_by_label("Stock").fill("7")
    form.get_by_label("Category").fill("admin-made")
    form.get_by_test_id("product-save").click()

    page.goto("/?category=admin-made")
    card = page.get_by_test_id("product-card")
    expect(card.get_by_test_id("product-name")).to_have_text("Admin-made teapot")
    expect(card.get_by_test_id("product-price")).to_have_text("31.00")
    product_id = int(card.get_by_test_id("product-name").get_attribute("href").rsplit("/", 1)[1])

    order_id = _paid_order(live, product_id)
    page.goto("/admin/orders")
    row = page.locator(f'[data-testid="order-row"][data-order-id="{order_id}"]')
    expect(row.get_by_test_id("order-status")).to_have_text("paid")
    expect(row.get_by_test_id("order-line")).to_have_text("1 \u00d7 Admin-made teapot at 31.00 USD")
    expect(row.locator("time")).to_have_text(IN_WORDS)
    row.get_by_role("button", name=f"Ship order {order_id}").click()
    row = page.locator(f'[data-testid="order-row"][data-order-id="{order_id}"]')
    expect(row.get_by_test_id("order-status")).to_have_text("shipped")
    shot(page, "admin-orders")
    page.goto("/admin")
    shot(page, "admin-products")


def test_admin_pages_refuse_customers(page: Page) -> None:
    page.goto("/register")
    page.get_by_test_id("register-username").fill("browser_nosy")
    page.get_by_test_id("register-email").fill("browser_nosy@example.com")
    page.get_by_test_id("register-password").fill("correct horse battery")
    page.get_by_test_id("register-submit").click()
    response = page.goto("/admin/users")
    assert response is not None
    assert response.status == 403
    expect(page.get_by_test_id("error")).to_have_text("Admins only.")


def test_a_three_line_cart_is_one_order_paid_once(page: Page, live: Platform) -> None:
    tea = _product(live, "Cart tea", "4.00", stock=20)
    pot = _product(live, "Cart pot", "21.50", stock=5)
    cup = _product(live, "Cart cup", "3.25", stock=20)
    _register(page, "browser_three")
    _add(page, tea, 3)
    _add(page, pot)
    _add(page, cup, 1)

    lines = page.get_by_test_id("cart-line")
    expect(lines).to_have_count(3)
    expect(page.get_by_test_id("cart-total")).to_have_text("36.75 USD")
    cups = lines.filter(has_text="Cart cup")
    cups.get_by_test_id("cart-quantity").fill("2")
    cups.get_by_role("button", name="Update the quantity of Cart cup").click()
    cups = page.get_by_test_id("cart-line").filter(has_text="Cart cup")
    expect(cups.get_by_test_id("cart-quantity")).to_have_value("2")
    expect(cups.get_by_test_id("line-total")).to_have_text("6.50 USD")
    expect(page.get_by_test_id("cart-total")).to_have_text("40.00 USD")
    expect(page.get_by_test_id("cart-count")).to_have_text("6")
    shot(page, "cart-lines")

    page.get_by_test_id("checkout").click()
    expect(page.get_by_test_id("order-line")).to_have_count(3)
    expect(page.get_by_test_id("checkout-total")).to_have_text("40.00 USD")
    page.get_by_test_id("place-order").dblclick()  # a double click still places one order
    expect(page.get_by_test_id("order-status")).to_have_text("paid")
    expect(page.get_by_test_id("order-line")).to_have_count(3)
    expect(page.get_by_test_id("order-total")).to_have_text("40.00 USD")
    expect(page.get_by_test_id("cart-count")).to_have_text("0")
    placed = page.locator("time").first
    expect(placed).to_have_text(IN_WORDS)
    shot(page, "order-lines")

    api = Api(live, "browser_three")
    orders = api.orders()
    assert len(orders) == 1, orders  # one order for the cart, not one per line
    assert [(line["product_id"], line["quantity"]) for line in orders[0]["lines"]] == [
        (tea, 3),
        (pot, 1),
        (cup, 2),
    ]
    assert orders[0]["total_price"] == "40.00"
    payments = api.payments()
    assert [(p["order_id"], p["amount"], p["status"]) for p in payments] == [
        (orders[0]["id"], "40.00", "completed")
    ]
    assert [api.stock(p) for p in (tea, pot, cup)] == [17, 4, 18]

    page.goto("/orders")
    expect(page.get_by_test_id("order-row")).to_have_count(1)
    expect(page.get_by_test_id("order-row").locator("time")).to_have_text(IN_WORDS)


def test_a_checkout_short_of_one_line_charges_nothing_and_keeps_the_cart(
    page: Page, live: Platform
) -> None:
    plenty = _product(live, "Short plenty", "2.00", stock=30)
    scarce = _product(live, "Short scarce", "5.00", stock=1)
    other = _product(live, "Short other", "1.00", stock=30)
    _register(page, "browser_short")
    _add(page, plenty, 2)
    _add(page, scarce, 3)
    _add(page, other, 1)
    page.get_by_test_id("checkout").click()
    page.get_by_test_id("place-order").click()

    expect(page.get_by_test_id("error")).to_contain_text("nothing was ordered or charged")
    expect(page.get_by_test_id("order-line")).to_have_count(3)
    short = page.get_by_test_id("short-line")
    expect(short).to_have_count(1)
    expect(short).to_have_text("only 1 left")
    expect(page.get_by_test_id("order-line").filter(has=short)).to_contain_text("Short scarce")
    expect(page.get_by_test_id("cart-count")).to_have_text("6")
    shot(page, "checkout-short")

    api = Api(live, "browser_short")
    assert [o for o in api.orders() if o["status"] == "paid"] == []
    assert api.payments() == []  # nothing charged
    assert [api.stock(p) for p in (plenty, scarce, other)] == [30, 1, 30]  # nothing held
    page.goto("/cart")
    expect(page.get_by_test_id("cart-line")).to_have_count(3)  # the cart keeps everything

    # Down to what is there, the same cart goes through, as one order.
    line = page.get_by_test_id("cart-line").filter(has_text="Short scarce")
    line.get_by_test_id("cart-quantity").fill("1")
    line.get_by_role("button", name="Update the quantity of Short scarce").click()
    page.get_by_test_id("checkout").click()
    page.get_by_test_id("place-order").click()
    expect(page.get_by_test_id("order-status")).to_have_text("paid")
    assert len([o for o in api.orders() if o["status"] == "paid"]) == 1


def test_cancelling_a_cart_order_restocks_every_line(page: Page, live: Platform) -> None:
    products = [_product(live, f"Cancel {i}", "3.00", stock=10) for i in range(3)]
    _register(page, "browser_cancel")
    for quantity, product in enumerate(products, start=1):
        _add(page, product, quantity)
    page.get_by_test_id("checkout").click()
    page.get_by_test_id("place-order").click()
    expect(page.get_by_test_id("order-status")).to_have_text("paid")
    api = Api(live, "browser_cancel")
    assert [api.stock(p) for p in products] == [9, 8, 7]

    page.get_by_test_id("cancel-order").click()
    expect(page.get_by_test_id("order-status")).to_have_text("cancelled")
    expect(page.get_by_test_id("payment-status")).to_contain_text("refunded")
    expect(page.get_by_test_id("order-line")).to_have_count(3)
    assert [api.stock(p) for p in products] == [10, 10, 10]
    assert [p["status"] for p in api.payments()] == ["refunded"]  # refunded once


@pytest.mark.skipif(find_redis() is None, reason="no Redis: carts stay in their browser")
def test_the_cart_follows_the_customer_from_phone_to_laptop(
    browser: Browser, storefront: str, live: Platform
) -> None:
    phone_only = _product(live, "Follow me", "7.00")
    laptop_too = _product(live, "And me", "2.50")
    phone = browser.new_context(base_url=storefront, viewport={"width": 390, "height": 844})
    laptop = browser.new_context(base_url=storefront, viewport={"width": 1280, "height": 800})
    try:
        on_phone, on_laptop = phone.new_page(), laptop.new_page()
        _register(on_phone, "browser_follow")
        on_phone.get_by_test_id("logout").click()
        # Browsing anonymously on the phone, then signing in: the cart comes along.
        _add(on_phone, phone_only, 2)
        expect(on_phone.get_by_test_id("cart-count")).to_have_text("2")
        _log_in(on_phone, "browser_follow")

        _log_in(on_laptop, "browser_follow")
        expect(on_laptop.get_by_test_id("cart-count")).to_have_text("2")
        _add(on_laptop, laptop_too, 1)
        expect(on_laptop.get_by_test_id("cart-line")).to_have_count(2)

        on_phone.goto("/cart")
        expect(on_phone.get_by_test_id("cart-line")).to_have_count(2)
        expect(on_phone.get_by_test_id("cart-total")).to_have_text("16.50 USD")
        line = on_phone.get_by_test_id("cart-line").filter(has_text="Follow me")
        line.get_by_role("button", name="Remove Follow me").click()
        on_laptop.goto("/cart")
        expect(on_laptop.get_by_test_id("cart-line")).to_have_count(1)
        expect(on_laptop.get_by_test_id("cart-total")).to_have_text("2.50 USD")
    finally:
        phone.close()
        laptop.close()


def test_the_cart_refuses_what_does_not_exist_or_does_not_fit(
    page: Page, storefront: str, live: Platform
) -> None:
    product = _product(live, "Bounded", "1.00", stock=500)
    _add(page, product, 99)
    expect(page.get_by_test_id("cart-count")).to_have_text("99")
    refused = page.request.post(
        "/cart",
        form={"product_id": str(product), "quantity": "1", "csrf_token": _csrf(page)},
    )
    assert refused.status == 422
    assert "At most 99 of one product" in refused.text()
    missing = page.request.post(
        "/cart", form={"product_id": "999999", "quantity": "1", "csrf_token": _csrf(page)}
    )
    assert missing.status == 404
    assert "No such product" in missing.text()
    page.goto("/cart")
    expect(page.get_by_test_id("cart-count")).to_have_text("99")


def _csrf(page: Page) -> str:
    return next(c["value"] for c in page.context.cookies() if c["name"] == "shop_csrf")
