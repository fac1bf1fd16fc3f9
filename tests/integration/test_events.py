"""Events against a real RabbitMQ (names of each test's own): the outbox of every service is
published in the contract's format, the order follows an admin refund once, redeliveries do
nothing again, and a poison message ends in the DLQ without blocking its queue."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
import uuid
import warnings
from collections import Counter
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import aio_pika
import orjson
import pytest

from shop.common.events.broker import Topology, delete_topology
from shop.common.events.catalogue import CONTENT_TYPE, EVENT_TYPES
from shop.common.events.consumer import Consumer, Event
from shop.common.events.relay import Relay, render_as
from shop.devtools.processes import RelayProcess, free_port, wait_ready
from shop.orders.events import CONSUMER, KEYS, follow_refunds
from shop.orders.schemas import OrderEvent
from shop.payments.schemas import PaymentRead
from shop.products.schemas import ProductRead
from shop.users.schemas import UserRead
from tests.integration.conftest import Platform

USER = 7
RENDER = {
    "users": UserRead,
    "products": ProductRead,
    "orders": OrderEvent,
    "payments": PaymentRead,
}


async def until(done: Callable[[], bool], within: float = 30.0) -> None:
    """Wait for state that another task or process changes (no timing asserted)."""
    async with asyncio.timeout(within):
        while not done():  # noqa: ASYNC110 - the state lives in the broker's callbacks
            await asyncio.sleep(0.05)


@pytest.fixture
async def topology(amqp_url: str, amqp_names: dict[str, str]) -> AsyncIterator[Topology]:
    topology = Topology(amqp_url, amqp_names["amqp_exchange"], amqp_names["amqp_queue_prefix"])
    yield topology
    await delete_topology(
        topology, ["orders", "notifications", "poison", "batched"]
    )  # leave nothing


def a_test_event(subject: str) -> bytes:
    """A CloudEvent of type ``shop.test.x`` with ``subject`` (a fresh id each time)."""
    return orjson.dumps(
        {
            "specversion": "1.0",
            "id": str(uuid.uuid4()),
            "source": "/test",
            "type": "shop.test.x",
            "subject": subject,
            "time": "2026-12-02T00:00:00Z",
            "data": {},
        }
    )


@contextlib.asynccontextmanager
async def background(*bodies: Any) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(b) for b in bodies]
    try:
        yield
    finally:
        for t in tasks:
            t.cancel()
        # Bounded: twice in a full suite a cancelled broker task never finished (an AMQP
        # close that got no answer; cause not found). The test's effects are asserted by then,
        # so a stuck close warns instead of hanging the suite.
        done, stuck = await asyncio.wait(tasks, timeout=15)
        for t in done:
            with contextlib.suppress(asyncio.CancelledError):
                t.result()
        if stuck:
            warnings.warn(f"{len(stuck)} broker task(s) did not stop within 15 s", stacklevel=2)


def relays(platform: Platform, topology: Topology) -> list[Any]:
    return [
        Relay(
            platform.apps[name].state.db,
            topology,
            service=name,
            render=render_as(model),
            poll_seconds=0.05,
        ).run()
        for name, model in RENDER.items()
    ]


class Spy:
    """A queue bound to every key of the test's exchange: what went over the wire."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.messages: list[aio_pika.abc.AbstractIncomingMessage] = []

    async def __aenter__(self) -> Spy:
        self.connection = await self.topology.connect()
        channel = await self.connection.channel()
        exchange = await self.topology.declare_exchange(channel)
        self.queue = await channel.declare_queue("", exclusive=True)
        await self.queue.bind(exchange, routing_key="#")
        await self.queue.consume(self._on)
        return self

    async def _on(self, message: aio_pika.abc.AbstractIncomingMessage) -> None:
        self.messages.append(message)
        await message.ack()

    async def __aexit__(self, *exc: object) -> None:
        await self.connection.close()

    def events(self, type_: str | None = None) -> list[dict[str, Any]]:
        bodies = [orjson.loads(m.body) for m in self.messages]
        return [b for b in bodies if type_ is None or b["type"] == type_]

    async def wait_for(self, *types: str) -> None:
        await until(lambda: all(self.events(t) for t in types))


def same_instants(data: dict[str, Any]) -> dict[str, Any]:
    """Timestamps as instants: the services write UTC as ``Z`` or ``+00:00`` alike."""
    return {
        k: datetime.fromisoformat(v) if k.endswith("_at") and isinstance(v, str) else v
        for k, v in data.items()
    }


