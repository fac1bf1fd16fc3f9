"""What the order service does with other services' events.

``shop.payment.refunded`` (the order follows its payment): a refund made at the payment
service, not by the order's own cancel, cancels the paid order and releases its stock, once.
The order's own cancel holds the order in ``cancelling`` while it refunds, so its refund event
finds it cancelling (or cancelled) and does nothing. Otherwise the handler takes the order's
saga lease as a cancel does, in the inbox transaction, and after the commit drives that cancel:
the refund call answers "already refunded", the stock is released (once, by the order id), the
order is cancelled and ``shop.order.cancelled`` published. Killed in between, the order is left
``cancelling`` and the recovery worker finishes it; the redelivered event is a duplicate.
"""

from __future__ import annotations

from shop.common.db import Connection
from shop.common.events.broker import Topology
from shop.common.events.consumer import AfterCommit, Consumer, Event, Handler
from shop.common.logging import get_logger
from shop.orders.db import OrderRepository
from shop.orders.saga import OrderStatus, SagaStep, start
from shop.orders.service import Saga
from shop.orders.settings import OrdersSettings

log = get_logger("shop.orders.events")

CONSUMER = "orders"
KEYS = ("shop.payment.refunded",)


def follow_refunds(saga: Saga) -> Handler:
    """The handler of ``shop.payment.refunded`` for this app's saga."""

    async def on_refunded(event: Event, conn: Connection | None) -> AfterCommit | None:
        assert conn is not None, "the order consumer keeps its inbox in the orders database"
        order_id = int(event.data["order_id"])
        orders = OrderRepository(conn)
        order = await orders.get(order_id)
        if (
            order is None
            or order.status is not OrderStatus.PAID
            or order.saga_step is SagaStep.CANCELLING
        ):
            return None  # unknown, no longer paid, or its own cancel is refunding it
        leased = await orders.take_lease(order_id, saga.lease_seconds, cancel=True)
        if leased is None:
            return None  # being driven right now (a cancel): that one finishes it
        log.info("payment refunded at the payment service: cancelling", order_id=order_id)

        async def cancel() -> None:
            await saga.drive(leased, start(leased, recovering=False))

        return cancel

    return on_refunded


def build_consumer(settings: OrdersSettings, saga: Saga) -> Consumer | None:
    topology = Topology.from_settings(settings)
    if topology is None:
        return None
    return Consumer(
        name=CONSUMER,
        keys=KEYS,
        handler=follow_refunds(saga),
        topology=topology,
        db=saga.db,
        prefetch=settings.amqp_prefetch,
        max_attempts=settings.event_max_attempts,
        retry_base=settings.event_retry_base_seconds,
    )
