"""One order is one trace across the order, product and payment services (real processes).

The services export their spans over OTLP/HTTP to a receiver in the test; W3C trace context
(``traceparent``) must carry the order service's trace into every call it makes.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest

from tests.monitoring.live import (
    CLIENT,
    CONSUMER,
    SERVER,
    Span,
    TracedPlatform,
    add_product,
    register,
)

pytestmark = pytest.mark.e2e

ORDER_ROUTE = "POST /api/v1/orders"
RESERVE_ROUTE = "POST /api/v1/reservations"
PAYMENT_ROUTES = {"POST /api/v1/payments"}  # create and confirm
REQUEST_ID = "http.request.header.x_request_id"
# CI machines can be many times slower than a laptop: generous, and never a timing assertion.
SPAN_DEADLINE = 120.0


def _downstream_names(trace: list[Span]) -> set[tuple[str, str]]:
    return {(s.service, s.name) for s in trace if s.kind == SERVER}


def test_one_order_is_one_trace_across_three_services(traced_platform: TracedPlatform) -> None:
    receiver = traced_platform.receiver
    product_id = add_product(traced_platform, name="Traced lamp", price="12.50", stock=10)
    customer = register(traced_platform, "traced_customer")
    request_id = f"req-trace-{secrets.token_hex(8)}"

    with traced_platform.sync_client("orders") as orders:
        placed = orders.post(
            "/api/v1/orders",
            headers={**customer, "X-Request-ID": request_id},
            json={"product_id": product_id, "quantity": 2, "payment_method": "card"},
        )
    assert placed.status_code == 201, placed.text
    assert placed.json()["status"] == "paid"

    def order_span(spans: list[Span]) -> Span | None:
        return next(
            (
                s
                for s in spans
                if s.service == "order-service"
                and s.name == ORDER_ROUTE
                and request_id in str(s.attributes.get(REQUEST_ID))
            ),
            None,
        )

    wanted = {("order-service", ORDER_ROUTE), ("product-service", RESERVE_ROUTE)} | {
        ("payment-service", route) for route in PAYMENT_ROUTES
    }

    def complete(spans: list[Span]) -> bool:
        root = order_span(spans)
        trace = [s for s in spans if root and s.trace_id == root.trace_id]
        return wanted <= _downstream_names(trace)

    spans = receiver.wait_for(complete, timeout=SPAN_DEADLINE, what="complete trace of the order")
    root = order_span(spans)
    assert root is not None
    trace = [s for s in spans if s.trace_id == root.trace_id]
    by_id = {s.span_id: s for s in trace}

    # One trace: a single root, the order service's server span; every other span's parent is
    # in the same trace (spans end before their parents, so a parent arrives no later).
    assert [s for s in trace if not s.parent_id] == [root]
    assert root.kind == SERVER
    orphans = [s for s in trace if s.parent_id and s.parent_id not in by_id]
    assert not orphans, f"spans whose parent is missing from the trace: {orphans}"
    assert {"order-service", "product-service", "payment-service"} <= {s.service for s in trace}

    # Across processes, each callee's server span is a child of a client span of the order
    # service (the traceparent it sent), and carries the same request id.
    downstream = [
        s for s in trace if s.kind == SERVER and s.service in ("product-service", "payment-service")
    ]
    assert {s.name for s in downstream} >= {RESERVE_ROUTE, *PAYMENT_ROUTES}
    for span in downstream:
        parent = by_id[span.parent_id]
        assert (parent.service, parent.kind) == ("order-service", CLIENT), (span, parent)
        callee = "products" if span.service == "product-service" else "payments"
        url = parent.attributes.get("url.full") or parent.attributes.get("http.url")  # semconv
        assert f":{traced_platform.ports[callee]}/" in str(url), parent.attributes
        assert request_id in str(span.attributes.get(REQUEST_ID))

    # SQL: each service's database work is in the trace, under that service's own spans,
    # with the statement but never the parameter values.
    for service in ("order-service", "product-service", "payment-service"):
        sql = [s for s in trace if s.service == service and s.attributes.get("db.system")]
        assert sql, f"no SQL span from {service}"
        for span in sql:
            assert span.attributes["db.system"] == "postgresql"
            assert span.kind == CLIENT
            assert by_id[span.parent_id].service == service
            assert not any("parameters" in key for key in span.attributes), span.attributes

    # No call between services started a trace of its own, for this order or any other.
    internal = [
        s
        for s in receiver.snapshot()
        if s.kind == SERVER and (s.name == RESERVE_ROUTE or s.name in PAYMENT_ROUTES)
    ]
    assert all(s.parent_id for s in internal), [s for s in internal if not s.parent_id]


def _lean_answers(platform: TracedPlatform, service: str, route: str) -> float:
    """``shop_lean_requests_total`` of ``route`` on ``service``'s /metrics (0 if absent)."""
    with platform.sync_client(service) as client:
        text = client.get("/metrics").text
    prefix = f'shop_lean_requests_total{{route="{route}"}} '
    return sum(float(line[len(prefix) :]) for line in text.splitlines() if line.startswith(prefix))


