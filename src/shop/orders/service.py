"""The order saga: place, cancel and recover orders across the product and payment services.

    place:   reserve stock ──> create payment ──> process payment ──> paid
                  │ refused          │ refused          │ declined
                  └──────────────────┴──────────────────┴──> compensate ──> failed
    cancel:  (pending|paid) ──> void or refund payment ──> release stock ──> cancelled
    recover: an unfinished order whose lease expired goes forward if its payment completed,
             else back (void, release) to failed; a cancel in progress is finished.

Progress is written to the order (``saga_step``) before and after each remote call; every
remote call is idempotent by the order's id, so any step may run again after a crash or a
timeout without doubling anything. See docs/orders-saga.md for the full state machine.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from opentelemetry import trace

from shop.common.auth import Principal
from shop.common.db import Database
from shop.common.errors import Conflict, NotFound, PaymentDeclined, Problem
from shop.common.http import Bulkhead, DownstreamUnavailable
from shop.common.logging import get_logger
from shop.common.metrics import ORDER_AMOUNT, ORDERS, SAGA_BACKLOG, SAGA_RECOVERED
from shop.orders.clients import PaymentsClient, ProductsClient
from shop.orders.db import OrderRepository
from shop.orders.schemas import OrderCreate

log = get_logger("shop.orders.saga")
_tracer = trace.get_tracer("shop.orders.saga")

# Status changes an admin (or a service) may make by PATCH; payment outcomes belong to the saga.
FULFILMENT = {"paid": {"shipped"}, "shipped": {"delivered"}}
CANCELLABLE = ("pending", "paid")
PROBLEM_BY_REASON: dict[str, type[Problem]] = {
    "product_not_found": NotFound,
    "insufficient_stock": Conflict,
    "payment_declined": PaymentDeclined,
}
REASON_TEXT = {
    "product_not_found": "The product does not exist.",
    "insufficient_stock": "There is not enough stock for this order; nothing was charged.",
    "payment_declined": "The payment was declined; the order failed and its stock was released.",
}


def failure_problem(order: Any) -> Problem:
    reason = order["failure_reason"] or "failed"
    problem = PROBLEM_BY_REASON.get(reason, Conflict)
    detail = REASON_TEXT.get(reason, f"The order failed ({reason}).")
    return problem(detail, extra={"order_id": order["id"], "code": reason})


def _record_final(order: Any) -> None:
    ORDERS.labels(order["status"]).inc()
    if order["total_price"] is not None:
        ORDER_AMOUNT.labels(order["status"], order["currency"]).inc(float(order["total_price"]))


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
        self, *, user_id: int, order_in: OrderCreate, idempotency_key: str | None, currency: str
    ) -> Any:
        """Run the saga to a final status. Returns the paid order or raises its problem."""
        async with self.bulkhead.slot():
            return await self._place(
                user_id=user_id,
                order_in=order_in,
                idempotency_key=idempotency_key,
                currency=currency,
            )

    async def _place(
        self, *, user_id: int, order_in: OrderCreate, idempotency_key: str | None, currency: str
    ) -> Any:
        async with self.db.acquire() as conn:
            orders = OrderRepository(conn)
            order = await orders.add(
                user_id=user_id,
                product_id=order_in.product_id,
                quantity=order_in.quantity,
                currency=currency,
                payment_method=order_in.payment_method,
                idempotency_key=idempotency_key,
                lease=self.lease_seconds,
            )
            if order is None:  # this key already placed an order: finish or report that one
                assert idempotency_key is not None
                order = await orders.by_key(user_id, idempotency_key)
                if order["status"] != "pending":
                    return self._outcome(order)
                order = await orders.take_lease(order["id"], self.lease_seconds)
                if order is None:
                    raise Conflict(
                        "This order is still being processed.", headers={"Retry-After": "1"}
                    )
        return self._outcome(await self._drive(order))

    def _outcome(self, order: Any) -> Any:
        if order["status"] == "failed":
            raise failure_problem(order)
        if order["status"] == "pending":
            raise DownstreamUnavailable("order saga", "the order is still in progress")
        return order

    async def _drive(self, order: Any) -> Any:
        """Take a leased pending order forward from its recorded step."""
        try:
            if order["saga_step"] in ("compensating", "cancelling"):
                return await self._compensate(order)
            if order["saga_step"] == "reserving":
                order = await self._reserve(order)
                if order["status"] != "pending":
                    return order
            if order["payment_id"] is None:
                order = await self._create_payment(order)
                if order["status"] != "pending":
                    return order
            return await self._process_payment(order)
        except DownstreamUnavailable:
            await self._release_lease(order["id"])
            raise

    async def _reserve(self, order: Any) -> Any:
        response = await self.products.reserve(
            product_id=order["product_id"], order_id=order["id"], quantity=order["quantity"]
        )
        if response.status_code == 404:
            return await self._fail(order, "product_not_found")
        if response.status_code == 409:
            return await self._fail(order, "insufficient_stock")
        if response.status_code not in (200, 201):
            return await self._fail(order, "reservation_refused")
        unit_price = Decimal(response.json()["unit_price"])
        return await self._advance(order, "reserved", total_price=unit_price * order["quantity"])

    async def _create_payment(self, order: Any) -> Any:
        response = await self.payments.create(
            order_id=order["id"],
            user_id=order["user_id"],
            amount=order["total_price"],
            currency=order["currency"],
            method=order["payment_method"],
        )
        if response.status_code not in (200, 201):
            log.warning("payment refused", order_id=order["id"], status=response.status_code)
            return await self._fail(order, "payment_refused")
        return await self._advance(order, "paying", payment_id=response.json()["payment_id"])

    async def _process_payment(self, order: Any) -> Any:
        response = await self.payments.process(order_id=order["id"], payment_id=order["payment_id"])
        if response.status_code == 200 and response.json()["status"] == "completed":
            return await self._finish(order, "paid")
        if response.status_code == 402:
            return await self._fail(order, "payment_declined")
        # Refunded or voided under us: recovery's rules decide from the payment's state.
        return await self._settle_from_payment(order)

    # --- compensating --------------------------------------------------------------------

    async def _fail(self, order: Any, reason: str) -> Any:
        order = await self._advance(order, "compensating", failure_reason=reason)
        return await self._compensate(order)

    async def _compensate(self, order: Any) -> Any:
        """Undo what the order did: void or refund its payment, release its stock."""
        target = "cancelled" if order["saga_step"] == "cancelling" else "failed"
        payment_id = order["payment_id"] or await self._find_payment_id(order)
        if payment_id is not None:
            if order["status"] == "paid":
                await self._refund(order, payment_id)
            else:
                void = await self.payments.void(payment_id=payment_id)
                if void.status_code == 409:
                    paid_status = void.json().get("payment_status")
                    if paid_status == "completed" and target == "failed":
                        return await self._finish(order, "paid")  # it went through: forward
                    if paid_status == "completed":
                        await self._refund(order, payment_id)
        await self.products.release(product_id=order["product_id"], order_id=order["id"])
        return await self._finish(order, target, reason=order["failure_reason"])

    async def _refund(self, order: Any, payment_id: str) -> None:
        response = await self.payments.refund(order_id=order["id"], payment_id=payment_id)
        if response.status_code != 200:
            raise Conflict(f"The payment could not be refunded ({response.status_code}).")

    async def _find_payment_id(self, order: Any) -> str | None:
        if order["saga_step"] == "reserving":
            return None  # no payment is created before the stock is reserved
        response = await self.payments.for_order(order_id=order["id"])
        if response.status_code == 404:
            return None
        payment_id: str = response.json()["payment_id"]
        return payment_id

    async def _settle_from_payment(self, order: Any) -> Any:
        response = await self.payments.for_order(order_id=order["id"])
        status = response.json().get("status") if response.status_code == 200 else None
        if status == "completed":
            return await self._finish(order, "paid")
        reason = order["failure_reason"] or "abandoned"
        return await self._fail(order, reason)

    # --- cancelling ----------------------------------------------------------------------

    async def cancel(self, *, order_id: int, principal: Principal) -> Any:
        async with self.bulkhead.slot():
            return await self._cancel(order_id=order_id, principal=principal)

    async def _cancel(self, *, order_id: int, principal: Principal) -> Any:
        async with self.db.acquire() as conn:
            orders = OrderRepository(conn)
            order = await visible_order(orders, order_id, principal)
            if order["status"] not in CANCELLABLE:
                raise Conflict(
                    f"A {order['status']} order cannot be cancelled.",
                    extra={"code": "invalid_transition"},
                )
            leased = await orders.take_lease(order_id, self.lease_seconds, step="cancelling")
            if leased is None:
                current = await orders.get(order_id)
                if current["status"] not in CANCELLABLE:
                    raise Conflict(
                        f"A {current['status']} order cannot be cancelled.",
                        extra={"code": "invalid_transition"},
                    )
                raise Conflict(
                    "The order is being processed; try again shortly.", headers={"Retry-After": "1"}
                )
        return await self._drive(leased)

    # --- recovery ------------------------------------------------------------------------

    async def recover(self, limit: int = 50) -> dict[str, int]:
        """Drive every unfinished order whose lease expired to a final status."""
        outcomes = {"forward": 0, "compensated": 0, "left": 0}
        async with self.db.acquire() as conn:
            stuck = await OrderRepository(conn).stuck(limit)
        for order_id in stuck:
            # One trace per recovered order (when tracing is on): its calls and SQL under it.
            with _tracer.start_as_current_span("saga.recover", attributes={"order.id": order_id}):
                outcome = await self._recover_one(order_id)
            if outcome is not None:
                outcomes[outcome] += 1
        async with self.db.acquire() as conn:
            SAGA_BACKLOG.set(await OrderRepository(conn).count_stuck())
        return outcomes

    async def _recover_one(self, order_id: int) -> str | None:
        async with self.db.acquire() as conn:
            order = await OrderRepository(conn).take_lease(order_id, self.lease_seconds)
        if order is None:
            return None  # someone else holds it
        try:
            if order["saga_step"] in ("compensating", "cancelling"):
                final = await self._drive(order)
            else:
                final = await self._settle_from_payment(order)
        except Problem as exc:
            log.warning("recovery postponed", order_id=order_id, error=exc.detail)
            await self._release_lease(order_id)
            return "left"
        outcome = "forward" if final["status"] == "paid" else "compensated"
        SAGA_RECOVERED.labels(outcome).inc()
        log.info("order recovered", order_id=order_id, status=final["status"])
        return outcome

    # --- bookkeeping ---------------------------------------------------------------------

    async def _advance(self, order: Any, step: str, **fields: Any) -> Any:
        async with self.db.acquire() as conn:
            return await OrderRepository(conn).advance(order["id"], step, **fields)

    async def _finish(self, order: Any, status: str, reason: str | None = None) -> Any:
        async with self.db.acquire() as conn:
            orders = OrderRepository(conn)
            final = await orders.finish(
                order["id"],
                status=status,
                from_statuses=CANCELLABLE,
                reason=reason if status != "paid" else None,
            )
            if final is None:  # someone else finished it first: theirs stands
                return await orders.get(order["id"])
        _record_final(final)
        return final

    async def _release_lease(self, order_id: int) -> None:
        try:
            async with self.db.acquire() as conn:
                await OrderRepository(conn).release_lease(order_id)
        except OSError:
            log.warning("could not release the lease", order_id=order_id)


async def visible_order(orders: OrderRepository, order_id: int, principal: Principal) -> Any:
    order = await orders.get(order_id)
    if order is None or not principal.may_access_user(order["user_id"]):
        raise NotFound(f"Order {order_id} does not exist.")
    return order


async def get_order(*, db: Database, order_id: int, principal: Principal) -> Any:
    async with db.acquire() as conn:
        return await visible_order(OrderRepository(conn), order_id, principal)


async def list_for_user(
    *, db: Database, user_id: int, limit: int, offset: int
) -> tuple[list[Any], int]:
    async with db.acquire() as conn:
        return await OrderRepository(conn).page_for_user(user_id, limit=limit, offset=offset)


async def change_status(*, saga: Saga, order_id: int, status: str, principal: Principal) -> Any:
    if status == "cancelled":
        return await saga.cancel(order_id=order_id, principal=principal)
    async with saga.db.acquire() as conn:
        orders = OrderRepository(conn)
        order = await visible_order(orders, order_id, principal)
        if status not in FULFILMENT.get(order["status"], set()):
            raise Conflict(
                f"An order cannot go from {order['status']} to {status}.",
                extra={"code": "invalid_transition"},
            )
        updated = await orders.set_status(order_id, status, order["status"])
        if updated is None:
            raise Conflict("The order changed meanwhile; read it and try again.")
        return updated