async def place(platform: Platform, product_id: int, quantity: int = 1) -> dict[str, Any]:
    response = await platform.orders.post(
        "/api/v1/orders",
        json={"product_id": product_id, "quantity": quantity, "payment_method": "card"},
        headers=platform.token(USER),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_an_order_publishes_placed_and_paid_in_the_contract_format(
    platform: Platform, make_product: Any, topology: Topology
) -> None:
    async with Spy(topology) as spy, background(*relays(platform, topology)):
        product = await make_product(price="12.50", stock=5)
        order = await place(platform, product["id"], quantity=2)
        await spy.wait_for(
            "shop.product.created",
            "shop.product.stock_changed",
            "shop.order.placed",
            "shop.order.paid",
            "shop.payment.completed",
        )
    by_type = {m.type: m for m in spy.messages}
    paid_message = by_type["shop.order.paid"]
    assert paid_message.content_type == CONTENT_TYPE
    assert paid_message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    paid = orjson.loads(paid_message.body)
    assert paid_message.message_id == paid["id"]
    uuid.UUID(paid["id"])
    assert paid["specversion"] == "1.0"
    assert paid["source"] == "/shop/orders"
    assert paid["subject"] == str(order["id"])
    assert paid["time"].endswith("Z")
    assert paid["datacontenttype"] == "application/json"
    # data is the resource as the REST API returns it after the change, and the customer's
    # contact as at placement (null here: the test's token carries none)
    rest = await platform.orders.get(f"/api/v1/orders/{order['id']}", headers=platform.admin)
    assert paid["data"].pop("customer") is None
    assert same_instants(paid["data"]) == same_instants(rest.json())
    assert paid["data"]["total_price"] == "25.00"
    placed = spy.events("shop.order.placed")[0]
    assert placed["data"]["status"] == "pending"
    payment = spy.events("shop.payment.completed")[0]
    assert payment["source"] == "/shop/payments"
    assert payment["subject"] == paid["data"]["payment_id"]
    stock = spy.events("shop.product.stock_changed")[0]
    assert stock["data"]["stock"] == 3
    assert {e["type"] for e in spy.events()} <= set(EVENT_TYPES)
    # order per resource: the order's own events in the order of its changes
    assert [e["type"] for e in spy.events() if e["source"] == "/shop/orders"] == [
        "shop.order.placed",
        "shop.order.paid",
    ]
    unsent = await platform.sql("orders", "SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")
    assert unsent[0]["n"] == 0


async def test_order_events_carry_the_contact_the_token_carried_and_rest_does_not(
    platform: Platform, make_product: Any, topology: Topology
) -> None:
    contact = {"username": "zoë", "email": "zoë@exämple.com"}
    async with Spy(topology) as spy, background(*relays(platform, topology)):
        product = await make_product(price="2.00", stock=5)
        response = await platform.orders.post(
            "/api/v1/orders",
            json={"product_id": product["id"], "quantity": 1},
            headers=platform.token(USER, **contact),
        )
        assert response.status_code == 201, response.text
        order = response.json()
        cancelled = await platform.orders.post(
            f"/api/v1/orders/{order['id']}/cancel", headers=platform.token(USER)
        )
        assert cancelled.status_code == 200, cancelled.text
        await spy.wait_for("shop.order.placed", "shop.order.paid", "shop.order.cancelled")
    for type_ in ("shop.order.placed", "shop.order.paid", "shop.order.cancelled"):
        (event,) = [e for e in spy.events(type_) if e["subject"] == str(order["id"])]
        assert event["data"]["customer"] == contact  # as at placement, not the cancel's token
    assert "customer" not in order
    assert "customer" not in cancelled.json()
    rows = await platform.sql(
        "orders",
        "SELECT customer_username, customer_email FROM orders WHERE id = $1",
        order["id"],
    )
    assert tuple(rows[0]) == ("zoë", "zoë@exämple.com")


async def test_registering_publishes_the_user_without_secrets(
    platform: Platform, topology: Topology
) -> None:
    async with Spy(topology) as spy, background(*relays(platform, topology)):
        response = await platform.users.post(
            "/api/v1/users/register",
            json={"username": "eve_events", "email": "eve@example.com", "password": "x" * 12},
        )
        assert response.status_code == 201, response.text
        await spy.wait_for("shop.user.registered")
    event = spy.events("shop.user.registered")[0]
    assert same_instants(event["data"]) == same_instants(response.json())
    assert "password" not in orjson.dumps(event).decode()


async def test_a_rolled_back_change_has_no_event(platform: Platform, make_product: Any) -> None:
    product = await make_product(stock=1)
    response = await platform.orders.post(
        "/api/v1/orders",
        json={"product_id": product["id"], "quantity": 5, "payment_method": "card"},
        headers=platform.token(USER),
    )
    assert response.status_code == 409
    rows = await platform.sql("products", "SELECT type FROM outbox ORDER BY id")
    assert [r["type"] for r in rows] == ["shop.product.created"]  # no stock change: none taken


def refund_consumer(platform: Platform, topology: Topology, **kw: Any) -> Consumer:
    saga = platform.apps["orders"].state.saga
    return Consumer(
        name=CONSUMER,
        keys=KEYS,
        handler=follow_refunds(saga),
        topology=topology,
        db=saga.db,
        retry_base=0.1,
        **kw,
    )


async def order_status(platform: Platform, order_id: int) -> str:
    rows = await platform.sql("orders", "SELECT status FROM orders WHERE id = $1", order_id)
    return str(rows[0]["status"])


async def stock_of(platform: Platform, product_id: int) -> int:
    return int((await platform.products.get(f"/api/v1/products/{product_id}")).json()["stock"])


async def test_an_admin_refund_cancels_the_order_and_restocks_once(
    platform: Platform, make_product: Any, topology: Topology
) -> None:
    consumer = refund_consumer(platform, topology)
    async with Spy(topology) as spy, background(*relays(platform, topology), consumer.run()):
        await asyncio.wait_for(consumer.ready.wait(), 30)
        product = await make_product(stock=5)
        order = await place(platform, product["id"], quantity=2)
        refund = await platform.payments.post(
            f"/api/v1/payments/{order['payment_id']}/refund", headers=platform.admin
        )
        assert refund.status_code == 200, refund.text
        await spy.wait_for("shop.order.cancelled")
        assert await order_status(platform, order["id"]) == "cancelled"
        assert await stock_of(platform, product["id"]) == 5
        # The same event again (a redelivery) does nothing: the inbox has its id.
        refunded = next(m for m in spy.messages if m.type == "shop.payment.refunded")
        connection = await topology.connect()
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await topology.declare_exchange(channel)
            await exchange.publish(
                aio_pika.Message(refunded.body, message_id=refunded.message_id),
                routing_key="shop.payment.refunded",
            )
        inbox = "SELECT count(*) AS n FROM inbox WHERE consumer = 'orders'"
        await until(lambda: consumer_counts(CONSUMER).get("duplicate", 0) >= 1)
        assert (await platform.sql("orders", inbox))[0]["n"] == 1
    assert await stock_of(platform, product["id"]) == 5
    assert len(spy.events("shop.order.cancelled")) == 1


def consumer_counts(consumer: str) -> dict[str, float]:
    from prometheus_client import REGISTRY

    counts: dict[str, float] = {}
    for metric in REGISTRY.collect():
        if metric.name == "shop_events_consumed":
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.labels["consumer"] == consumer:
                    counts[sample.labels["outcome"]] = sample.value
    return counts


async def test_the_orders_own_cancel_is_not_cancelled_twice(
    platform: Platform, make_product: Any, topology: Topology
) -> None:
    consumer = refund_consumer(platform, topology)
    async with Spy(topology) as spy, background(*relays(platform, topology), consumer.run()):
        await asyncio.wait_for(consumer.ready.wait(), 30)
        product = await make_product(stock=5)
        order = await place(platform, product["id"], quantity=2)
        cancel = await platform.orders.post(
            f"/api/v1/orders/{order['id']}/cancel", headers=platform.token(USER)
        )
        assert cancel.status_code == 200, cancel.text
        await spy.wait_for("shop.payment.refunded", "shop.order.cancelled")
        await asyncio.sleep(0.5)  # let the consumer see the refund (it must do nothing)
    assert len(spy.events("shop.order.cancelled")) == 1
    assert await stock_of(platform, product["id"]) == 5


async def test_a_poison_message_goes_to_the_dlq_and_does_not_block(
    platform: Platform, topology: Topology
) -> None:
    seen: list[str] = []

    async def handler(event: Event, conn: Any) -> None:
        if event.subject == "poison":
            raise RuntimeError("cannot handle this one")
        seen.append(event.subject)

    consumer = Consumer(
        name="poison",
        keys=["shop.test.#"],
        handler=handler,
        topology=topology,
        db=platform.apps["orders"].state.db,
        max_attempts=3,
        retry_base=0.05,
    )

    async with background(consumer.run()):
        await asyncio.wait_for(consumer.ready.wait(), 30)
        connection = await topology.connect()
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            exchange = await topology.declare_exchange(channel)
            for body in (a_test_event("poison"), b"not json at all", a_test_event("fine")):
                await exchange.publish(aio_pika.Message(body), routing_key="shop.test.x")
            await until(lambda: "fine" in seen)
            dlq = await channel.declare_queue(f"{consumer.queue_name}.dlq", durable=True)
            dead: list[aio_pika.abc.AbstractIncomingMessage] = []
            async with asyncio.timeout(30):
                while len(dead) < 2:
                    message = await dlq.get(fail=False)
                    if message is None:
                        await asyncio.sleep(0.05)
                        continue
                    dead.append(message)
                    await message.ack()
    bodies = sorted(m.body for m in dead)
    assert b"not json at all" in bodies
    poison = next(m for m in dead if m.body != b"not json at all")
    assert poison.headers["x-attempt"] == 3
    assert seen == ["fine"]


class RecordingCache:
    """A catalogue cache that remembers what it was told to forget."""

    def __init__(self) -> None:
        self.invalidated: list[int | None] = []

    async def invalidate(self, product_id: int | None) -> None:
        self.invalidated.append(product_id)


async def test_a_catalogue_write_invalidates_the_cache_of_every_replica(
    platform: Platform, make_product: Any, topology: Topology
) -> None:
    from shop.products.events import KEYS, invalidating

    replicas = [RecordingCache(), RecordingCache()]
    consumers = [
        Consumer(
            name="products.cache",
            keys=KEYS,
            handler=invalidating(cache),
            topology=topology,
            exclusive=True,
        )
        for cache in replicas
    ]
    async with background(*relays(platform, topology), *(c.run() for c in consumers)):
        for consumer in consumers:
            await asyncio.wait_for(consumer.ready.wait(), 30)
        product = await make_product()
        response = await platform.products.put(
            f"/api/v1/products/{product['id']}",
            json={"name": "Renamed", "price": "11.00"},
            headers=platform.admin,
        )
        assert response.status_code == 200, response.text
        response = await platform.products.patch(
            f"/api/v1/products/{product['id']}/stock", json={"delta": -1}, headers=platform.admin
        )
        assert response.status_code == 200, response.text
        # Then deleted: a stock change (every order's) between them is not followed at all.
        response = await platform.products.delete(
            f"/api/v1/products/{product['id']}", headers=platform.admin
        )
        assert response.status_code == 204, response.text
        await until(lambda: all(len(c.invalidated) >= 6 for c in replicas))
    # Created, updated, deleted: the product and the list pages each time.
    for cache in replicas:
        assert cache.invalidated == [product["id"], None] * 3


async def test_the_customer_gets_an_email_for_registration_and_payment(
    platform: Platform, make_product: Any, topology: Topology, tmp_path: Any
) -> None:
    import email
    from email import policy

    import httpx

    from shop.common.auth import ServiceTokens
    from shop.common.http import ServiceClient
    from shop.devtools import mailsink
    from shop.devtools.processes import free_port
    from shop.notifications.service import KEYS as MAIL_KEYS
    from shop.notifications.service import Notifier
    from shop.notifications.settings import NotificationsSettings
    from tests.integration.conftest import SERVICE_SECRET

    class Counted(httpx.AsyncBaseTransport):
        def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
            self.inner, self.paths = inner, list[str]()

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            self.paths.append(request.url.path)
            return await self.inner.handle_async_request(request)

    port = free_port()
    sink = mailsink.start(tmp_path / "mail", port=port)
    settings = NotificationsSettings(smtp_port=port, service_token_secret=SERVICE_SECRET)
    to_users = Counted(httpx.ASGITransport(platform.apps["users"]))
    users = ServiceClient(
        target="user-service",
        base_url="http://users",
        tokens=ServiceTokens("notification-service", SERVICE_SECRET),
        timeout=10,
        transport=to_users,
    )
    consumer = Consumer(
        name="notifications",
        keys=MAIL_KEYS,
        handler=Notifier(settings, users),
        topology=topology,
        retry_base=0.1,
    )
    try:
        async with background(*relays(platform, topology), consumer.run()):
            await asyncio.wait_for(consumer.ready.wait(), 30)
            registered = await platform.users.post(
                "/api/v1/users/register",
                json={"username": "mia", "email": "mia@example.com", "password": "y" * 12},
            )
            assert registered.status_code == 201, registered.text
            user_id = registered.json()["id"]
            product = await make_product(price="3.00", name="Mug")
            other = await make_product(price="1.25", name="Spoon")
            lines = [
                {"product_id": product["id"], "quantity": 2},
                {"product_id": other["id"], "quantity": 4},
            ]
            login = await platform.users.post(
                "/api/v1/users/login", json={"username": "mia", "password": "y" * 12}
            )
            assert login.status_code == 200, login.text
            response = await platform.orders.post(
                "/api/v1/orders",
                json={"lines": lines, "payment_method": "card"},
                headers={"Authorization": f"Bearer {login.json()['access_token']}"},
            )
            assert response.status_code == 201, response.text
            assert response.json()["user_id"] == user_id
            await until(lambda: len(list((tmp_path / "mail").glob("*.eml"))) >= 2)
    finally:
        sink.stop()
        await users.aclose()
    mails = [
        email.message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in sorted((tmp_path / "mail").glob("*.eml"))
    ]
    by_event = {m["X-Shop-Event"]: m for m in mails}
    assert set(by_event) == {"shop.user.registered", "shop.order.paid"}
    paid = by_event["shop.order.paid"]
    assert paid["To"] == "mia@example.com"
    assert paid["Subject"] == f"Order {response.json()['id']} is paid"
    # One row per line, then the total (issue 28).
    body = paid.get_content()
    assert "2 x Mug at 3.00 = 6.00" in body
    assert "4 x Spoon at 1.25 = 5.00" in body
    assert "Total: 11.00 USD" in body
    # The login's token carried the contact, the order recorded it, its event carried it: the
    # mail needed no look-up at the user service (issue 31).
    assert to_users.paths == []


async def test_two_relays_share_one_outbox_without_doubles_and_in_order(
    platform: Platform, make_product: Any, topology: Topology
) -> None:
    product = await make_product(stock=0)
    for _ in range(40):  # written while no relay runs: a backlog of one resource's changes
        response = await platform.products.patch(
            f"/api/v1/products/{product['id']}/stock", json={"delta": 1}, headers=platform.admin
        )
        assert response.status_code == 200, response.text
    db = platform.apps["products"].state.db
    replicas = [
        Relay(db, topology, service="products", render=render_as(ProductRead), batch=7).run()
        for _ in range(2)
    ]
    async with Spy(topology) as spy, background(*replicas):
        await until(lambda: len(spy.events("shop.product.stock_changed")) >= 40)
        await asyncio.sleep(0.5)  # a double, if any, would arrive by now
    changes = spy.events("shop.product.stock_changed")
    assert len({e["id"] for e in changes}) == len(changes) == 40
    assert [e["data"]["stock"] for e in changes] == list(range(1, 41))


class _HeldPublisher:
    """The relay's publisher, holding each round after the broker confirmed it: a round in
    flight, published and not yet marked sent, for as long as the test wants."""

    def __init__(self, publisher: Any, published: asyncio.Event, release: asyncio.Event) -> None:
        self.publisher, self.published, self.release = publisher, published, release

    async def publish(self, messages: Any) -> None:
        await self.publisher.publish(messages)
        self.published.set()
        await self.release.wait()


async def test_a_relay_stopped_mid_round_finishes_it_and_publishes_nothing_twice(
    platform: Platform, make_product: Any, topology: Topology
) -> None:
    """SIGTERM (a rolling update) reaches the relay process between publishing a round and
    marking it sent: the round is finished, not cut, so the next relay has nothing to send
    again (a cut round would be published twice; consumers would have to dedupe it)."""
    products = [await make_product(name=f"Stopped mid-round {i}") for i in range(3)]
    subjects = {str(p["id"]) for p in products}
    published, release = asyncio.Event(), asyncio.Event()

    class HeldRelay(Relay):
        async def publish_once(self, publisher: Any) -> int:
            return await super().publish_once(_HeldPublisher(publisher, published, release))

    db = platform.apps["products"].state.db
    relay = HeldRelay(db, topology, service="products", render=render_as(ProductRead))
    async with Spy(topology) as spy:
        running = asyncio.create_task(relay.run())
        try:
            async with asyncio.timeout(60):
                await published.wait()  # a round is in flight, confirmed, not marked sent
            relay.stop()
            release.set()
            async with asyncio.timeout(60):
                await running  # returns: the round finished, no next one started
        finally:
            running.cancel()
        await until(lambda: {e["subject"] for e in spy.events("shop.product.created")} >= subjects)
    rows = await platform.sql(
        "products",
        "SELECT sent_at FROM outbox WHERE type = 'shop.product.created' AND subject = ANY($1)",
        list(subjects),
    )
    assert len(rows) == 3
    assert all(r["sent_at"] is not None for r in rows)  # marked sent: no relay sends them again
    created = [e for e in spy.events("shop.product.created") if e["subject"] in subjects]
    assert len(created) == 3


@pytest.fixture
async def redis_inbox() -> AsyncIterator[Any]:
    """A ``RedisInbox`` on a real Redis under a key prefix of the test's own: the machine's
    (``SHOP_REDIS_URL``, else 127.0.0.1:6379), else a redis-server of the test's own."""
    import os
    import shutil

    import redis

    from shop.common.events.inbox import RedisInbox

    url, server = os.environ.get("SHOP_REDIS_URL", "redis://127.0.0.1:6379/0"), None
    try:
        redis.Redis.from_url(url, socket_timeout=1).ping()
    except redis.RedisError:
        if shutil.which("redis-server") is None:
            pytest.skip("no Redis reachable and redis-server is not installed")
        from tests.integration.test_shared_rate_limits import RedisServer

        server = RedisServer()
        server.start()
        url = server.url
    prefix = f"test:inbox:{uuid.uuid4().hex}:"
    inbox = RedisInbox.from_url(url, retention_seconds=600, prefix=prefix)
    try:
        yield inbox
    finally:
        client = redis.Redis.from_url(url)
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)
        await inbox.aclose()
        if server is not None:
            server.stop()


