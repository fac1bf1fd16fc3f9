"""The saga's transition function, edge by edge, and whole sagas over fakes of its two ports
(the product and payment services). No database, no HTTP."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from shop.orders.saga import (
    Call,
    Charged,
    Declined,
    Finish,
    Next,
    Order,
    OrderLine,
    OrderStatus,
    Outcome,
    OutOfStock,
    PaymentInProgress,
    PaymentRefused,
    Postpone,
    ProductMissing,
    Refunded,
    RefundRefused,
    Released,
    ReleaseRefused,
    ReservationRefused,
    Reserved,
    SagaStep,
    Transition,
    Voided,
    VoidRefused,
    after,
    start,
)

NOW = datetime(2026, 12, 1, tzinfo=UTC)
S, St = SagaStep, OrderStatus


def order(
    step: SagaStep = S.RESERVING,
    status: OrderStatus = St.PENDING,
    *,
    total: str | None = None,
    payment_id: str | None = None,
    reason: str | None = None,
    quantity: int = 2,
    lines: tuple[OrderLine, ...] | None = None,
) -> Order:
    return Order(
        id=7,
        user_id=3,
        lines=lines or (OrderLine(11, quantity),),
        total_price=None if total is None else Decimal(total),
        currency="USD",
        status=status,
        payment_id=payment_id,
        payment_method="card",
        saga_step=step,
        failure_reason=reason,
        request_fingerprint=None,
        created_at=NOW,
        updated_at=NOW,
    )


def compensate(reason: str, call: Call, lines: tuple[OrderLine, ...] | None = None) -> Next:
    return Next(call, step=S.COMPENSATING, failure_reason=reason, lines=lines, durable=True)


KB = OrderLine(11, 2, "Keyboard", Decimal("4.00"))
P11 = OrderLine(11, 2, "P11", Decimal("4.00"))  # as FakeProducts prices it


# --- start: where each recorded step resumes ------------------------------------------------

START = [
    (order(S.RESERVING), False, Next(Call.RESERVE)),
    # Recovery of an order still RESERVING first learns its price again: it may have paid.
    (order(S.RESERVING), True, Next(Call.RESERVE, S.COMPENSATING, failure_reason="abandoned")),
    (order(S.PAYING, total="8.00"), False, Next(Call.PAY)),
    (order(S.PAYING, total="8.00"), True, compensate("abandoned", Call.VOID)),
    (order(S.COMPENSATING), True, Next(Call.RELEASE)),
    (order(S.COMPENSATING, total="8.00"), True, Next(Call.VOID)),
    (order(S.CANCELLING, St.PAID, total="8.00", payment_id="pay_1"), False, Next(Call.REFUND)),
    (order(S.CANCELLING, total="8.00"), False, Next(Call.VOID)),
    (order(S.CANCELLING), False, Next(Call.RESERVE)),
]


@pytest.mark.parametrize(("current", "recovering", "expected"), START)
def test_start(current: Order, recovering: bool, expected: Transition) -> None:
    assert start(current, recovering=recovering) == expected


def test_a_finished_saga_does_not_start_again() -> None:
    assert isinstance(start(order(S.DONE, St.PAID), recovering=True), Postpone)


# --- after: every edge ----------------------------------------------------------------------

PAYING = order(S.PAYING, total="8.00")
COMPENSATING = order(S.COMPENSATING, total="8.00", reason="payment_refused")
CANCELLING = order(S.CANCELLING, total="8.00")
ABANDONED = order(S.COMPENSATING, reason="abandoned")  # recovery, before the price is known
RESERVED = Reserved({11: ("Keyboard", Decimal("4.00"))})
EDGES = [
    # Paying is not recorded: the final write or the compensation records the price.
    (order(), RESERVED, Next(Call.PAY, S.PAYING, Decimal("8.00"), lines=(KB,))),
    (ABANDONED, RESERVED, Next(Call.VOID, total_price=Decimal("8.00"), lines=(KB,), durable=True)),
    (ABANDONED, OutOfStock({11: 1}), Next(Call.RELEASE, durable=True)),
    (ABANDONED, ProductMissing((11,)), Next(Call.RELEASE, durable=True)),
    (ABANDONED, ReservationRefused("released"), Next(Call.RELEASE, durable=True)),
    (
        order(S.CANCELLING),
        RESERVED,
        Next(Call.VOID, total_price=Decimal("8.00"), lines=(KB,), durable=True),
    ),
    (order(S.CANCELLING), OutOfStock({11: 1}), Next(Call.RELEASE)),
    (
        order(),
        OutOfStock({11: 1}),
        compensate("insufficient_stock", Call.RELEASE, (OrderLine(11, 2, available=1),)),
    ),
    (order(), ProductMissing((11,)), compensate("product_not_found", Call.RELEASE)),
    (order(), ReservationRefused("released"), compensate("reservation_refused", Call.RELEASE)),
    (PAYING, Charged("pay_1"), Finish(St.PAID, payment_id="pay_1")),
    (PAYING, Declined("too much"), compensate("payment_declined", Call.RELEASE)),
    (PAYING, PaymentRefused("refunded"), compensate("payment_refused", Call.VOID)),
    (PAYING, PaymentInProgress(), Postpone("the payment is being processed")),
    (COMPENSATING, Voided(), Next(Call.RELEASE)),
    (COMPENSATING, VoidRefused("pay_1", completed=True), Finish(St.PAID, payment_id="pay_1")),
    (COMPENSATING, VoidRefused("pay_1", completed=False), Next(Call.RELEASE)),
    (COMPENSATING, PaymentInProgress(), Postpone("the payment is being processed")),
    (COMPENSATING, Released(), Finish(St.FAILED, reason="payment_refused")),
    (CANCELLING, VoidRefused("pay_1", completed=True), Next(Call.REFUND, payment_id="pay_1")),
    (CANCELLING, Voided(), Next(Call.RELEASE)),
    (CANCELLING, Refunded(), Next(Call.RELEASE)),
    (CANCELLING, Released(), Finish(St.CANCELLED)),
    (
        CANCELLING,
        RefundRefused("provider says no"),
        Postpone("the payment could not be refunded (provider says no)", retry=False),
    ),
    (
        COMPENSATING,
        ReleaseRefused("status 404"),
        Postpone("the stock could not be released (status 404)", retry=False),
    ),
]


@pytest.mark.parametrize(("current", "outcome", "expected"), EDGES)
def test_after(current: Order, outcome: Outcome, expected: Transition) -> None:
    assert after(current, outcome) == expected


def test_every_outcome_has_an_edge() -> None:
    assert {type(outcome) for _, outcome, _ in EDGES} == set(typing.get_args(Outcome))


def test_applying_a_step_keeps_what_it_does_not_change() -> None:
    paying = Next(Call.PAY, S.PAYING, Decimal("8.00"), durable=True).apply(order(reason="x"))
    assert (paying.saga_step, paying.total_price, paying.failure_reason) == (
        S.PAYING,
        Decimal("8.00"),
        "x",
    )


# --- whole sagas over fakes of the two ports ------------------------------------------------


@dataclass
class FakeProducts:
    """The product service's rules: one reservation per order, every line or none; a release
    first is a tombstone."""

    stock: dict[int, int] = field(default_factory=lambda: {11: 5})
    price: Decimal = Decimal("4.00")
    reservations: dict[int, str] = field(default_factory=dict)

    async def reserve(self, o: Order) -> Outcome:
        missing = tuple(line.product_id for line in o.lines if line.product_id not in self.stock)
        if missing:
            return ProductMissing(missing)
        if self.reservations.get(o.id) == "released":
            return ReservationRefused("released")
        if o.id not in self.reservations:
            short = {
                line.product_id: self.stock[line.product_id]
                for line in o.lines
                if self.stock[line.product_id] < line.quantity
            }
            if short:
                return OutOfStock(short)
            for line in o.lines:
                self.stock[line.product_id] -= line.quantity
            self.reservations[o.id] = "reserved"
        return Reserved({line.product_id: (f"P{line.product_id}", self.price) for line in o.lines})

    async def release(self, o: Order) -> Outcome:
        if self.reservations.get(o.id) == "reserved":
            for line in o.lines:
                self.stock[line.product_id] += line.quantity
        self.reservations[o.id] = "released"
        return Released()


@dataclass
class FakePayments:
    """The payment service's rules: one payment per order; a void with none is a tombstone."""

    decline: bool = False
    payments: dict[int, str] = field(default_factory=dict)  # order id -> status
    charges: int = 0

    async def pay(self, o: Order) -> Outcome:
        assert o.total_price is not None, "a payment needs the order's price"  # as the client
        status = self.payments.setdefault(o.id, "processing")
        if status == "processing":
            status = self.payments[o.id] = "failed" if self.decline else "completed"
            self.charges += status == "completed"
        if status == "completed":
            return Charged(f"pay_{o.id}")
        if status == "failed":
            return Declined("declined")
        return PaymentRefused(status)

    async def void(self, o: Order) -> Outcome:
        assert o.total_price is not None, "a void needs the order's price"  # as the client
        status = self.payments.setdefault(o.id, "failed")
        if status in ("completed", "refunded"):
            return VoidRefused(f"pay_{o.id}", completed=status == "completed")
        self.payments[o.id] = "failed"
        return Voided()

    async def refund(self, o: Order) -> Outcome:
        if self.payments.get(o.id) == "completed":
            self.payments[o.id] = "refunded"
            return Refunded()
        return RefundRefused(self.payments.get(o.id, "missing"))


