"""The event catalogue, the AsyncAPI document, the CloudEvent parser and the emails (no I/O)."""

from __future__ import annotations

import email
import re
from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from pathlib import Path
from uuid import uuid4

import orjson
import pytest
import yaml
from aiosmtplib.email import parse_address
from hypothesis import given
from hypothesis import strategies as st

from shop.common.events.catalogue import EVENT_TYPES
from shop.common.events.consumer import Event
from shop.common.events.outbox import with_event
from shop.common.events.relay import (
    Outgoing,
    cloudevent,
    crash_after_publish,
    encode,
    publish_frames,
)
from shop.common.events.sidecar import RelaySource
from shop.common.settings import ServiceSettings
from shop.notifications.service import KEYS, Mail, Notifier, compose, envelope
from shop.notifications.settings import NotificationsSettings

ROOT = Path(__file__).resolve().parents[2]


def asyncapi() -> dict:  # type: ignore[type-arg]
    text = (ROOT / "docs" / "events.md").read_text()
    block = re.search(r"## AsyncAPI\n\n```yaml\n(.*?)```", text, re.S)
    assert block is not None
    return yaml.safe_load(block.group(1))


def test_the_asyncapi_document_describes_every_event_and_no_other() -> None:
    doc = asyncapi()
    assert set(doc["channels"]) == set(EVENT_TYPES)
    for type_, (service, _) in EVENT_TYPES.items():
        key = type_.removeprefix("shop.").replace(".", "_")
        payload = doc["components"]["messages"][key]["payload"]["allOf"][1]["properties"]
        assert payload["type"]["const"] == type_
        assert payload["source"]["const"] == f"/shop/{service}"


def test_the_catalogue_is_the_contracts_list() -> None:
    found = [p for p in (ROOT.parent, ROOT.parent.parent) if (p / "shared" / "EVENTS.md").exists()]
    if not found:
        pytest.skip("the shared contract is not beside this checkout")
    contract = found[0] / "shared" / "EVENTS.md"
    named = set(re.findall(r"`(shop\.[a-z_]+\.[a-z_]+)`", contract.read_text()))
    assert named == set(EVENT_TYPES)


def test_a_cloudevent_round_trips_through_the_parser() -> None:
    row = {
        "event_id": uuid4(),
        "type": "shop.order.paid",
        "subject": "42",
        "created_at": datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC),
        "traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01",
    }
    event = Event.parse(encode(cloudevent("orders", row, {"id": 42})))
    assert event.type == "shop.order.paid"
    assert event.source == "/shop/orders"
    assert event.time == "2026-12-01T12:00:00.123456Z"
    assert event.traceparent == row["traceparent"]


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"specversion": "0.3"}', b'{"specversion": "1.0", "id": 1}']
)
def test_anything_but_a_cloudevent_is_refused(body: bytes) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        Event.parse(body)


def test_with_event_keeps_the_statement_and_adds_one_insert() -> None:
    sql = with_event(
        "UPDATE t SET x = 1 RETURNING id", type_sql="'shop.a.b'", stream="a", traceparent_param=1
    )
    assert sql.startswith("WITH changed AS (UPDATE t SET x = 1 RETURNING id)")
    assert sql.count("INSERT INTO outbox") == 1
    assert sql.endswith("SELECT * FROM changed")


def _event(type_: str, **data: object) -> Event:
    return Event(str(uuid4()), type_, "/shop/orders", "5", "2026-12-01T00:00:00Z", dict(data))