def registered(username: str) -> aio_pika.Message:
    """A ``shop.user.registered`` CloudEvent as the user service publishes it: one welcome mail."""
    body = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/shop/user-service",
        "type": "shop.user.registered",
        "subject": "users/1",
        "time": "2026-01-01T00:00:00Z",
        "datacontenttype": "application/json",
        "data": {"id": 1, "username": username, "email": f"{username}@example.com"},
    }
    return aio_pika.Message(orjson.dumps(body), content_type=CONTENT_TYPE)


async def test_the_notification_inbox_sends_one_email_per_event(
    topology: Topology, redis_inbox: Any, tmp_path: Any
) -> None:
    """Redelivered: one email. A failed send (the SMTP relay down) releases the claim, so the
    redelivery after it sends the email, once."""
    from shop.common.auth import ServiceTokens
    from shop.common.http import ServiceClient
    from shop.devtools import mailsink
    from shop.devtools.processes import free_port
    from shop.notifications.service import KEYS as MAIL_KEYS
    from shop.notifications.service import Notifier
    from shop.notifications.settings import NotificationsSettings

    port = free_port()
    settings = NotificationsSettings(smtp_port=port, smtp_timeout_seconds=2)
    users = ServiceClient(  # never called: a registration carries the customer's address
        target="user-service", base_url="http://users", tokens=ServiceTokens("n", "s"), timeout=1
    )
    notifier = Notifier(settings, users)
    outcomes: list[str] = []

    async def handler(event: Event, conn: Any) -> None:
        try:
            await notifier(event, conn)
        except Exception:
            outcomes.append("failed")
            raise
        outcomes.append("sent")

    consumer = Consumer(
        name="notifications",
        keys=MAIL_KEYS,
        handler=handler,
        topology=topology,
        inbox=redis_inbox,
        retry_base=3600,  # no retry of its own within the test: redeliveries are ours
    )

    mail = tmp_path / "mail"
    sink = None
    connection = await topology.connect()
    try:
        async with connection, background(consumer.run()):
            await asyncio.wait_for(consumer.ready.wait(), 30)
            exchange = await topology.declare_exchange(await connection.channel())
            # The SMTP relay is down: the first delivery fails and must not keep its claim.
            failed = registered("ada")
            await exchange.publish(failed, routing_key="shop.user.registered")
            await until(lambda: outcomes == ["failed"])
            sink = mailsink.start(mail, port=port)
            twice = registered("bob")
            for message in (failed, twice, twice, failed):  # redeliveries
                await exchange.publish(message, routing_key="shop.user.registered")
            await until(lambda: len(list(mail.glob("*.eml"))) >= 2)
            await asyncio.sleep(0.5)  # a second email, if any, would be written by now
    finally:
        if sink is not None:
            sink.stop()
        await users.aclose()
    assert outcomes == ["failed", "sent", "sent"]
    recipients = sorted(p.read_text().split("To: ")[1].split("\n")[0] for p in mail.glob("*.eml"))
    assert recipients == ["ada@example.com", "bob@example.com"]