@dataclass
class Run:
    final: Transition
    order: Order  # as the driver held it
    calls: list[Call]
    durable: Order  # as the database holds it (after a crash: what recovery reads)


async def run(
    o: Order,
    products: FakeProducts,
    payments: FakePayments,
    *,
    recovering: bool = False,
    crash_before: Call | None = None,
) -> Run:
    """What the driver does, without its database: apply, call, decide; optionally "crash"
    (stop, keeping only the durable writes) before a call."""
    ports = {
        Call.RESERVE: products.reserve,
        Call.RELEASE: products.release,
        Call.PAY: payments.pay,
        Call.VOID: payments.void,
        Call.REFUND: payments.refund,
    }
    durable, calls = o, []
    transition = start(o, recovering=recovering)
    while isinstance(transition, Next):
        o = transition.apply(o)
        if transition.durable:
            durable = dataclasses.replace(
                durable,
                lines=o.lines,
                saga_step=o.saga_step,
                total_price=o.total_price,
                failure_reason=o.failure_reason,
            )
        if transition.call is crash_before:
            return Run(Postpone("crashed"), o, calls, durable)
        calls.append(transition.call)
        transition = after(o, await ports[transition.call](o))
    return Run(transition, o, calls, o)


async def test_a_placed_order_reserves_and_pays_in_two_calls() -> None:
    products, payments = FakeProducts(), FakePayments()
    done = await run(order(), products, payments)
    assert done.calls == [Call.RESERVE, Call.PAY]
    assert done.final == Finish(St.PAID, payment_id="pay_7")
    assert done.order.total_price == Decimal("8.00")
    assert (products.stock[11], payments.charges) == (3, 1)


