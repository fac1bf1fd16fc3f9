"""Zero downtime through the gateway: a bounded load runs while replicas die or roll.

A few concurrent clients each run a fixed script (browse the catalogue, read a product, log in,
place an order with an Idempotency-Key: every other one a three-line cart over the same three
hot products, each cart's lines in another order) through the Envoy gateway while the test
(a) kills -9 one replica of every service, or (b) restarts every replica one by one as a
rolling update does. Each request's outcome is counted. A client that sees an order fail
retries it with the same key, as the contract tells it to; afterwards every order the clients
saw succeed must exist exactly once and be paid with all its lines, every other must have
failed with none, no product may sell more than it had, and the three databases must agree
(check-consistency).

Reads must never fail, with one case a client handles itself: a replica SIGKILLed between
writing a response's headers and its body. Envoy has forwarded the headers, so it cannot retry
on another replica (no streaming proxy can); it cuts the client's response off (access log:
``UPE``, ``upstream_reset_after_response_started``). An idempotent GET whose response was cut
off may be sent again (RFC 9110 §9.2.2), so the client does, once. Only that case: a 5xx, or a
connection closed before any response, is a failure; the rolling restart must cut nothing; and
every cut the kill test retried must be one the gateway logged as its replica dying.
Failures are reported with the gateway's access-log lines and the replicas' log lines for their
request ids (each request carries an ``X-Request-ID`` of the test's own).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import httpx
import pytest

from shop.devtools.cluster import Cluster
from shop.devtools.processes import SERVICES
from shop.ops.consistency import check
from tests.ha.conftest import ADMIN_PASSWORD, needs_envoy

pytestmark = [pytest.mark.ha, needs_envoy]

CLIENTS = 4
# Each client round is 4 requests: 2 reads, a login or a read, an order. Clients start, the
# disruption begins once they are warm, and each client stops AFTER_ROUNDS rounds after the
# disruption ended (at most MAX_ROUNDS), so the load always spans the whole disruption.
# A round every PACE seconds per client: steady traffic, not a flood, on a 2-core machine.
WARM_REQUESTS = 40
AFTER_ROUNDS = 5
MAX_ROUNDS = 1000
PACE = 0.2
ORDER_RETRIES = 20


@dataclass
class Tally:
    """Outcomes by operation; ``first_failures`` counts failed first attempts of orders."""

    ok: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    failed_request_ids: list[str] = field(default_factory=list)
    # Reads whose response started and was then cut off (retried once): (op, request id, error).
    cut_short: list[tuple[str, str, str]] = field(default_factory=list)
    order_first_failures: int = 0
    orders_seen_paid: dict[str, int] = field(default_factory=dict)  # key -> order id
    orders_given_up: list[str] = field(default_factory=list)
    orders_failed_final: list[str] = field(default_factory=list)
    done: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(
        self, op: str, request_id: str, response: httpx.Response | None, error: str = ""
    ) -> None:
        with self.lock:
            self.done += 1
            if response is not None and response.status_code < 400:
                self.ok[op] += 1
            else:
                self.failed[op] += 1
                what = f"{response.status_code} {response.text[:160]}" if response else error
                self.errors.append(f"{op} [{request_id}]: {what}")
                self.failed_request_ids.append(request_id)

    def explain(self, cluster: Cluster) -> str:
        """The failures, each with the gateway's access-log lines for its request id (the
        public listener's, and the internal listeners' for the calls it led to)."""
        lines = _access_log_lines(cluster.gateway.access_log, set(self.failed_request_ids))
        replicas = [
            (proc.log_path.stem, proc.log_path.read_text(errors="replace").splitlines())
            for proc in cluster.all
            if proc.log_path is not None and proc.log_path.exists()
        ]
        out = [self.summary()]
        out += [
            f"{op} [{request_id}] cut short, retried: {e}" for op, request_id, e in self.cut_short
        ]
        for error, request_id in zip(self.errors, self.failed_request_ids, strict=True):
            out.append(error)
            out += [f"    gateway: {line}" for line in lines.get(request_id, [])] or [
                "    gateway: no access-log line for it (the request never reached Envoy)"
            ]
            out += [
                f"    {name}: {line}"
                for name, log in replicas
                for line in log
                if request_id in line
            ]
        return "\n".join(out)

    def summary(self) -> str:
        ops = sorted(set(self.ok) | set(self.failed))
        parts = [f"{op} {self.ok[op]} ok / {self.failed[op]} failed" for op in ops]
        return "; ".join(parts) + (
            f"; reads cut short mid-response and retried: {len(self.cut_short)}"
            f"; orders failing a first attempt: {self.order_first_failures}"
            f", of which settled as failed: {len(self.orders_failed_final)}"
        )


def _request_id() -> dict[str, str]:
    """An X-Request-ID of the test's own: the gateway keeps it and logs it, so a failure can
    be matched to the gateway's access-log line for it."""
    return {"X-Request-ID": f"ha-{uuid.uuid4().hex}"}


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _access_log_lines(path: Path, request_ids: set[str]) -> dict[str, list[str]]:
    """The access-log lines of ``request_ids``, by id. Envoy flushes its log every second:
    this waits until each id has a line (at most a minute: a request that never reached Envoy
    has none)."""
    found: dict[str, list[str]] = {}
    deadline = time.monotonic() + 60
    while True:
        found.clear()
        text = path.read_text() if path.exists() else ""
        for line in text.splitlines():
            try:
                request_id = json.loads(line).get("request_id")
            except ValueError:
                continue
            if request_id in request_ids:
                found.setdefault(request_id, []).append(line)
        if set(found) >= request_ids or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def _login(gateway: str, username: str, password: str) -> dict[str, str]:
    response = httpx.post(
        f"{gateway}/api/v1/users/login",
        json={"username": username, "password": password},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _client_script(
    gateway: str, n: int, hot: list[int], tally: Tally, phase: str, over: threading.Event
) -> Callable[[], None]:
    product_id = hot[0]
    username, password = f"ha_{phase}_{n}", "a long password"

    def run() -> None:
        with httpx.Client(base_url=gateway, timeout=60) as http:
            http.post(
                "/api/v1/users/register",
                json={
                    "username": username,
                    "email": f"{username}@example.com",
                    "password": password,
                },
            )
            token = _login(gateway, username, password)
            after = 0
            for i in range(MAX_ROUNDS):
                if over.is_set():
                    after += 1
                    if after > AFTER_ROUNDS:
                        break
                _read(http, tally, "browse", "/api/v1/products", {"limit": 20})
                _read(http, tally, "read", f"/api/v1/products/{product_id}")
                if i % 3 == 0:
                    rid = _request_id()
                    try:
                        response = http.post(
                            "/api/v1/users/login",
                            json={"username": username, "password": password},
                            headers=rid,
                        )
                        tally.record("login", rid["X-Request-ID"], response)
                    except httpx.HTTPError as exc:
                        tally.record("login", rid["X-Request-ID"], None, _error(exc))
                else:
                    _read(http, tally, "read", f"/api/v1/products/{product_id}")
                _order(http, token, _cart(hot, n + i), f"{phase}-{n}-{i}", tally)
                time.sleep(PACE)

    return run


def _read(
    http: httpx.Client, tally: Tally, op: str, path: str, params: dict[str, int] | None = None
) -> None:
    """GET ``path`` and count the outcome; once more (a new connection: httpx drops the broken
    one) when a success's headers came and its body was then cut off, and only then."""
    for attempt in range(2):
        rid = _request_id()
        request = http.build_request("GET", path, params=params, headers=rid)
        try:
            response = http.send(request, stream=True)
        except httpx.HTTPError as exc:  # no response at all: a failure, never retried
            tally.record(op, rid["X-Request-ID"], None, _error(exc))
            return
        try:
            response.read()
        except httpx.TransportError as exc:
            if attempt == 0 and response.status_code < 400:
                with tally.lock:
                    tally.cut_short.append((op, rid["X-Request-ID"], _error(exc)))
                continue
            error = f"{response.status_code}, then {_error(exc)}"
            tally.record(op, rid["X-Request-ID"], None, error)
            return
        finally:
            response.close()
        tally.record(op, rid["X-Request-ID"], response)
        return


def _assert_cut_by_a_dying_replica(cluster: Cluster, tally: Tally) -> None:
    """Every read retried for a cut-off body was cut because its replica died after sending
    the response's headers (the gateway's log says so), not by the gateway itself."""
    lines = _access_log_lines(cluster.gateway.access_log, {rid for _, rid, _ in tally.cut_short})
    for op, request_id, error in tally.cut_short:
        details = [json.loads(line)["details"] for line in lines.get(request_id, [])]
        assert any(d.startswith("upstream_reset_after_response_started") for d in details), (
            f"{op} [{request_id}] was cut short ({error}), not by its replica dying: "
            f"{lines.get(request_id, 'no gateway access-log line')}"
        )


def _cart(hot: list[int], i: int) -> dict[str, object]:
    """Every other order the seed's one-product body, else a cart of one of each hot product,
    its lines rotated (carts over the same products in different orders must not deadlock)."""
    if i % 2 == 0:
        return {"product_id": hot[0], "quantity": 1, "payment_method": "card"}
    turn = (i // 2) % len(hot)
    lines = [{"product_id": p, "quantity": 1} for p in hot[turn:] + hot[:turn]]
    return {"lines": lines, "payment_method": "card"}


def _order(
    http: httpx.Client, token: dict[str, str], body: dict[str, object], key: str, tally: Tally
) -> None:
    for attempt in range(ORDER_RETRIES):
        rid = _request_id()
        try:
            response: httpx.Response | None = http.post(
                "/api/v1/orders", json=body, headers={**token, "Idempotency-Key": key, **rid}
            )
            error = ""
        except httpx.HTTPError as exc:
            response, error = None, _error(exc)
        if attempt == 0:
            tally.record("order", rid["X-Request-ID"], response, error)
        if response is not None and response.status_code == 201:
            with tally.lock:
                if attempt:
                    tally.order_first_failures += 1
                tally.orders_seen_paid[key] = response.json()["id"]
            return
        if response is not None and response.status_code == 409:
            if "Retry-After" not in response.headers:
                # Final: a line was short of stock, or recovery settled the order the dead
                # replica was driving as failed (its payment had not gone through); the
                # client is told so, nothing is held.
                with tally.lock:
                    tally.order_first_failures += 1
                    tally.orders_failed_final.append(key)
                return
        elif response is not None and response.status_code < 500:
            raise AssertionError(f"order {key}: {response.status_code} {response.text}")
        time.sleep(float(response.headers.get("Retry-After", "1")) if response else 1.0)
    with tally.lock:
        tally.order_first_failures += 1
        tally.orders_given_up.append(key)


def _run_load(cluster: Cluster, hot: list[int], phase: str, disrupt: Callable[[], None]) -> Tally:
    tally, over = Tally(), threading.Event()
    with ThreadPoolExecutor(CLIENTS) as pool:
        futures = [
            pool.submit(_client_script(cluster.gateway.url, n, hot, tally, phase, over))
            for n in range(CLIENTS)
        ]
        while tally.done < WARM_REQUESTS and not any(f.done() for f in futures):
            time.sleep(0.02)
        try:
            disrupt()
            running = [not f.done() for f in futures]
        finally:
            over.set()
        for future in futures:
            future.result()
        assert all(running), "a client finished before the disruption did: no overlap"
    return tally


async def _verify_orders(cluster: Cluster, tally: Tally, phase: str, stock: dict[int, int]) -> None:
    """Every order the clients saw paid is paid, once, with all its lines reserved; every
    other is failed with none; no product sold more than it had (``stock``: before the run)."""
    urls = {name: cluster.envs[name]["SHOP_DATABASE_URL"] for name in SERVICES}
    conn = await asyncpg.connect(urls["orders"])
    try:
        deadline = time.monotonic() + 120
        while pending := await conn.fetch("SELECT * FROM orders WHERE status = 'pending'"):
            if time.monotonic() > deadline:  # the rows say which step each one is stuck at
                pytest.fail(f"orders still pending after recovery time: {list(map(dict, pending))}")
            await asyncio.sleep(0.5)  # the order service's recovery worker settles them
        rows = await conn.fetch(
            "SELECT id, status, idempotency_key FROM orders WHERE idempotency_key LIKE $1",
            f"{phase}-%",
        )
        sold = {
            r["product_id"]: r["n"]
            for r in await conn.fetch(
                "SELECT l.product_id, sum(l.quantity) AS n FROM order_lines l"
                " JOIN orders o ON o.id = l.order_id"
                " WHERE o.status = 'paid' AND o.idempotency_key LIKE $1 GROUP BY l.product_id",
                f"{phase}-%",
            )
        }
    finally:
        await conn.close()
    by_key = Counter(r["idempotency_key"] for r in rows)
    assert [k for k, n in by_key.items() if n > 1] == [], "an order was duplicated"
    status = {r["id"]: r["status"] for r in rows}
    for key, order_id in tally.orders_seen_paid.items():
        assert status[order_id] == "paid", (key, status[order_id])
    paid = sum(1 for s in status.values() if s == "paid")
    assert paid == len(tally.orders_seen_paid)  # no paid order the clients did not see
    by_key_status = {r["idempotency_key"]: r["status"] for r in rows}
    for key in tally.orders_failed_final:
        assert by_key_status[key] == "failed", key  # and consistency: stock back, no charge
    products = await asyncpg.connect(urls["products"])
    try:
        left = {
            r["id"]: r["stock"]
            for r in await products.fetch(
                "SELECT id, stock FROM products WHERE id = ANY($1::bigint[])", list(stock)
            )
        }
    finally:
        await products.close()
    # Zero oversell, product by product: what is left is what there was less what was paid.
    assert left == {p: stock[p] - sold.get(p, 0) for p in stock}
    report = await check(urls["orders"], urls["products"], urls["payments"])
    assert report.problems == []


@pytest.fixture
def hot(cluster: Cluster) -> dict[int, int]:
    """Three hot products (id -> stock), enough of each for every order the clients place."""
    admin = _login(cluster.gateway.url, "admin", ADMIN_PASSWORD)
    made = {}
    for name in ("HA widget", "HA gadget", "HA gizmo"):
        response = httpx.post(
            f"{cluster.gateway.url}/api/v1/products",
            json={"name": name, "price": "1.00", "stock": CLIENTS * MAX_ROUNDS},
            headers=admin,
            timeout=60,
        )
        assert response.status_code == 201, response.text
        made[response.json()["id"]] = CLIENTS * MAX_ROUNDS
    return made


# In the kill test one hot product runs out mid-run: carts are then refused for that line
# (409, nothing reserved or charged) while replicas die.
SCARCE = 25


def test_kill_minus_9_one_replica_of_each_service(
    cluster: Cluster, hot: dict[int, int], record_property: Callable[[str, object], None]
) -> None:
    scarce = list(hot)[1]
    admin = _login(cluster.gateway.url, "admin", ADMIN_PASSWORD)
    response = httpx.patch(
        f"{cluster.gateway.url}/api/v1/products/{scarce}/stock",
        json={"stock": SCARCE},
        headers=admin,
        timeout=60,
    )
    assert response.status_code == 200, response.text
    hot[scarce] = SCARCE

    def disrupt() -> None:
        for service in SERVICES:
            cluster.kill(service, 0)
        time.sleep(1.0)  # the load runs on the surviving replicas for a while
        for service in SERVICES:
            cluster.start_replica(service, 0)

    tally = _run_load(cluster, list(hot), "kill", disrupt)
    print(f"\nkill -9 one replica of each service: {tally.summary()}")
    record_property("kill_summary", tally.summary())
    assert tally.failed["browse"] == tally.failed["read"] == 0, tally.explain(cluster)
    _assert_cut_by_a_dying_replica(cluster, tally)
    assert tally.orders_given_up == []
    asyncio.run(_verify_orders(cluster, tally, "kill", hot))


def test_rolling_restart_of_every_replica(
    cluster: Cluster, hot: dict[int, int], record_property: Callable[[str, object], None]
) -> None:
    exit_codes: list[int | None] = []

    def disrupt() -> None:
        for service in SERVICES:
            for index in range(len(cluster.replicas[service])):
                # Out of the gateway's rotation before its SIGTERM, back in when ready, then a
                # moment of serving before the next one goes (minReadySeconds).
                exit_codes.append(cluster.restart(service, index, min_ready_seconds=0.5))

    tally = _run_load(cluster, list(hot), "roll", disrupt)
    print(f"\nrolling restart of all 8 replicas: {tally.summary()}")
    record_property("rolling_summary", tally.summary())
    # Every replica drained and shut down cleanly: uvicorn re-raises the SIGTERM it handled
    # once it is done, so a clean exit reads -15; the log shows the shutdown ran to its end.
    assert set(exit_codes) <= {0, -15}, exit_codes
    for proc in cluster.all:
        assert proc.log_path is not None
        assert '"message":"service stopped"' in proc.log_path.read_text()
    assert sum(tally.failed.values()) == 0, tally.explain(cluster)
    assert tally.cut_short == [], tally.explain(cluster)  # a draining replica finishes all it began
    assert tally.order_first_failures == 0
    asyncio.run(_verify_orders(cluster, tally, "roll", hot))