async def test_mail_waits_out_an_smtp_outage_longer_than_five_attempts_and_goes_once(
    topology: Topology, redis_inbox: Any, tmp_path: Any
) -> None:
    """Nothing waits on mail, and no mail is lost to an outage (issue 31): with the SMTP relay
    down, each mail is retried with a capped backoff past the five attempts that once sent it
    to the DLQ, and once the relay is back every mail goes out, once. The notification
    settings' own retry policy, with its waits scaled down (0.1 s doubling to 0.3 s)."""
    from shop.common.auth import ServiceTokens
    from shop.common.http import ServiceClient
    from shop.devtools import mailsink
    from shop.devtools.processes import free_port
    from shop.notifications.app import build_consumer
    from shop.notifications.settings import NotificationsSettings

    port = free_port()
    settings = NotificationsSettings(
        smtp_port=port,
        smtp_timeout_seconds=2,
        amqp_url=topology.url,
        amqp_exchange=topology.exchange,
        amqp_queue_prefix=topology.queue_prefix,
        event_retry_base_seconds=0.1,
        event_retry_cap_seconds=0.3,
    )
    assert settings.event_max_attempts > 5 * 3  # the policy under test, not the test's
    users = ServiceClient(  # never called: a registration carries the customer's address
        target="user-service", base_url="http://users", tokens=ServiceTokens("n", "s"), timeout=1
    )
    consumer = build_consumer(settings, users, redis_inbox)
    assert consumer is not None
    retried = Counter[str]()
    original = consumer.retry_or_dead_letter

    async def counting(message: Any, event: Event, exc: Exception) -> None:
        retried[event.data["username"]] += 1
        await original(message, event, exc)

    consumer.retry_or_dead_letter = counting  # type: ignore[method-assign]
    names = ["ada", "bob", "cy"]
    mail, sink = tmp_path / "mail", None
    connection = await topology.connect()
    try:
        async with connection, background(consumer.run()):
            await asyncio.wait_for(consumer.ready.wait(), 30)
            exchange = await topology.declare_exchange(await connection.channel())
            for name in names:
                await exchange.publish(registered(name), routing_key="shop.user.registered")
            # Down for longer than five attempts of each mail: the old policy's DLQ.
            await until(lambda: all(retried[n] >= 8 for n in names), within=60)
            sink = mailsink.start(mail, port=port)
            await until(lambda: len(list(mail.glob("*.eml"))) >= len(names), within=60)
            await asyncio.sleep(1.0)  # a second copy of any mail would be written by now
            channel = await connection.channel()
            dlq = await channel.declare_queue(f"{consumer.queue_name}.dlq", passive=True)
            assert dlq.declaration_result.message_count == 0
    finally:
        if sink is not None:
            sink.stop()
        await users.aclose()
    recipients = sorted(p.read_text().split("To: ")[1].split("\n")[0] for p in mail.glob("*.eml"))
    assert recipients == [f"{n}@example.com" for n in names]