async def test_out_of_stock_charges_nothing() -> None:
    products, payments = FakeProducts(stock={11: 1}), FakePayments()
    done = await run(order(), products, payments)
    assert done.final == Finish(St.FAILED, reason="insufficient_stock")
    assert done.calls == [Call.RESERVE, Call.RELEASE]
    assert payments.payments == {}


async def test_a_declined_payment_gives_the_stock_back() -> None:
    products, payments = FakeProducts(), FakePayments(decline=True)
    done = await run(order(), products, payments)
    assert done.final == Finish(St.FAILED, reason="payment_declined")
    assert done.calls == [Call.RESERVE, Call.PAY, Call.RELEASE]
    assert products.stock[11] == 5


async def test_a_driver_lost_after_the_charge_is_recovered_forward() -> None:
    products, payments = FakeProducts(), FakePayments()
    crashed = await run(order(), products, payments, crash_before=Call.PAY)
    await payments.pay(crashed.order)  # the dead driver's charge went through
    assert crashed.durable.saga_step is S.RESERVING  # what the database holds: no price
    done = await run(crashed.durable, products, payments, recovering=True)
    assert done.calls == [Call.RESERVE, Call.VOID]
    assert done.final == Finish(St.PAID, payment_id="pay_7")
    assert (done.order.total_price, done.order.lines) == (Decimal("8.00"), (P11,))
    assert (payments.charges, products.stock[11]) == (1, 3)


async def test_an_order_recorded_paying_by_an_earlier_version_is_recovered_forward() -> None:
    products, payments = FakeProducts(), FakePayments()
    await payments.pay(order(S.PAYING, total="8.00"))  # charged; the answer was lost
    done = await run(order(S.PAYING, total="8.00"), products, payments, recovering=True)
    assert done.final == Finish(St.PAID, payment_id="pay_7")
    assert payments.charges == 1


async def test_a_driver_lost_before_paying_is_recovered_back_and_a_late_charge_refused() -> None:
    products, payments = FakeProducts(), FakePayments()
    crashed = await run(order(), products, payments, crash_before=Call.PAY)
    done = await run(crashed.durable, products, payments, recovering=True)
    assert done.calls == [Call.RESERVE, Call.VOID, Call.RELEASE]
    assert done.final == Finish(St.FAILED, reason="abandoned")
    assert products.stock[11] == 5
    # The dead driver's request arrives after all: the voided payment refuses it.
    assert await payments.pay(crashed.order) == Declined("declined")
    assert payments.charges == 0