def _parsed(mail: Mail | None) -> EmailMessage:
    """The mail as a mail reader sees it (the standard library's parser, policy default)."""
    assert mail is not None
    message = email.message_from_bytes(mail.data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert not message.defects
    return message


def test_each_mailed_event_has_an_email_and_others_none() -> None:
    user = {"username": "mia", "email": "mia@example.com"}
    order = {"id": 5, "quantity": 2, "product_id": 1, "total_price": "6.00", "currency": "USD"}
    for type_ in KEYS:
        event = _event(type_, **order, failure_reason="payment_declined")
        mail = compose(event, user, sender="s@x")
        message = _parsed(mail)
        assert message["To"] == "mia@example.com"
        assert mail is not None
        assert (mail.sender, mail.recipient) == ("s@x", "mia@example.com")
    paid = _parsed(compose(_event("shop.order.paid", **order), user, sender="s@x"))
    assert "6.00 USD" in paid.get_content()
    lines = [
        {"product_id": 1, "name": "Mug", "quantity": 2, "unit_price": "3.00", "line_total": "6.00"},
        {"product_id": 4, "name": None, "quantity": 1, "unit_price": None, "line_total": None},
    ]
    cart = _parsed(compose(_event("shop.order.paid", **order, lines=lines), user, sender="s@x"))
    assert cart.get_content().splitlines()[4:6] == [
        "  2 x Mug at 3.00 = 6.00",
        "  1 x product 4 at - = -",
    ]
    assert compose(_event("shop.order.shipped", **order), user, sender="s@x") is None


class _Users:
    """The user service as the notifier sees it: answers ``GET /api/v1/users/{id}``."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def request(self, method: str, path: str, **_: object) -> object:
        self.calls.append(f"{method} {path}")
        return _Reply({"id": 9, "username": "now", "email": "now@example.com"})


class _Reply:
    status_code = 200

    def __init__(self, body: dict[str, object]) -> None:
        self.body = body

    def json(self) -> dict[str, object]:
        return self.body


async def test_an_order_event_with_the_customer_is_mailed_without_a_look_up() -> None:
    users = _Users()
    notifier = Notifier(NotificationsSettings(), users)  # type: ignore[arg-type]
    contact = {"username": "mia", "email": "mia@example.com"}
    for type_ in KEYS[1:]:
        event = _event(type_, id=5, user_id=9, customer=contact)
        assert await notifier.customer(event) == contact
        mail = compose(event, await notifier.customer(event), sender="s@x")
        assert mail is not None
        assert mail.recipient == "mia@example.com"
    assert users.calls == []


@pytest.mark.parametrize("customer", [None, {}, {"username": "mia"}, "mia@example.com"])
async def test_an_order_event_without_the_customer_falls_back_to_the_look_up(customer) -> None:
    """Events written before orders recorded the contact (in flight across the upgrade)."""
    users = _Users()
    notifier = Notifier(NotificationsSettings(), users)  # type: ignore[arg-type]
    data: dict[str, object] = {"id": 5, "user_id": 9}
    if customer is not None:
        data["customer"] = customer
    assert (await notifier.customer(_event("shop.order.paid", **data)))["email"] == (
        "now@example.com"
    )
    assert users.calls == ["GET /api/v1/users/9"]


@pytest.mark.parametrize(
    "text",
    [
        "mia@example.com",
        "zoë@exämple.com",
        "a+tag@x.io",
        "shop <no-reply@shop.local>",
        "<x@y>",
        "x@y (comment)",
        '"quoted"@x',
        "  mia@example.com ",
        "a@b,c@d",
        "a\xa0b@c",
        "a@b\u2028",
        "a\x0bb@c",
        "a@b@c",
        "a@",
        "@b",
        "no-at",
        "",
    ],
)
def test_the_envelope_address_is_what_aiosmtplib_would_send(text: str) -> None:
    _same_as_aiosmtplib(text)


_ADDRESS_TEXT = st.text(
    st.sampled_from("ab.+-_'<>()\",;: \t\r\n[]\\\x00\x0b\x1f\x85\xa0\u2028\u3000äö"),
    max_size=6,
)


@given(st.one_of(st.builds("{}@{}".format, _ADDRESS_TEXT, _ADDRESS_TEXT), _ADDRESS_TEXT))
def test_an_address_taken_as_bare_is_one_aiosmtplib_takes_as_it_is(text: str) -> None:
    """The worker sends MAIL and RCPT with the address ``envelope`` gives, without
    aiosmtplib's parse per mail: what it takes as bare, aiosmtplib takes unchanged."""
    _same_as_aiosmtplib(text)


def _same_as_aiosmtplib(text: str) -> None:
    try:
        expected = parse_address(text)  # what aiosmtplib's mail() and rcpt() put on the line
    except ValueError:
        with pytest.raises(ValueError, match="not permitted in an SMTP mailbox"):
            envelope(text)
        return
    assert envelope(text) == expected


def test_a_redelivered_event_makes_the_same_message_id() -> None:
    event = _event("shop.order.cancelled", id=5)
    user = {"username": "mia", "email": "mia@example.com"}
    first, second = (_parsed(compose(event, user, sender="s@x")) for _ in range(2))
    assert first["Message-ID"] == second["Message-ID"] == f"<{event.id}@shop.events>"


def test_a_mail_with_non_ascii_text_reads_back_as_written() -> None:
    """Headers and body beyond ASCII are encoded (RFC 2047, quoted-printable), and a line
    break in a name never becomes a header of its own."""
    user = {"username": "Zoë Ødegård\nBcc: eve@example.com", "email": "zoe@example.com"}
    event = _event("shop.user.registered", username="Zoë Ødegård", email="zoe@example.com")
    message = _parsed(compose(event, user, sender="shop <no-reply@shop.local>"))
    assert message["Subject"] == "Welcome to shop, Zoë Ødegård Bcc: eve@example.com"
    assert message["Bcc"] is None
    assert message.get_content().startswith("Hello Zoë Ødegård")
    assert message.get_content_charset() == "utf-8"


class _Message:
    """What the consumer reads of an AMQP delivery."""

    def __init__(self, body: bytes) -> None:
        self.body, self.headers, self.acked = body, {}, False

    async def ack(self) -> None:
        self.acked = True


async def test_the_consumers_work_continues_the_trace_of_the_request() -> None:
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider

    from shop.common.events.broker import Topology
    from shop.common.events.consumer import Consumer
    from shop.common.events.outbox import traceparent

    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("POST /api/v1/orders") as request_span:
        written = traceparent()  # what the outbox row records
    assert written is not None
    trace_id = request_span.get_span_context().trace_id
    assert written.split("-")[1] == f"{trace_id:032x}"
    seen: list[int] = []

    async def handler(event: Event, _conn: object) -> None:
        seen.append(trace.get_current_span().get_span_context().trace_id)

    consumer = Consumer("t", ["#"], handler, Topology("amqp://unused"))
    row = {
        "event_id": uuid4(),
        "type": "shop.order.paid",
        "subject": "1",
        "created_at": datetime(2026, 12, 1, tzinfo=UTC),
        "traceparent": written,
    }
    message = _Message(encode(cloudevent("orders", row, {})))
    await consumer.on_message(message)  # type: ignore[arg-type]
    assert message.acked
    assert seen == [trace_id]


def test_no_trace_no_traceparent() -> None:
    from shop.common.events.outbox import traceparent

    assert traceparent() is None


def test_the_relay_crash_fault_names_services_and_needs_fault_injection(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    faulty = ServiceSettings(env="test", fault_injection=True)
    monkeypatch.setenv("SHOP_FAULT_RELAY_CRASH_AFTER_PUBLISH", "payments, orders")
    assert crash_after_publish(faulty, "payments")
    assert crash_after_publish(faulty, "orders")
    assert not crash_after_publish(faulty, "products")
    assert not crash_after_publish(ServiceSettings(env="test"), "payments")  # injection off
    monkeypatch.setenv("SHOP_FAULT_RELAY_CRASH_AFTER_PUBLISH", "1")
    assert crash_after_publish(faulty, "users")
    monkeypatch.delenv("SHOP_FAULT_RELAY_CRASH_AFTER_PUBLISH")
    assert not crash_after_publish(faulty, "users")


def test_a_relay_source_takes_its_own_database_url_when_one_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = ServiceSettings(database_url="postgresql://h/shared")  # type: ignore[arg-type]
    source = RelaySource("orders", settings, lambda _t, _d: b"{}")
    assert source.with_own_database() is source
    monkeypatch.setenv("SHOP_ORDERS_DATABASE_URL", "postgresql://h/orderdb")
    own = source.with_own_database()
    assert own.settings.database_url.get_secret_value() == "postgresql://h/orderdb"
    assert own.service == "orders"
    assert settings.database_url.get_secret_value() == "postgresql://h/shared"  # a copy


def test_services_do_not_relay_in_process_unless_asked() -> None:
    assert ServiceSettings().relay_in_process is False
    assert ServiceSettings(relay_in_process=True).relay_in_process is True


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 12, 1, 12, 0, 0, 123456, tzinfo=UTC),
        datetime(2026, 12, 1, 12, 0, 0, tzinfo=UTC),  # no microseconds: none written
        datetime(2026, 12, 1, 13, 0, 0, 5, tzinfo=timezone(timedelta(hours=1))),
    ],
)
def test_the_event_time_is_what_isoformat_with_z_gave(moment: datetime) -> None:
    row = {
        "event_id": uuid4(),
        "type": "t",
        "subject": "1",
        "created_at": moment,
        "traceparent": None,
    }
    expected = moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
    assert orjson.loads(encode(cloudevent("orders", row, {})))["time"] == expected