async def test_the_relay_process_publishes_several_services_outboxes_until_sigterm(
    platform: Platform,
    make_product: Any,
    topology: Topology,
    amqp_names: dict[str, str],
    tmp_path: Any,
) -> None:
    """`shop relay products payments` (what `shop run` and the bench start, with each
    service's database as SHOP_<SERVICE>_DATABASE_URL): the in-process apps do not relay
    (SHOP_RELAY_IN_PROCESS is off), the process does, reports each outbox's backlog on its
    /metrics, and stops cleanly on SIGTERM."""
    port = free_port()
    env = {
        "SHOP_ENV": "test",
        "SHOP_AMQP_URL": topology.url,
        "SHOP_AMQP_EXCHANGE": amqp_names["amqp_exchange"],
        "SHOP_AMQP_QUEUE_PREFIX": amqp_names["amqp_queue_prefix"],
        "SHOP_RELAY_POLL_SECONDS": "0.05",
        "SHOP_PRODUCTS_DATABASE_URL": platform.urls["products"],
        "SHOP_PAYMENTS_DATABASE_URL": platform.urls["payments"],
        "SHOP_RELAY_PORT": str(port),
    }
    proc = RelayProcess(
        "relay", port, env, tmp_path / "relay.log", services=("products", "payments")
    )
    async with Spy(topology) as spy:
        product = await make_product(name="Relayed by its own process")
        await asyncio.sleep(0.5)  # the apps alone: nothing goes out
        assert not [
            e for e in spy.events("shop.product.created") if e["subject"] == str(product["id"])
        ]
        proc.start()
        try:
            await asyncio.to_thread(wait_ready, [proc], 60)
            await until(
                lambda: any(
                    e["subject"] == str(product["id"]) for e in spy.events("shop.product.created")
                )
            )
            (event,) = [
                e for e in spy.events("shop.product.created") if e["subject"] == str(product["id"])
            ]
            assert event["source"] == "/shop/products"
            assert event["data"]["name"] == "Relayed by its own process"

            def gauges() -> str:
                with urllib.request.urlopen(f"{proc.url}/metrics", timeout=5) as r:  # noqa: S310
                    return str(r.read().decode())

            # Each relay sets its gauges after its first round (products': once its publish is
            # confirmed and marked sent, which may be after the spy has the event).
            await until(
                lambda: all(
                    f'shop_outbox_backlog{{service="{s}"}}' in gauges()
                    for s in ("payments", "products")
                )
            )
        finally:
            code = proc.stop(timeout=30)
    assert code == 0, proc.log_tail()
    rows = await platform.sql(
        "products",
        "SELECT sent_at FROM outbox WHERE type = 'shop.product.created' AND subject = $1",
        str(product["id"]),
    )
    assert rows
    assert all(r["sent_at"] is not None for r in rows)


