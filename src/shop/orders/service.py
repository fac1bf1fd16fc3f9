"""Use cases of the order service, and the saga's driver.

The driver is thin: ``shop.orders.saga`` decides every step; ``Saga.drive`` records a step when
the transition says so, makes the call through a client (which returns an outcome), and asks
the core again, until a final status or a postponement. A durable write records the order as
the driver holds it (what earlier transitions learned included), and so does the final one.
Per placed order that is two writes here (the insert, and the final status with the price),
one at the product service and two at the payment service; docs/orders-saga.md says why no
other write is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shop.common.auth import Principal, ServiceTokens
from shop.common.db import Database
from shop.common.errors import Conflict, NotFound, PaymentDeclined, Problem
from shop.common.http import Bulkhead, DownstreamUnavailable, ServiceClient
from shop.common.idempotency import ensure_same_request, fingerprint, in_progress
from shop.common.logging import get_logger
from shop.common.metrics import ORDER_AMOUNT, ORDERS
from shop.common.types import JsonObject
from shop.orders.clients import PaymentsClient, ProductsClient
from shop.orders.db import OrderRepository
from shop.orders.saga import (
    CANCELLABLE,
    FULFILMENT,
    Call,
    Contact,
    Finish,
    Next,
    Order,
    OrderStatus,
    Outcome,
    Postpone,
    Transition,
    after,
    start,
)
from shop.orders.schemas import OrderCreate
from shop.orders.settings import OrdersSettings

if TYPE_CHECKING:
    import httpx  # transports from tests only: the service itself calls on aiohttp

log = get_logger("shop.orders.saga")

PROBLEM_BY_REASON: dict[str, type[Problem]] = {
    "product_not_found": NotFound,
    "insufficient_stock": Conflict,
    "payment_declined": PaymentDeclined,
}
REASON_TEXT = {
    "product_not_found": "A product of the order does not exist; nothing was reserved.",
    "insufficient_stock": "There is not enough stock for this order; nothing was reserved"
    " and nothing was charged.",
    "payment_declined": "The payment was declined; the order failed and its stock was released.",
}


def failure_problem(order: Order) -> Problem:
    """The problem a failed order answers with, every time (a replay of its key too): a short
    line's entry in ``errors`` says how much stock it found (API.md, "Orders with lines")."""
    reason = order.failure_reason or "failed"
    problem = PROBLEM_BY_REASON.get(reason, Conflict)
    detail = REASON_TEXT.get(reason, f"The order failed ({reason}).")
    errors: list[JsonObject] = [
        {
            "loc": ["body", "lines", i, "quantity"],
            "msg": f"only {line.available} of product {line.product_id} in stock",
            "available": line.available,
        }
        for i, line in enumerate(order.lines)
        if line.available is not None
    ]
    return problem(detail, errors=errors or None, extra={"order_id": order.id, "code": reason})


def _record_final(order: Order) -> None:
    ORDERS.labels(order.status.value).inc()
    if order.total_price is not None:
        ORDER_AMOUNT.labels(order.status.value, order.currency).inc(float(order.total_price))


