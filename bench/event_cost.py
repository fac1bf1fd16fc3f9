"""What the event side costs per event in-process, for an A/B of two commits' code (issue 31).

    .venv/bin/python -m bench.event_cost relay [--events 2000]
    .venv/bin/python -m bench.event_cost relay-round [--events 2000] [--batch 50] [--database URL]
    .venv/bin/python -m bench.event_cost consumer [--messages 3000] [--amqp URL]

Run it under each commit's ``src/`` (``PYTHONPATH=/tmp/x/src-before/src``, as bench/ab.sh
exports them) and compare the lines. ``relay``: CPU microseconds per event of building a
round's messages (``Relay.message``: the CloudEvent, orjson) and their AMQP frames as one
write (what ``ConfirmingPublisher.publish`` writes; a stub renderer, no broker), the best of
15 rounds of 200-event batches. ``consumer``: CPU microseconds per delivery of the ``Consumer``
itself (no-op handler, no inbox, no SMTP) draining ``--messages`` persistent messages
published beforehand to a queue of its own on the local RabbitMQ (the queue and exchange are
deleted afterwards): the delivery machinery, parsing, the span and the acks, in this process
(the broker's CPU is not counted), and its user and system parts (getrusage); with
``--smtp-port`` and ``--redis``, the worker's own handler and inbox. ``relay-round``: the
relay's rounds against real PostgreSQL (a scratch database) and RabbitMQ, claim to commit,
per event. The modes that wait on I/O run on the loop of the code under test
(``shop.common.loop`` where it has it). docs/performance.md ("Issue 31, second round"
and "third round") quotes them.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from shop.common.events import relay as relay_module

try:  # the loop the worker and the relay run on (a commit before it: asyncio's own)
    from shop.common.loop import run as run_loop
except ImportError:
    run_loop = asyncio.run


def relay_cost(events: int) -> float:
    from aiormq.abc import ChannelFrame

    relay = relay_module.Relay.__new__(relay_module.Relay)
    relay.service, relay.render = "orders", lambda _type, data: str(data).encode()
    rows = [
        {
            "id": i,
            "event_id": uuid.uuid4(),
            "type": "shop.order.paid",
            "subject": str(i),
            "data": f'{{"id": {i}, "status": "paid", "total_price": "19.99"}}',
            "traceparent": None,
            "created_at": datetime.now(UTC),
        }
        for i in range(200)
    ]
    frames_of = getattr(relay_module, "publish_frames", None)

    def once() -> None:
        messages = [relay.message(row) for row in rows]
        if frames_of is not None:  # this change: the frames as bytes
            payload = b"".join(frames_of(1, "shop.events", m, 131064) for m in messages)
            ChannelFrame(payload=payload, should_close=False)
            return
        from pamqp import commands as spec  # before: pamqp's frames, as aiormq marshals them
        from pamqp.body import ContentBody
        from pamqp.header import ContentHeader

        frames: list[Any] = []
        for m in messages:
            frames.append(spec.Basic.Publish(exchange="shop.events", routing_key=m.routing_key))
            frames.append(ContentHeader(0, len(m.body), m.properties))
            frames.append(ContentBody(m.body))
        ChannelFrame.marshall(channel_number=1, frames=frames)

    once()
    rounds = max(events // 200, 1)
    best = float("inf")
    for _ in range(15):
        start = time.process_time()
        for _ in range(rounds):
            once()
        best = min(best, (time.process_time() - start) / (rounds * 200))
    return best * 1e6


async def publish(exchange: Any, messages: int) -> None:
    """``messages`` order-paid CloudEvents (the worker's mail) to ``exchange``, confirmed."""
    import aio_pika

    for i in range(messages):
        body = orjson.dumps(
            {
                "specversion": "1.0",
                "id": str(uuid.uuid4()),
                "source": "/shop/orders",
                "type": "shop.order.paid",
                "subject": str(i),
                "time": "2026-12-07T12:00:00Z",
                "datacontenttype": "application/json",
                "data": {
                    "id": i,
                    "status": "paid",
                    "total_price": "19.99",
                    "currency": "EUR",
                    "customer": {"username": f"u{i}", "email": f"u{i}@example.com"},
                    "lines": [
                        {
                            "product_id": 7,
                            "quantity": 1,
                            "name": "Oak lamp",
                            "unit_price": "19.99",
                            "line_total": "19.99",
                        }
                    ],
                },
            }
        )
        await exchange.publish(
            aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT),
            routing_key="shop.order.paid",
        )


