"""The order saga's core: its states, the outcomes of its remote calls, and the transition
function that decides what happens next. Pure: no database, no HTTP (see tests/unit).

    place:   RESERVING ──reserve──> (paying) ──pay (create and confirm)──> paid / DONE
                 │ refused              │ declined / refused
                 └──────────┬───────────┘
                            ▼
                      COMPENSATING ──void──> release ──> failed / DONE
    cancel:  CANCELLING ──void or refund──> release ──> cancelled / DONE
    recover: RESERVING ─> re-reserve (to learn the price) ─> COMPENSATING ─> void ─> release
             (a completed payment turns it forward to paid)

Paying is a step in memory only: the price the reservation answers with is recorded by the
next write, the final one or the compensation's. So an order the database shows RESERVING may
have a payment, and recovery and a cancel void by order id before they release; the void needs
the amount, which the reservation (idempotent by order id) answers again. PAYING is still read,
for orders recorded by earlier versions (docs/orders-saga.md).

``start`` says which call comes first for an order as recorded; ``after`` takes the outcome of
a call and returns the next transition: another call (``Next``, written to the order first when
``durable``), a final status (``Finish``), or ``Postpone`` (leave the order to a retry or to
recovery). The driver (``shop.orders.service``) performs them and nothing else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import orjson


class OrderStatus(StrEnum):
    PENDING = "pending"
    PAID = "paid"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


class SagaStep(StrEnum):
    RESERVING = "reserving"  # created; reserved and perhaps paid (neither is recorded here)
    PAYING = "paying"  # in memory: stock reserved, price known (recorded by earlier versions)
    COMPENSATING = "compensating"  # going back to failed
    CANCELLING = "cancelling"  # going to cancelled
    DONE = "done"


class Call(StrEnum):
    RESERVE = "reserve"
    PAY = "pay"
    VOID = "void"
    REFUND = "refund"
    RELEASE = "release"


# Status changes an admin (or a service) may make by PATCH; payment outcomes belong to the saga.
FULFILMENT = {OrderStatus.PAID: {OrderStatus.SHIPPED}, OrderStatus.SHIPPED: {OrderStatus.DELIVERED}}
CANCELLABLE = (OrderStatus.PENDING, OrderStatus.PAID)


@dataclass(frozen=True, slots=True)
class Contact:
    """Whom an order's mails go to, as at placement (the token's claims): recorded on the
    order for its events, not part of its REST answer."""

    username: str
    email: str


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One product of an order: its ``name`` and ``unit_price`` are learned when its stock is
    reserved (and kept as they were then); ``available`` is the stock left when this line
    was refused for want of it."""

    product_id: int
    quantity: int
    name: str | None = None
    unit_price: Decimal | None = None
    available: int | None = None

    @property
    def line_total(self) -> Decimal | None:
        return None if self.unit_price is None else self.unit_price * self.quantity

    @classmethod
    def from_json(cls, line: Mapping[str, Any]) -> OrderLine:
        price = line.get("unit_price")
        return cls(
            product_id=line["product_id"],
            quantity=line["quantity"],
            name=line.get("name"),
            unit_price=None if price is None else Decimal(price),
            available=line.get("available"),
        )


