"""The payment lifecycle, edge by edge: every status through every decision, the edges the
repository may move along, and the schema and table that restate the statuses. No database."""

from __future__ import annotations

import dataclasses
import typing
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from shop.payments import lifecycle, schemas, tables
from shop.payments.lifecycle import (
    EDGES,
    Answer,
    Declined,
    InProgress,
    Payment,
    PaymentStatus,
    Refused,
    SettleFirst,
    Void,
    charge_answer,
    charge_settles_to,
    may_move,
    refund_answer,
    refund_settles_to,
    sql_in,
    void_answer,
    void_next,
)

S = PaymentStatus
NOW = datetime(2026, 12, 6, tzinfo=UTC)


def payment(status: PaymentStatus) -> Payment:
    return Payment(
        id=1,
        payment_id="pay_test",
        order_id=7,
        user_id=3,
        amount=Decimal("19.99"),
        currency="USD",
        status=status,
        payment_method="card",
        transaction_id="txn_1" if status in (S.COMPLETED, S.REFUNDING, S.REFUNDED) else None,
        failure_reason="card_declined" if status is S.FAILED else None,
        created_at=NOW,
        updated_at=NOW,
    )


# --- the decisions, one row per status --------------------------------------------------------

CHARGE = {
    S.PENDING: Answer,
    S.PROCESSING: InProgress,
    S.COMPLETED: Answer,
    S.FAILED: Declined,
    S.REFUNDING: Answer,
    S.REFUNDED: Refused,
}
REFUND = {
    S.PENDING: Refused,
    S.PROCESSING: Refused,
    S.COMPLETED: Refused,  # only when its claim failed: a completed one is claimed, not refused
    S.FAILED: Refused,
    S.REFUNDING: InProgress,
    S.REFUNDED: Refused,
}
VOID = {
    S.PENDING: Void,
    S.PROCESSING: SettleFirst,
    S.COMPLETED: Refused,
    S.FAILED: Answer,
    S.REFUNDING: InProgress,
    S.REFUNDED: Refused,
}
VOID_AFTER_SETTLING = {
    S.PENDING: InProgress,
    S.PROCESSING: InProgress,
    S.COMPLETED: Refused,
    S.FAILED: Answer,
    S.REFUNDING: InProgress,
    S.REFUNDED: Refused,
}


@pytest.mark.parametrize("status", list(S))
def test_a_charge_answers_each_status(status: PaymentStatus) -> None:
    outcome = charge_answer(payment(status))
    assert type(outcome) is CHARGE[status]
    assert outcome.payment == payment(status)  # decisions carry the payment, unchanged


@pytest.mark.parametrize("status", list(S))
def test_a_refund_that_could_not_claim_answers_each_status(status: PaymentStatus) -> None:
    outcome = refund_answer(payment(status))
    assert type(outcome) is REFUND[status]
    if isinstance(outcome, Refused):
        assert outcome.detail == (
            f"Only a completed payment can be refunded; this one is {status.value}."
        )


@pytest.mark.parametrize("status", list(S))
def test_a_void_takes_each_status_to_its_next_step(status: PaymentStatus) -> None:
    assert type(void_next(payment(status))) is VOID[status]


@pytest.mark.parametrize("status", list(S))
def test_after_settling_a_void_never_asks_for_another_step(status: PaymentStatus) -> None:
    assert type(void_answer(payment(status))) is VOID_AFTER_SETTLING[status]


def test_the_refusals_say_why() -> None:
    refunded = charge_answer(payment(S.REFUNDED))
    assert isinstance(refunded, Refused)
    assert refunded.detail == "The payment was refunded; it cannot be processed again."
    completed = void_next(payment(S.COMPLETED))
    assert isinstance(completed, Refused)
    assert completed.detail == "A completed payment cannot be voided."


def test_every_decision_covers_every_status() -> None:
    for table in (CHARGE, REFUND, VOID, VOID_AFTER_SETTLING):
        assert set(table) == set(S)


# --- the edges ----------------------------------------------------------------------------------

ALLOWED = {
    (S.PENDING, S.PROCESSING),  # claim
    (S.PENDING, S.FAILED),  # void
    (S.PROCESSING, S.PROCESSING),  # reclaim after the lease expired
    (S.PROCESSING, S.COMPLETED),
    (S.PROCESSING, S.FAILED),
    (S.COMPLETED, S.REFUNDING),
    (S.REFUNDING, S.REFUNDING),
    (S.REFUNDING, S.REFUNDED),
    (S.REFUNDING, S.COMPLETED),  # the provider refused the refund
}


@pytest.mark.parametrize("source", list(S))
@pytest.mark.parametrize("target", list(S))
def test_each_edge_is_allowed_or_not(source: PaymentStatus, target: PaymentStatus) -> None:
    assert may_move(source, target) is ((source, target) in ALLOWED)


def test_settled_payments_never_move_and_every_status_is_reachable() -> None:
    assert EDGES[S.FAILED] == EDGES[S.REFUNDED] == frozenset()
    reached = {S.PENDING} | {target for targets in EDGES.values() for target in targets}
    assert reached == set(S)


def test_settling_follows_an_edge() -> None:
    for approved in (True, False):
        assert may_move(S.PROCESSING, charge_settles_to(approved=approved))
        assert may_move(S.REFUNDING, refund_settles_to(approved=approved))
    assert charge_settles_to(approved=False) is S.FAILED
    assert refund_settles_to(approved=False) is S.COMPLETED


# --- the statuses, declared once ----------------------------------------------------------------


def test_sql_literals_come_from_the_enum_in_its_order() -> None:
    assert sql_in(frozenset({S.REFUNDED, S.PENDING})) == "('pending', 'refunded')"
    assert sql_in(lifecycle.EVENTED) == "('completed', 'failed', 'refunded')"


def test_the_schema_and_the_table_state_the_same_statuses() -> None:
    assert set(typing.get_args(schemas.PaymentStatus)) == {s.value for s in S}
    (check,) = [c for c in tables.payments.constraints if c.name == "payments_status_check"]
    assert str(check.sqltext) == f"status IN {sql_in(tuple(S))}"  # type: ignore[attr-defined]


def test_a_payment_is_frozen_and_read_from_a_record() -> None:
    row = {
        field.name: getattr(payment(S.PENDING), field.name) for field in dataclasses.fields(Payment)
    }
    read = Payment.from_record({**row, "status": "pending", "total": 12})  # extra columns ignored
    assert read == payment(S.PENDING)
    assert read.status is S.PENDING
    with pytest.raises(dataclasses.FrozenInstanceError):
        read.status = S.FAILED  # type: ignore[misc]
    with pytest.raises(ValueError, match="lost"):
        Payment.from_record({**row, "status": "lost"})
