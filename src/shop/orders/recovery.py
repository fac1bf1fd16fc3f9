"""Recovery, in one place: the pass that drives every unfinished order whose lease expired to a
final status, the background loop the order service runs it in, and ``shop recover`` (once).

"Unfinished" is ``shop.orders.db.UNFINISHED``; what recovery does with each order is the saga
core's ``start(order, recovering=True)``: an order still RESERVING goes back, asking the product
service for its reservation again to learn the price and voiding its payment by order id
(forward to paid if it went through); one PAYING (recorded by earlier versions) voids; a
compensation or a cancel is finished.
"""

from __future__ import annotations

import asyncio

from opentelemetry import trace

from shop.common.db import Database
from shop.common.errors import Problem
from shop.common.logging import get_logger
from shop.common.metrics import SAGA_BACKLOG, SAGA_RECOVERED
from shop.orders.db import OrderRepository
from shop.orders.saga import OrderStatus, start
from shop.orders.service import Saga, build_saga
from shop.orders.settings import OrdersSettings

log = get_logger("shop.orders.recovery")
_tracer = trace.get_tracer("shop.orders.saga")


async def recover(saga: Saga, limit: int = 50) -> dict[str, int]:
    """Drive every unfinished order whose lease expired to a final status."""
    outcomes = {"forward": 0, "compensated": 0, "left": 0}
    async with saga.db.acquire() as conn:
        stuck = await OrderRepository(conn).stuck(limit)
    for order_id in stuck:
        # One trace per recovered order (when tracing is on): its calls and SQL under it.
        with _tracer.start_as_current_span("saga.recover", attributes={"order.id": order_id}):
            outcome = await _recover_one(saga, order_id)
        if outcome is not None:
            outcomes[outcome] += 1
    async with saga.db.acquire() as conn:
        SAGA_BACKLOG.set(await OrderRepository(conn).count_stuck())
    return outcomes


async def _recover_one(saga: Saga, order_id: int) -> str | None:
    async with saga.db.acquire() as conn:
        order = await OrderRepository(conn).take_lease(order_id, saga.lease_seconds)
    if order is None:
        return None  # someone else holds it
    try:
        final = await saga.drive(order, start(order, recovering=True))
    except Problem as exc:  # postponed (the driver released the lease): a later pass retries
        log.warning("recovery postponed", order_id=order_id, error=exc.detail)
        return "left"
    outcome = "forward" if final.status is OrderStatus.PAID else "compensated"
    SAGA_RECOVERED.labels(outcome).inc()
    log.info("order recovered", order_id=order_id, status=final.status.value)
    return outcome


async def recovery_loop(saga: Saga, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            outcomes = await recover(saga)
            if any(outcomes.values()):
                log.info("recovery pass", **outcomes)
        except Exception:
            log.exception("recovery pass failed")


async def recover_once(settings: OrdersSettings | None = None) -> dict[str, int]:
    settings = settings or OrdersSettings()
    db = Database.for_service(
        settings, settings.database_url.get_secret_value(), min_size=1, max_size=2
    )
    await db.connect()
    saga, clients = build_saga(settings, db)
    try:
        return await recover(saga, limit=1000)
    finally:
        for client in clients:
            await client.aclose()
        await db.close()