async def publish_to(url: str, prefix: str, messages: int) -> None:
    """``publish`` to the exchange of ``consumer_cost``'s topology of that ``prefix``."""
    from shop.common.events.broker import Topology

    topology = Topology(url, exchange=f"{prefix}events", queue_prefix=prefix)
    connection = await topology.connect()
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        await publish(await topology.declare_exchange(channel), messages)


async def consumer_cost(
    messages: int,
    url: str,
    *,
    smtp_port: int | None = None,
    redis_url: str | None = None,
    split: dict[str, float] | None = None,
    publish_apart: bool = False,
) -> float:
    """CPU microseconds per delivery; ``split`` (if given) gets its user and system parts.
    ``publish_apart``: the messages are published by a child process, so that this process's
    instructions (bench/event_instructions.sh counts them) are the consumer's alone."""
    split = {} if split is None else split

    from shop.common.events.broker import Topology, delete_topology
    from shop.common.events.consumer import Consumer

    prefix = f"eventcost{uuid.uuid4().hex[:8]}."
    topology = Topology(url, exchange=f"{prefix}events", queue_prefix=prefix)
    handled, drained = 0, asyncio.Event()
    notifier: Any = None
    inbox: Any = None
    if smtp_port is not None:  # the worker's own handler, mailing the sink
        from shop.common.auth import ServiceTokens
        from shop.common.http import ServiceClient
        from shop.notifications.service import Notifier
        from shop.notifications.settings import NotificationsSettings

        settings = NotificationsSettings(smtp_port=smtp_port)
        users = ServiceClient(
            target="user-service", base_url="http://users", tokens=ServiceTokens("n", "s")
        )
        notifier = Notifier(settings, users)
    if redis_url is not None:
        from shop.common.events.inbox import RedisInbox

        inbox = RedisInbox.from_url(redis_url, retention_seconds=600, prefix=f"{prefix}inbox:")

    async def handler(event: Any, conn: Any) -> None:
        nonlocal handled
        if notifier is not None:
            await notifier(event, conn)
        handled += 1
        if handled >= messages:
            drained.set()

    consumer = Consumer("c", ["#"], handler, topology, inbox=inbox)
    connection = await topology.connect()
    try:
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await consumer.declare(channel)
            exchange = await topology.declare_exchange(channel)
            if publish_apart:  # another process publishes: not in this one's counts
                command = ["-m", "bench.event_cost", "publish", "--prefix", prefix]
                child = await asyncio.create_subprocess_exec(
                    sys.executable, *command, "--messages", str(messages), "--amqp", url
                )
                if await child.wait():
                    raise RuntimeError("the publishing process failed")
            else:
                await publish(exchange, messages)
        task = asyncio.create_task(consumer.run())
        await asyncio.wait_for(consumer.ready.wait(), 30)
        start, usage = time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
        await drained.wait()
        spent = time.process_time() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
        split["user"] = (after.ru_utime - usage.ru_utime) / messages * 1e6
        split["system"] = (after.ru_stime - usage.ru_stime) / messages * 1e6
        await asyncio.sleep(0.2)  # the last acks
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    finally:
        if notifier is not None:
            await notifier.sender.close()
            await notifier.users.aclose()
        if inbox is not None:
            await inbox.aclose()
        await delete_topology(topology, ["c"])
    return spent / messages * 1e6