@pytest.mark.parametrize("size", [0, 10, 4096, 10_000])
def test_the_relay_frames_are_pamqps(size: int) -> None:
    """The relay writes basic.publish, its header and body frames itself: byte for byte what
    aiormq's basic_publish (pamqp) writes for the same message."""
    from pamqp import commands as spec
    from pamqp.body import ContentBody
    from pamqp.frame import marshal
    from pamqp.header import ContentHeader

    message = Outgoing("shop.order.paid", b"x" * size, str(uuid4()), "orders")
    properties = spec.Basic.Properties(
        message_id=message.message_id,
        content_type="application/cloudevents+json",
        delivery_mode=2,
        message_type=message.routing_key,
        app_id="orders",
    )
    frames = [
        spec.Basic.Publish(exchange="shop.events", routing_key=message.routing_key),
        ContentHeader(0, size, properties),
    ] + [ContentBody(message.body[i : i + 4088]) for i in range(0, size, 4088)]
    expected = b"".join(marshal(frame, 3) for frame in frames)
    assert publish_frames(3, "shop.events", message, 4088) == expected


class _Delivery:
    def __init__(self, tag: int, acks: list[tuple[int, bool]]) -> None:
        self.tag, self.acks = tag, acks

    async def ack(self, multiple: bool = False) -> None:
        self.acks.append((self.tag, multiple))


async def test_deliveries_are_acked_several_at_once_up_to_the_last_done() -> None:
    """One ``multiple`` ack per ``every`` deliveries done with, and the rest after ``delay``:
    always the last one done, so every ack covers only deliveries already handled."""
    import asyncio

    from shop.common.events.consumer import _Acks

    acks: list[tuple[int, bool]] = []
    batch = _Acks(every=3, delay=0.02)
    for tag in range(1, 8):
        await batch.done(_Delivery(tag, acks))  # type: ignore[arg-type]
    assert acks == [(3, True), (6, True)]
    await asyncio.sleep(0.05)  # the seventh, after the delay
    assert acks == [(3, True), (6, True), (7, True)]
    await batch.flush()  # nothing left: no frame
    assert len(acks) == 3
    await batch.done(_Delivery(8, acks))  # type: ignore[arg-type]
    await batch.flush()  # the consumer stopping: acked at once, the timer cancelled
    await asyncio.sleep(0.05)
    assert acks[3:] == [(8, True)]


def test_the_relay_cost_measure_runs_on_this_code() -> None:
    """bench.event_cost (docs/performance.md's per-event figures) builds and frames messages."""
    from bench.event_cost import relay_cost

    assert relay_cost(200) > 0
