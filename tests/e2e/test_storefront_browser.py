"""The storefront in a real browser: Debian's Chromium driven by Playwright, against the four
services and the storefront as real processes.

One browser for the module; a fresh context (cookies) per journey.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from shop.devtools.processes import ServiceProcess, free_port, storefront_env, wait_ready
from tests.e2e.conftest import ADMIN_PASSWORD, LivePlatform

CHROMIUM = Path("/usr/bin/chromium")
XSS_NAME = "<img src=x onerror=alert(1)>"
# `make screenshots` sets this: the journeys then save the main pages for docs/storefront.md.
SCREENSHOTS = os.environ.get("SHOP_SCREENSHOTS")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed"),
]


@pytest.fixture(scope="module")
def storefront(live: LivePlatform) -> Iterator[str]:
    port = free_port()
    env = storefront_env(
        services={name: proc.url for name, proc in live.procs.items()},
        port=port,
        shared={"SHOP_ENV": "test"},
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


def _admin_token(live: LivePlatform) -> str:
    with live.client("users") as users:
        r = users.post(
            "/api/v1/users/login", json={"username": "admin", "password": ADMIN_PASSWORD}
        )
        return str(r.json()["access_token"])


def _product(live: LivePlatform, name: str, price: str, stock: int = 10) -> int:
    with live.client("products") as products:
        r = products.post(
            "/api/v1/products",
            json={"name": name, "price": price, "stock": stock, "category": "browser"},
            headers={"Authorization": f"Bearer {_admin_token(live)}"},
        )
        assert r.status_code == 201, r.text
        return int(r.json()["id"])


def test_customer_buys_cancels_and_sees_the_refund(page: Page, live: LivePlatform) -> None:
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


def test_declined_payment_is_explained(page: Page, live: LivePlatform) -> None:
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


def _paid_order(live: LivePlatform, product_id: int) -> int:
    with live.client("users") as users, live.client("orders") as orders:
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


def test_admin_creates_a_product_and_ships_an_order(page: Page, live: LivePlatform) -> None:
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