async def relay_round_cost(events: int, batch: int, url: str, amqp: str) -> float:
    """CPU microseconds per event of the relay's rounds (``Relay.publish_once``: the claim
    statement, the messages and frames, the confirms, the commit) over ``events`` outbox rows
    in a scratch database of their own, published to an exchange of their own (both removed
    afterwards). The renderer is a stub, as in ``relay``: rendering does not wait on I/O."""
    import asyncpg
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql
    from sqlalchemy.schema import CreateIndex, CreateTable

    from shop.common.db import Database
    from shop.common.events.broker import Topology, delete_topology
    from shop.common.tables import define_event_tables

    name = f"eventcost_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = url.rpartition("/")
    db = Database(f"{base}/{name}", min_size=1, max_size=2)
    topology = Topology(amqp, exchange=f"{name}.events", queue_prefix=f"{name}.")
    try:
        outbox, _inbox = define_event_tables(sa.MetaData())
        ddl = [CreateTable(outbox)] + [CreateIndex(index) for index in outbox.indexes]
        await db.connect()
        async with db.acquire() as conn:
            for statement in ddl:
                await conn.execute(str(statement.compile(dialect=postgresql.dialect())))
            await conn.execute(
                "INSERT INTO outbox (type, subject, stream, data)"
                " SELECT 'shop.order.paid', i::text, 'order:' || i,"
                " jsonb_build_object('id', i, 'status', 'paid', 'total_price', '19.99')"
                " FROM generate_series(1, $1) AS i",
                events,
            )
        relay = relay_module.Relay(
            db,
            topology,
            service="orders",
            render=lambda _type, data: str(data).encode(),
            batch=batch,
        )
        connection = await topology.connect()
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await topology.declare_exchange(channel)
            underlay = await channel.get_underlay_channel()
            publisher = relay_module.ConfirmingPublisher(underlay, topology.exchange)
            start = time.process_time()
            sent = 0
            while n := await relay.publish_once(publisher):
                sent += n
            spent = time.process_time() - start
        assert sent == events, (sent, events)
    finally:
        await db.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.close()
        await delete_topology(topology, [])
    return spent / events * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("what", choices=("relay", "relay-round", "consumer", "publish"))
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672/")
    parser.add_argument(
        "--smtp-port", type=int, help="handle with the Notifier, mailing a sink on this port"
    )
    parser.add_argument("--redis", help="claim in a RedisInbox on this Redis (its own prefix)")
    parser.add_argument("--publish-apart", action="store_true", help="consumer: see above")
    parser.add_argument("--prefix", help="publish: the consumer's topology prefix")
    parser.add_argument("--batch", type=int, default=50, help="relay-round: rows per round")
    parser.add_argument(
        "--database",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="relay-round: a server where a scratch database may be made",
    )
    args = parser.parse_args()
    if args.what == "relay":
        cost = relay_cost(args.events)
        print(f"relay: {cost:.1f} us CPU per event (message and frames; best of 15 rounds)")
    elif args.what == "publish":
        run_loop(publish_to(args.amqp, args.prefix, args.messages))
    elif args.what == "relay-round":
        cost = run_loop(relay_round_cost(args.events, args.batch, args.database, args.amqp))
        print(f"relay rounds: {cost:.1f} us CPU per event ({args.events}, {args.batch} a round)")
    else:
        split: dict[str, float] = {}
        cost = run_loop(
            consumer_cost(
                args.messages,
                args.amqp,
                smtp_port=args.smtp_port,
                redis_url=args.redis,
                split=split,
                publish_apart=args.publish_apart,
            )
        )
        handler = "a mail to the sink" if args.smtp_port else "no-op"
        inbox = ", Redis inbox" if args.redis else ""
        print(
            f"consumer: {cost:.1f} us CPU per delivery ({args.messages}, {handler}{inbox};"
            f" user {split['user']:.0f}, system {split['system']:.0f})"
        )


if __name__ == "__main__":
    main()
