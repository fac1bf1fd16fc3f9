"""A payment's lifecycle: its states, the edges between them, and the decisions the use cases
take from a payment as recorded. Pure: no database, no HTTP (see tests/unit/test_lifecycle.py).

    create ──> PENDING ──claim──> PROCESSING ──provider approves──> COMPLETED
                  │                 │   │                              │
                  │ void            │   └──provider declines──> FAILED │ claim refund
                  ▼                 │                                  ▼
                FAILED              └─lease expired: claimed again   REFUNDING ─approves─> REFUNDED
                                                                       │
                                                     provider refuses: COMPLETED again

``PROCESSING`` and ``REFUNDING`` are claims: committed with a lease before the provider is
asked and settled after, so no lock is held while it answers; a claim whose lease expired may be
taken again (``shop.payments.service``). ``EDGES`` is the diagram as data: each conditional
UPDATE of the repository (``shop.payments.db``) is one of its edges, and the unit test checks
every pair of statuses against it and that settling a claim follows one.

The decisions answer "what now?" for a payment a call could not claim: ``charge_answer`` (a
create-and-confirm or a process), ``refund_answer`` and ``void_next``. Each returns an outcome;
the service turns it into the HTTP answer (200, 402, 409 with or without Retry-After).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any


class PaymentStatus(StrEnum):
    PENDING = "pending"  # created, not charged
    PROCESSING = "processing"  # claimed: the provider is being asked to charge it
    COMPLETED = "completed"
    FAILED = "failed"  # declined, or voided before any charge
    REFUNDING = "refunding"  # claimed: the provider is being asked to refund it
    REFUNDED = "refunded"


S = PaymentStatus

EDGES: Mapping[PaymentStatus, frozenset[PaymentStatus]] = {
    S.PENDING: frozenset({S.PROCESSING, S.FAILED}),  # claim to charge; void
    S.PROCESSING: frozenset({S.PROCESSING, S.COMPLETED, S.FAILED}),  # reclaim; settle
    S.COMPLETED: frozenset({S.REFUNDING}),
    S.REFUNDING: frozenset({S.REFUNDING, S.REFUNDED, S.COMPLETED}),  # reclaim; settle; refused
    S.FAILED: frozenset(),
    S.REFUNDED: frozenset(),
}
CLAIMS = (S.PROCESSING, S.REFUNDING)  # held under a lease while the provider answers
EVENTED = (S.COMPLETED, S.FAILED, S.REFUNDED)  # entering one writes shop.payment.<status>


def sql_in(statuses: tuple[PaymentStatus, ...] | frozenset[PaymentStatus]) -> str:
    """``('a', 'b')`` for SQL, in declaration order: literals come from the enum only."""
    return "(" + ", ".join(f"'{s.value}'" for s in S if s in statuses) + ")"


def may_move(source: PaymentStatus, target: PaymentStatus) -> bool:
    return target in EDGES[source]


@dataclass(frozen=True, slots=True)
class Payment:
    id: int
    payment_id: str
    order_id: int
    user_id: int
    amount: Decimal
    currency: str
    status: PaymentStatus
    payment_method: str
    transaction_id: str | None
    failure_reason: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_record(cls, row: Mapping[str, Any]) -> Payment:
        return cls(
            id=row["id"],
            payment_id=row["payment_id"],
            order_id=row["order_id"],
            user_id=row["user_id"],
            amount=row["amount"],
            currency=row["currency"],
            status=PaymentStatus(row["status"]),
            payment_method=row["payment_method"],
            transaction_id=row["transaction_id"],
            failure_reason=row["failure_reason"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


# --- outcomes of the decisions ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Answer:
    """Answer with the payment as it is (200)."""

    payment: Payment


@dataclass(frozen=True, slots=True)
class Declined:
    """402: the charge was declined (or the payment voided, which is never charged)."""

    payment: Payment


@dataclass(frozen=True, slots=True)
class InProgress:
    """409 with Retry-After: a claim on it is live; ask again shortly."""

    payment: Payment


@dataclass(frozen=True, slots=True)
class Refused:
    """409 ``invalid_state``: the payment's status does not allow the call."""

    payment: Payment
    detail: str


@dataclass(frozen=True, slots=True)
class Void:
    """Void it: pending, never charged."""

    payment: Payment


@dataclass(frozen=True, slots=True)
class SettleFirst:
    """A charge was claimed and abandoned: ask the provider (by the payment id, idempotent)
    before anything else, since the money may have moved."""

    payment: Payment


Outcome = Answer | Declined | InProgress | Refused


def charge_answer(payment: Payment) -> Outcome:
    """What a charge (create-and-confirm, process) answers for a payment it did not claim, or
    after it settled the claim."""
    match payment.status:
        case S.COMPLETED | S.REFUNDING | S.PENDING:
            # Charged (a refund under way does not undo that answer); a pending one is only
            # seen when a create without confirm is repeated, and is answered as it is.
            return Answer(payment)
        case S.FAILED:
            return Declined(payment)
        case S.PROCESSING:
            return InProgress(payment)
        case S.REFUNDED:
            return Refused(payment, "The payment was refunded; it cannot be processed again.")


def refund_answer(payment: Payment) -> InProgress | Refused:
    """What a refund answers for a payment it could not claim (not completed, or refunding
    under a live lease)."""
    if payment.status is S.REFUNDING:
        return InProgress(payment)
    return Refused(
        payment, f"Only a completed payment can be refunded; this one is {payment.status}."
    )


def void_next(payment: Payment) -> Void | SettleFirst | Answer | InProgress | Refused:
    """What voiding a payment (an order given up) does next."""
    match payment.status:
        case S.PENDING:
            return Void(payment)
        case S.PROCESSING:
            return SettleFirst(payment)  # claimed again only if its lease expired
        case S.FAILED:
            return Answer(payment)  # voided or declined already: nothing was charged
        case S.REFUNDING:
            return InProgress(payment)
        case S.COMPLETED | S.REFUNDED:
            return Refused(payment, f"A {payment.status} payment cannot be voided.")


def void_answer(payment: Payment) -> Outcome:
    """What a void answers once it has settled an abandoned charge: the payment if it failed,
    409 otherwise (a claim that is not ours yet counts as in progress)."""
    outcome = void_next(payment)
    if isinstance(outcome, Void | SettleFirst):
        return InProgress(payment)
    return outcome


def charge_settles_to(*, approved: bool) -> PaymentStatus:
    return S.COMPLETED if approved else S.FAILED


def refund_settles_to(*, approved: bool) -> PaymentStatus:
    return S.REFUNDED if approved else S.COMPLETED