@dataclass(frozen=True, slots=True)
class Order:
    id: int
    user_id: int
    lines: tuple[OrderLine, ...]
    total_price: Decimal | None
    currency: str
    status: OrderStatus
    payment_id: str | None
    payment_method: str
    saga_step: SagaStep
    failure_reason: str | None
    request_fingerprint: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_record(
        cls, row: Mapping[str, Any], lines: tuple[OrderLine, ...] | None = None
    ) -> Order:
        """The order of a row; its lines from the row's ``lines`` JSON unless given."""
        if lines is None:
            lines = tuple(OrderLine.from_json(line) for line in orjson.loads(row["lines"]))
        return cls(
            id=row["id"],
            user_id=row["user_id"],
            lines=lines,
            total_price=row["total_price"],
            currency=row["currency"],
            status=OrderStatus(row["status"]),
            payment_id=row["payment_id"],
            payment_method=row["payment_method"],
            saga_step=SagaStep(row["saga_step"]),
            failure_reason=row["failure_reason"],
            request_fingerprint=row["request_fingerprint"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )

    @property
    def product_id(self) -> int | None:
        """The seed's one-product view: the line's product of a one-line order, else None."""
        return self.lines[0].product_id if len(self.lines) == 1 else None

    @property
    def quantity(self) -> int | None:
        return self.lines[0].quantity if len(self.lines) == 1 else None

    @property
    def price_known(self) -> bool:
        """Whether the order knows what it costs. A payment needs the price: one recorded
        COMPENSATING or CANCELLING without it never asked for one; one still RESERVING may
        have paid without recording it."""
        return self.total_price is not None


# --- outcomes of the remote calls (what the clients return) ---------------------------------


@dataclass(frozen=True, slots=True)
class Reserved:
    prices: Mapping[int, tuple[str, Decimal]]  # product id -> (name, unit price) of each line


@dataclass(frozen=True, slots=True)
class OutOfStock:
    available: Mapping[int, int]  # product id -> stock left, for each short line


@dataclass(frozen=True, slots=True)
class ProductMissing:
    product_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ReservationRefused:
    reason: str  # e.g. the reservation was released first


@dataclass(frozen=True, slots=True)
class Released:
    pass


@dataclass(frozen=True, slots=True)
class ReleaseRefused:
    reason: str


@dataclass(frozen=True, slots=True)
class Charged:
    payment_id: str


@dataclass(frozen=True, slots=True)
class Declined:
    reason: str


@dataclass(frozen=True, slots=True)
class PaymentRefused:
    reason: str  # the order has another payment, or it was refunded


@dataclass(frozen=True, slots=True)
class PaymentInProgress:
    """Another call is talking to the provider about this payment right now."""


@dataclass(frozen=True, slots=True)
class Voided:
    pass


@dataclass(frozen=True, slots=True)
class VoidRefused:
    payment_id: str
    completed: bool  # True: it was charged; False: it was charged and refunded already


@dataclass(frozen=True, slots=True)
class Refunded:
    pass


@dataclass(frozen=True, slots=True)
class RefundRefused:
    reason: str


Outcome = (
    Reserved
    | OutOfStock
    | ProductMissing
    | ReservationRefused
    | Released
    | ReleaseRefused
    | Charged
    | Declined
    | PaymentRefused
    | PaymentInProgress
    | Voided
    | VoidRefused
    | Refunded
    | RefundRefused
)

# --- transitions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Next:
    """Make ``call`` next, on the order with ``step`` and the learned fields applied; if
    ``durable``, first record the order as it then stands (learned fields of earlier, unrecorded
    transitions included)."""

    call: Call
    step: SagaStep | None = None
    total_price: Decimal | None = None
    failure_reason: str | None = None
    payment_id: str | None = None
    lines: tuple[OrderLine, ...] | None = None  # the lines with what was learned of them
    durable: bool = False

    def apply(self, order: Order) -> Order:
        return dataclasses.replace(
            order,
            lines=self.lines or order.lines,
            saga_step=self.step or order.saga_step,
            total_price=self.total_price if self.total_price is not None else order.total_price,
            failure_reason=self.failure_reason or order.failure_reason,
            payment_id=self.payment_id or order.payment_id,
        )


@dataclass(frozen=True, slots=True)
class Finish:
    status: OrderStatus
    reason: str | None = None
    payment_id: str | None = None


@dataclass(frozen=True, slots=True)
class Postpone:
    """Stop here and leave the order unfinished; ``retry`` False means a person must look."""

    why: str
    retry: bool = True


Transition = Next | Finish | Postpone


def _compensate(reason: str, call: Call, lines: tuple[OrderLine, ...] | None = None) -> Next:
    return Next(call, step=SagaStep.COMPENSATING, failure_reason=reason, lines=lines, durable=True)


def priced(order: Order, prices: Mapping[int, tuple[str, Decimal]]) -> tuple[OrderLine, ...]:
    """The order's lines with the name and unit price each was reserved at."""
    return tuple(
        dataclasses.replace(
            line, name=prices[line.product_id][0], unit_price=prices[line.product_id][1]
        )
        for line in order.lines
    )


def total(lines: tuple[OrderLine, ...]) -> Decimal:
    """What the order costs: the sum of its line totals (every line priced)."""
    return sum((line.unit_price * line.quantity for line in lines if line.unit_price), Decimal(0))


def start(order: Order, *, recovering: bool) -> Transition:
    """The first call for an order as recorded: a new or resumed placement, a cancel, or
    recovery of an order whose driver is gone (which goes back, unless the payment went
    through)."""
    step = order.saga_step
    if step is SagaStep.CANCELLING:
        if order.status is OrderStatus.PAID:
            return Next(Call.REFUND)
        # A pending order may have been paid by a driver that recorded nothing: learn its
        # price again from the reservation, then void by order id.
        return Next(Call.VOID if order.price_known else Call.RESERVE)
    if step is SagaStep.COMPENSATING:
        return Next(Call.VOID if order.price_known else Call.RELEASE)
    if step is SagaStep.RESERVING:
        if not recovering:
            return Next(Call.RESERVE)
        # Going back, but the payment may exist: COMPENSATING in memory until the
        # reservation answers with the price, recorded with the compensation.
        return Next(Call.RESERVE, step=SagaStep.COMPENSATING, failure_reason="abandoned")
    if step is SagaStep.PAYING:
        return _compensate("abandoned", Call.VOID) if recovering else Next(Call.PAY)
    return Postpone(f"the order is {order.status} and its saga is done", retry=False)


def after(order: Order, outcome: Outcome) -> Transition:
    """The transition an outcome leads to from the order's current step."""
    cancelling = order.saga_step is SagaStep.CANCELLING
    # A reservation answered while going back (recovery, or a cancel of a pending order) was
    # asked only for the price: what may have been paid is voided before the stock goes back.
    going_back = cancelling or order.saga_step is SagaStep.COMPENSATING
    match outcome:
        case Reserved(prices=prices):
            lines = priced(order, prices)
            if going_back:
                return Next(Call.VOID, total_price=total(lines), lines=lines, durable=True)
            # Not recorded: the final write, or the compensation's, records the price.
            return Next(Call.PAY, step=SagaStep.PAYING, total_price=total(lines), lines=lines)
        case OutOfStock() | ProductMissing() | ReservationRefused() if going_back:
            # No reservation was held, so no payment was asked for: the stock is all there is.
            return Next(Call.RELEASE, durable=not cancelling)
        case OutOfStock(available=available):
            short = tuple(
                dataclasses.replace(line, available=available.get(line.product_id))
                for line in order.lines
            )
            return _compensate("insufficient_stock", Call.RELEASE, short)
        case ProductMissing():
            return _compensate("product_not_found", Call.RELEASE)
        case ReservationRefused():
            return _compensate("reservation_refused", Call.RELEASE)
        case Charged(payment_id=payment_id):
            return Finish(OrderStatus.PAID, payment_id=payment_id)
        case Declined():
            return _compensate("payment_declined", Call.RELEASE)  # a declined payment is failed
        case PaymentRefused():
            return _compensate("payment_refused", Call.VOID)
        case PaymentInProgress():
            return Postpone("the payment is being processed")
        case Voided() | Refunded():
            return Next(Call.RELEASE)
        case VoidRefused(payment_id=payment_id, completed=True):
            if cancelling:
                return Next(Call.REFUND, payment_id=payment_id)
            return Finish(OrderStatus.PAID, payment_id=payment_id)  # it went through: forward
        case VoidRefused(completed=False):
            return Next(Call.RELEASE)  # charged and refunded already: only the stock is left
        case RefundRefused(reason=reason):
            return Postpone(f"the payment could not be refunded ({reason})", retry=False)
        case Released():
            if cancelling:
                return Finish(OrderStatus.CANCELLED)
            return Finish(OrderStatus.FAILED, reason=order.failure_reason or "failed")
        case ReleaseRefused(reason=reason):
            return Postpone(f"the stock could not be released ({reason})", retry=False)
    raise AssertionError(f"unhandled outcome {outcome!r}")  # pragma: no cover