async def test_acks_in_batches_leave_nothing_unacked_after_the_delay_or_a_stop(
    platform: Platform, topology: Topology
) -> None:
    """Acks go several at once (``multiple``): 21 deliveries (not a multiple of the batch)
    are all settled, the last ones by the delay; 3 more, the consumer stopped as soon as they
    are handled, are settled by the stop. The queue then holds nothing (an unacked delivery
    goes back to it when the consumer's connection closes)."""
    seen: list[str] = []

    async def handler(event: Event, conn: Any) -> None:
        seen.append(event.subject)

    db = platform.apps["orders"].state.db
    consumer = Consumer("batched", ["shop.test.#"], handler, topology, db=db)

    connection = await topology.connect()
    async with connection:
        channel = await connection.channel(publisher_confirms=True)

        async def waiting() -> int:
            queue = await channel.declare_queue(consumer.queue_name, passive=True)
            count = queue.declaration_result.message_count
            assert count is not None
            return count

        for subjects, pause in ((range(21), 0.3), (range(21, 24), 0.0)):
            async with background(consumer.run()):
                await asyncio.wait_for(consumer.ready.wait(), 30)
                exchange = await topology.declare_exchange(channel)
                for i in subjects:
                    await exchange.publish(
                        aio_pika.Message(a_test_event(str(i))), routing_key="shop.test.x"
                    )
                total = subjects[-1] + 1
                await until(lambda total=total: len(seen) == total)
                await asyncio.sleep(pause)  # 0.3: the delayed ack; 0: the stop's
            await asyncio.sleep(0.2)  # the broker requeues what the closed connection held
            assert await waiting() == 0
    assert seen == [str(i) for i in range(24)]