def test_with_tracing_on_the_lean_routes_answer_and_are_traced_as_the_fastapi_routes(
    traced_platform: TracedPlatform,
) -> None:
    """Issue 30: tracing does not switch the fast paths off. An order sent as the saga's
    clients send it (``application/json``) is answered by the lean routes of all three
    services (counted), and its server spans have the same names and attribute keys as the
    same order answered by the FastAPI routes (a ``+json`` media type they leave to FastAPI);
    the calls between services are aiohttp's, each with its client span."""
    receiver = traced_platform.receiver
    product_id = add_product(traced_platform, name="Lean lamp", price="3.00", stock=10)
    customer = register(traced_platform, "lean_customer")
    routes = {"orders": ORDER_ROUTE, "products": RESERVE_ROUTE, "payments": "POST /api/v1/payments"}
    before = {s: _lean_answers(traced_platform, s, r.split(" ", 1)[1]) for s, r in routes.items()}

    def place(kind: str) -> str:
        request_id = f"req-lean-{secrets.token_hex(8)}"
        body = httpx.Request(
            "POST", "/", json={"product_id": product_id, "quantity": 1, "payment_method": "card"}
        ).content
        with traced_platform.sync_client("orders") as orders:
            placed = orders.post(
                "/api/v1/orders",
                content=body,
                headers={**customer, "X-Request-ID": request_id, "Content-Type": kind},
            )
        assert placed.status_code == 201, placed.text
        return request_id

    lean_id = place("application/json")
    after = {s: _lean_answers(traced_platform, s, r.split(" ", 1)[1]) for s, r in routes.items()}
    # The order's own route, its reservation and its payment: each one lean answer more.
    assert {s: after[s] - before[s] for s in routes} == dict.fromkeys(routes, 1)
    fastapi_id = place("application/vnd.shop+json")
    assert _lean_answers(traced_platform, "orders", "/api/v1/orders") == after["orders"]

    def root_of(request_id: str, spans: list[Span]) -> Span | None:
        return next(
            (
                s
                for s in spans
                if s.name == ORDER_ROUTE and request_id in str(s.attributes.get(REQUEST_ID))
            ),
            None,
        )

    def both_complete(spans: list[Span]) -> bool:
        roots = [root_of(lean_id, spans), root_of(fastapi_id, spans)]
        return all(
            root
            and {routes["products"], routes["payments"]}
            <= {s.name for s in spans if s.trace_id == root.trace_id and s.kind == SERVER}
            for root in roots
        )

    spans = receiver.wait_for(both_complete, timeout=SPAN_DEADLINE, what="both orders' traces")
    lean_root, fastapi_root = root_of(lean_id, spans), root_of(fastapi_id, spans)
    assert lean_root is not None
    assert fastapi_root is not None
    assert lean_root.name == fastapi_root.name == ORDER_ROUTE
    assert lean_root.kind == fastapi_root.kind == SERVER
    assert lean_root.parent_id == fastapi_root.parent_id == ""  # roots of their own traces
    assert set(lean_root.attributes) == set(fastapi_root.attributes), (
        lean_root.attributes,
        fastapi_root.attributes,
    )
    assert lean_root.attributes.get("http.route") == "/api/v1/orders"
    # Between services: the lean order's calls are aiohttp client spans, parents of the
    # callees' server spans.
    trace_spans = [s for s in spans if s.trace_id == lean_root.trace_id]
    by_id = {s.span_id: s for s in trace_spans}
    for span in trace_spans:
        if span.kind == SERVER and span.service != "order-service":
            parent = by_id[span.parent_id]
            assert (parent.service, parent.kind) == ("order-service", CLIENT)
            assert parent.scope == "opentelemetry.instrumentation.aiohttp_client", parent