@dataclass
class Saga:
    db: Database
    products: ProductsClient
    payments: PaymentsClient
    lease_seconds: float = 30.0
    # Sagas in flight at once: a slow payment service fills the slots, not the whole process.
    bulkhead: Bulkhead = field(default_factory=lambda: Bulkhead(32, 5.0, name="orders"))

    # --- placing -------------------------------------------------------------------------

    async def place(
        self,
        *,
        user_id: int,
        order_in: OrderCreate,
        idempotency_key: str | None,
        currency: str,
        customer: Contact | None = None,
    ) -> Order:
        """Run the saga to a final status. Returns the paid order or raises its problem.
        ``customer`` (the contact the token carries) is recorded for the order's events.

        With a key, the order row is the key's record (``common.idempotency`` semantics):
        a repeat of a finished order answers as it did, one still being driven gets 409 with
        ``Retry-After``, one whose driver gave up (a 503) or died is resumed.
        """
        request = fingerprint(order_in.model_dump(mode="json"))
        async with self.bulkhead.slot():
            async with self.db.acquire() as conn:
                orders = OrderRepository(conn)
                order = await orders.add(
                    user_id=user_id,
                    customer=customer,
                    lines=order_in.pairs(),
                    currency=currency,
                    payment_method=order_in.payment_method,
                    idempotency_key=idempotency_key,
                    request_fingerprint=request if idempotency_key else None,
                    lease=self.lease_seconds,
                )
                if order is None:  # this key already placed an order: finish or report that one
                    assert idempotency_key is not None
                    existing = await orders.by_key(user_id, idempotency_key)
                    assert existing is not None
                    ensure_same_request(existing.request_fingerprint, request)
                    if existing.status is not OrderStatus.PENDING:
                        return self._answer(existing)
                    order = await orders.take_lease(existing.id, self.lease_seconds)
                    if order is None:
                        raise in_progress("This order is still being processed.")
            return self._answer(await self.drive(order, start(order, recovering=False)))

    @staticmethod
    def _answer(order: Order) -> Order:
        if order.status is OrderStatus.FAILED:
            raise failure_problem(order)
        if order.status is OrderStatus.PENDING:
            raise DownstreamUnavailable("order saga", "the order is still in progress")
        return order

    # --- the driver ----------------------------------------------------------------------

    async def drive(self, order: Order, transition: Transition) -> Order:
        """Carry out transitions on a leased order until it is final or postponed."""
        try:
            while isinstance(transition, Next):
                order = transition.apply(order)
                if transition.durable:
                    async with self.db.acquire() as conn:
                        await OrderRepository(conn).advance(
                            order.id,
                            order.saga_step,
                            total_price=order.total_price,
                            failure_reason=order.failure_reason,
                            lines=order.lines,
                        )
                transition = after(order, await self._call(transition.call, order))
        except DownstreamUnavailable:
            await self._release_lease(order.id)
            raise
        if isinstance(transition, Postpone):
            await self._release_lease(order.id)
            log.warning("saga postponed", order_id=order.id, why=transition.why)
            if transition.retry:
                raise DownstreamUnavailable("order saga", transition.why)
            raise Conflict(f"The order could not be completed: {transition.why}.")
        return await self._finish(order, transition)

    async def _call(self, call: Call, order: Order) -> Outcome:
        match call:
            case Call.RESERVE:
                return await self.products.reserve(order)
            case Call.RELEASE:
                return await self.products.release(order)
            case Call.PAY:
                return await self.payments.pay(order)
            case Call.VOID:
                return await self.payments.void(order)
            case Call.REFUND:
                return await self.payments.refund(order)
        raise AssertionError(call)  # pragma: no cover

    async def _finish(self, order: Order, final: Finish) -> Order:
        async with self.db.acquire() as conn:
            orders = OrderRepository(conn)
            done = await orders.finish(
                order.id,
                status=final.status,
                reason=final.reason,
                payment_id=final.payment_id,
                # A paid order's price and lines are first recorded here.
                total_price=order.total_price,
                lines=order.lines,
            )
            if done is None:  # someone else finished it first: theirs stands
                current = await orders.get(order.id)
                assert current is not None
                return current
        _record_final(done)
        return done

    async def _release_lease(self, order_id: int) -> None:
        try:
            async with self.db.acquire() as conn:
                await OrderRepository(conn).release_lease(order_id)
        except OSError:
            log.warning("could not release the lease", order_id=order_id)

    # --- cancelling ----------------------------------------------------------------------

    async def cancel(self, *, order_id: int, principal: Principal) -> Order:
        async with self.bulkhead.slot():
            async with self.db.acquire() as conn:
                orders = OrderRepository(conn)
                order = await visible_order(orders, order_id, principal)
                _ensure_cancellable(order)
                leased = await orders.take_lease(order_id, self.lease_seconds, cancel=True)
                if leased is None:
                    current = await orders.get(order_id)
                    assert current is not None
                    _ensure_cancellable(current)
                    raise Conflict(
                        "The order is being processed; try again shortly.",
                        headers={"Retry-After": "1"},
                    )
            return await self.drive(leased, start(leased, recovering=False))


def build_saga(
    settings: OrdersSettings,
    db: Database,
    *,
    products_transport: httpx.AsyncBaseTransport | None = None,
    payments_transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[Saga, list[ServiceClient]]:
    tokens = ServiceTokens(
        settings.service_name,
        settings.service_token_secret.get_secret_value(),
        settings.service_token_ttl_seconds,
    )

    def client(
        target: str, base_url: str, transport: httpx.AsyncBaseTransport | None
    ) -> ServiceClient:
        return ServiceClient(
            target=target,
            base_url=base_url,
            tokens=tokens,
            timeout=settings.http_timeout_seconds,
            retry_deadline=settings.retry_deadline_seconds,
            transport=transport,
        )

    products = client("product-service", settings.products_url, products_transport)
    payments = client("payment-service", settings.payments_url, payments_transport)
    saga = Saga(
        db=db,
        products=ProductsClient(products),
        payments=PaymentsClient(payments),
        lease_seconds=settings.saga_lease_seconds,
        bulkhead=Bulkhead(
            settings.saga_max_in_flight, settings.saga_queue_timeout_seconds, name="orders"
        ),
    )
    return saga, [products, payments]


def _ensure_cancellable(order: Order) -> None:
    if order.status not in CANCELLABLE:
        raise Conflict(
            f"A {order.status} order cannot be cancelled.", extra={"code": "invalid_transition"}
        )


async def visible_order(orders: OrderRepository, order_id: int, principal: Principal) -> Order:
    order = await orders.get(order_id)
    if order is None or not principal.may_access_user(order.user_id):
        raise NotFound(f"Order {order_id} does not exist.")
    return order


async def get_order(*, db: Database, order_id: int, principal: Principal) -> Order:
    async with db.acquire() as conn:
        return await visible_order(OrderRepository(conn), order_id, principal)


async def list_for_user(
    *, db: Database, user_id: int, limit: int, offset: int
) -> tuple[list[Order], int]:
    async with db.acquire() as conn:
        return await OrderRepository(conn).page_for_user(user_id, limit=limit, offset=offset)


async def list_all(
    *, db: Database, status: OrderStatus | None, limit: int, offset: int
) -> tuple[list[Order], int]:
    async with db.acquire() as conn:
        return await OrderRepository(conn).page_all(status, limit=limit, offset=offset)


async def change_status(
    *, saga: Saga, order_id: int, status: OrderStatus, principal: Principal
) -> Order:
    if status is OrderStatus.CANCELLED:
        return await saga.cancel(order_id=order_id, principal=principal)
    async with saga.db.acquire() as conn:
        orders = OrderRepository(conn)
        order = await visible_order(orders, order_id, principal)
        if status not in FULFILMENT.get(order.status, set()):
            raise Conflict(
                f"An order cannot go from {order.status} to {status}.",
                extra={"code": "invalid_transition"},
            )
        updated = await orders.set_status(order_id, status, order.status)
        if updated is None:
            raise Conflict("The order changed meanwhile; read it and try again.")
        return updated