async def test_a_claim_is_once_per_id_kept_for_the_retention_and_rides_out_a_dropped_link(
    redis_inbox: Any,
) -> None:
    """The inbox's ``SET NX EX``, written as RESP by hand (events/inbox.py): the first claim
    of an id wins and the next is a duplicate, the key expires after the retention, a
    released claim can be made again, and a connection the server closes (CLIENT KILL, as a
    Redis restart or a failover does) costs no claim: it is sent again on a new one."""
    import redis.asyncio

    first, again = str(uuid.uuid4()), str(uuid.uuid4())
    assert await redis_inbox.claim("notifications", first) is True
    assert await redis_inbox.claim("notifications", first) is False
    key = redis_inbox.key("notifications", first)
    url = redis_inbox._redis.connection_pool.connection_kwargs
    admin = redis.asyncio.Redis(host=url.get("host", "127.0.0.1"), port=url.get("port", 6379))
    try:
        assert 590 <= await admin.ttl(key) <= 600
        assert await admin.get(key) == b"1"
        killed = await admin.client_kill_filter(_type="normal", skipme=True)
        assert killed >= 1
        assert await redis_inbox.claim("notifications", again) is True  # a new connection
        assert await redis_inbox.claim("notifications", again) is False
        await redis_inbox.release("notifications", again)
        assert await redis_inbox.claim("notifications", again) is True
    finally:
        await admin.aclose()