def test_the_notification_worker_joins_the_trace_its_event_carries(
    traced_platform: TracedPlatform, amqp_url: str, tmp_path: Path
) -> None:
    """Issue 30: an event's ``traceparent`` (the span that wrote it) is the parent of the
    notification worker's consumer span, exported from that process like the services'."""
    import asyncio
    import uuid

    import aio_pika
    import orjson

    from shop.common.events.broker import Topology, delete_topology
    from shop.devtools.events import EventProcesses

    run = secrets.token_hex(4)
    topology = Topology(amqp_url, f"shop.events.t{run}", f"shop.t{run}.")
    with traced_platform.sync_client("users") as users:
        me = users.post(
            "/api/v1/users/register",
            json={"username": "mail_traced", "email": "mail@example.com", "password": "p" * 12},
        ).json()
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    event = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/shop/orders",
        "type": "shop.order.cancelled",
        "subject": "424242",
        "time": "2026-12-06T00:00:00Z",
        "datacontenttype": "application/json",
        "data": {"id": 424242, "user_id": me["id"], "status": "cancelled"},
        "traceparent": f"00-{trace_id}-{parent_id}-01",
    }
    worker = EventProcesses(
        state_dir=tmp_path,
        amqp_url=amqp_url,
        users_url=traced_platform.url("users"),
        service_token_secret=traced_platform.procs["users"].env["SHOP_SERVICE_TOKEN_SECRET"],
        env="test",
        extra={
            "SHOP_AMQP_EXCHANGE": topology.exchange,
            "SHOP_AMQP_QUEUE_PREFIX": topology.queue_prefix,
            "SHOP_OTLP_ENDPOINT": traced_platform.receiver.endpoint,
            "OTEL_BSP_SCHEDULE_DELAY": "100",
        },
    )

    async def publish_once_the_worker_listens() -> None:
        """Publish as mandatory until the broker routes it: the worker binds its queue as it
        starts, and a message published before that would go nowhere."""
        connection = await topology.connect()
        async with connection:
            channel = await connection.channel(on_return_raises=True)
            exchange = await topology.declare_exchange(channel)
            for _ in range(600):
                try:
                    await exchange.publish(
                        aio_pika.Message(
                            orjson.dumps(event), content_type="application/cloudevents+json"
                        ),
                        routing_key=event["type"],
                        mandatory=True,
                    )
                    return
                except aio_pika.exceptions.DeliveryError:  # returned: no queue bound yet
                    await asyncio.sleep(0.1)
            raise AssertionError("the worker never bound its queue")

    worker.start()
    try:
        asyncio.run(publish_once_the_worker_listens())
        spans = traced_platform.receiver.wait_for(
            lambda spans: any(
                s.trace_id == trace_id
                and s.kind == CONSUMER
                and s.service == "notification-service"
                for s in spans
            ),
            timeout=SPAN_DEADLINE,
            what="the worker's consumer span in the event's trace",
        )
    finally:
        worker.stop()
        asyncio.run(delete_topology(topology, ["notifications"]))
    [consumed] = [s for s in spans if s.trace_id == trace_id and s.kind == CONSUMER]
    assert consumed.parent_id == parent_id
    assert consumed.name == "notifications shop.order.cancelled"
    # Its call to the user service (for the customer's address) is in the trace, under it.
    calls = [s for s in spans if s.trace_id == trace_id and s.parent_id == consumed.span_id]
    assert any(s.kind == CLIENT for s in calls), calls