async def test_recovery_that_dies_after_recording_the_price_voids_and_releases_next_time() -> None:
    products, payments = FakeProducts(), FakePayments()
    crashed = await run(order(), products, payments, crash_before=Call.PAY)
    halfway = await run(
        crashed.durable, products, payments, recovering=True, crash_before=Call.RELEASE
    )
    assert (halfway.durable.saga_step, halfway.durable.total_price) == (
        S.COMPENSATING,
        Decimal("8.00"),
    )
    done = await run(halfway.durable, products, payments, recovering=True)
    assert done.calls == [Call.VOID, Call.RELEASE]
    assert done.final == Finish(St.FAILED, reason="abandoned")
    assert (products.stock[11], payments.charges) == (5, 0)


async def test_a_driver_lost_while_reserving_is_released_and_its_payment_voided() -> None:
    products, payments = FakeProducts(), FakePayments()
    await products.reserve(order())  # reserved; the answer was lost
    done = await run(order(), products, payments, recovering=True)
    assert done.calls == [Call.RESERVE, Call.VOID, Call.RELEASE]
    assert done.final == Finish(St.FAILED, reason="abandoned")
    assert (products.stock[11], payments.payments) == (5, {7: "failed"})


async def test_a_driver_lost_before_its_reservation_asks_for_no_payment() -> None:
    products, payments = FakeProducts(stock={11: 1}), FakePayments()  # nothing was reserved
    done = await run(order(), products, payments, recovering=True)
    assert done.calls == [Call.RESERVE, Call.RELEASE]
    assert done.final == Finish(St.FAILED, reason="abandoned")
    assert (products.stock[11], products.reservations, payments.payments) == (
        1,
        {7: "released"},  # a tombstone: a late reservation is refused
        {},
    )


async def test_cancelling_a_paid_order_refunds_then_restocks() -> None:
    products, payments = FakeProducts(), FakePayments()
    placed = await run(order(), products, payments)
    paid = dataclasses.replace(placed.order, status=St.PAID, saga_step=S.CANCELLING)
    done = await run(paid, products, payments)
    assert done.calls == [Call.REFUND, Call.RELEASE]
    assert done.final == Finish(St.CANCELLED)
    assert (payments.payments[7], products.stock[11]) == ("refunded", 5)


async def test_cancelling_a_pending_order_whose_payment_went_through_refunds_it() -> None:
    products, payments = FakeProducts(), FakePayments()
    crashed = await run(order(), products, payments, crash_before=Call.PAY)
    await payments.pay(crashed.order)
    cancelling = dataclasses.replace(crashed.durable, saga_step=S.CANCELLING)
    done = await run(cancelling, products, payments)
    assert done.calls == [Call.RESERVE, Call.VOID, Call.REFUND, Call.RELEASE]
    assert done.final == Finish(St.CANCELLED)
    assert payments.payments[7] == "refunded"


THREE = (OrderLine(11, 2), OrderLine(12, 1), OrderLine(13, 3))


async def test_a_three_line_order_is_paid_once_for_its_total() -> None:
    products, payments = FakeProducts(stock={11: 5, 12: 5, 13: 5}), FakePayments()
    done = await run(order(lines=THREE), products, payments)
    assert done.final == Finish(St.PAID, payment_id="pay_7")
    assert done.calls == [Call.RESERVE, Call.PAY]
    assert done.order.total_price == Decimal("24.00")  # (2 + 1 + 3) x 4.00
    assert [line.line_total for line in done.order.lines] == [
        Decimal("8.00"),
        Decimal("4.00"),
        Decimal("12.00"),
    ]
    assert (products.stock, payments.charges) == ({11: 3, 12: 4, 13: 2}, 1)


async def test_one_short_line_reserves_none_and_says_which() -> None:
    products, payments = FakeProducts(stock={11: 5, 12: 0, 13: 5}), FakePayments()
    done = await run(order(lines=THREE), products, payments)
    assert done.final == Finish(St.FAILED, reason="insufficient_stock")
    assert [line.available for line in done.order.lines] == [None, 0, None]
    assert products.stock == {11: 5, 12: 0, 13: 5}
    assert payments.payments == {}


async def test_a_declined_three_line_order_gives_every_line_back() -> None:
    products, payments = FakeProducts(stock={11: 5, 12: 5, 13: 5}), FakePayments(decline=True)
    done = await run(order(lines=THREE), products, payments)
    assert done.final == Finish(St.FAILED, reason="payment_declined")
    assert products.stock == {11: 5, 12: 5, 13: 5}


def test_a_one_line_order_keeps_the_seeds_fields_and_more_lines_do_not() -> None:
    assert (order().product_id, order().quantity) == (11, 2)
    assert (order(lines=THREE).product_id, order(lines=THREE).quantity) == (None, None)