async def test_with_redis_away_every_event_is_handled_and_the_gauge_says_so() -> None:
    from shop.common.events.inbox import RedisInbox
    from shop.common.metrics import EVENTS_INBOX_UP

    inbox = RedisInbox.from_url(
        f"redis://127.0.0.1:{free_port()}/0", retention_seconds=60, prefix="test:away:"
    )
    try:
        assert await inbox.claim("away", "e-1") is True
        assert await inbox.claim("away", "e-1") is True  # at least once, never dropped
        assert EVENTS_INBOX_UP.labels("away")._value.get() == 0
    finally:
        await inbox.aclose()


async def test_a_round_the_broker_confirms_settles_every_message_and_a_closed_channel_fails_it(
    topology: Topology,
) -> None:
    """``ConfirmingPublisher`` (the relay's round: one write, the confirms awaited once the
    last has settled). A round of 300 to the exchange returns once every message is confirmed
    and routed; a round to an exchange that does not exist makes RabbitMQ close the channel
    (404) and confirm nothing: it raises at once, not after the confirm timeout, so the relay
    rolls the round back and publishes it again."""
    import time

    from shop.common.events.relay import ConfirmingPublisher, Outgoing

    connection = await topology.connect()
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await topology.declare_exchange(channel)
        name = f"{topology.exchange}.round"
        queue = await channel.declare_queue(name, exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key="shop.test.round")
        underlay = await channel.get_underlay_channel()
        messages = [
            Outgoing("shop.test.round", b"{}", str(uuid.uuid4()), "test") for _ in range(300)
        ]
        await ConfirmingPublisher(underlay, topology.exchange, timeout=20).publish(messages)
        assert not underlay.confirmations  # every delivery tag settled
        routed = await channel.declare_queue(name, passive=True)
        assert routed.declaration_result.message_count == 300

        lost = await connection.channel(publisher_confirms=True)
        publisher = ConfirmingPublisher(
            await lost.get_underlay_channel(), f"{topology.exchange}.missing", timeout=20
        )
        started = time.monotonic()
        with pytest.raises(Exception, match=r"NOT_FOUND|closed|Closed"):
            await publisher.publish(messages[:5])
        assert time.monotonic() - started < 5
