"""Use cases of the payment service.

Charging and refunding never hold a row lock or a pooled connection while the provider
answers: a claim commits ``processing`` (or ``refunding``) with a lease, the provider is
called, and the outcome is recorded with a conditional update. A crash in between leaves
``processing`` (``refunding``); once its lease expires, the next call that needs the payment
(create-and-confirm again, process, the order saga's void; a refund again) claims it and asks
the provider again, which is safe because provider calls are idempotent by the payment id
(``shop.payments.provider``). Status changes are single conditional UPDATEs, so concurrent
calls on one payment serialise in PostgreSQL and each sees the truth.

A payment is unique per order id; a create (or create-and-confirm) for an order follows the
``Idempotency-Key`` semantics of ``shop.common.idempotency`` with the order id as the key.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable
from typing import NoReturn

from shop.common.db import Database
from shop.common.errors import Conflict, NotFound, PaymentDeclined, ServiceUnavailable
from shop.common.idempotency import ensure_same_request, fingerprint, in_progress
from shop.common.logging import get_logger
from shop.common.metrics import PAYMENT_AMOUNT, PAYMENTS, REFUNDS
from shop.payments import lifecycle
from shop.payments.db import PaymentRepository
from shop.payments.lifecycle import Payment, PaymentStatus
from shop.payments.provider import PaymentProvider, ProviderResult
from shop.payments.schemas import PaymentCreate, PaymentVoid

log = get_logger("shop.payments")

S = PaymentStatus


def new_payment_id() -> str:
    return f"pay_{secrets.token_urlsafe(18)}"


def _record(payment: Payment) -> None:
    PAYMENTS.labels(payment.status.value, payment.currency).inc()
    PAYMENT_AMOUNT.labels(payment.status.value, payment.currency).inc(float(payment.amount))


def _ensure_same(existing: Payment, payment_in: PaymentCreate | PaymentVoid) -> None:
    ensure_same_request(
        fingerprint(
            existing.user_id, f"{existing.amount:.2f}", existing.currency, existing.payment_method
        ),
        fingerprint(
            payment_in.user_id,
            f"{payment_in.amount:.2f}",
            payment_in.currency,
            payment_in.payment_method,
        ),
        detail=f"Order {existing.order_id} already has a payment with other terms.",
    )


def _raise(outcome: lifecycle.Declined | lifecycle.InProgress | lifecycle.Refused) -> NoReturn:
    """The HTTP answer of a decision that is not the payment itself: 402 or 409."""
    payment = outcome.payment
    match outcome:
        case lifecycle.Declined():
            raise PaymentDeclined(
                f"The payment was declined: {payment.failure_reason}.",
                extra={"payment_id": payment.payment_id, "code": "payment_declined"},
            )
        case lifecycle.InProgress():
            raise in_progress(
                "The provider is being asked to refund this payment."
                if payment.status is S.REFUNDING
                else "The provider is still being asked about this payment.",
                payment_id=payment.payment_id,
                payment_status=payment.status.value,
            )
        case lifecycle.Refused(detail=detail):
            raise Conflict(
                detail,
                extra={
                    "code": "invalid_state",
                    "payment_id": payment.payment_id,
                    "payment_status": payment.status.value,
                },
            )


def _answer(outcome: lifecycle.Outcome) -> Payment:
    if isinstance(outcome, lifecycle.Answer):
        return outcome.payment
    _raise(outcome)


async def _ask_provider(
    db: Database, payment_id: str, answer: Awaitable[ProviderResult]
) -> ProviderResult:
    """The provider's answer to a claimed payment; if none comes, the claim is handed back
    (the payment leaves processing/refunding) and the caller gets a 503 to retry."""
    try:
        return await answer
    except Exception:
        log.exception("the provider did not answer", payment_id=payment_id)
        async with db.acquire() as conn:
            await PaymentRepository(conn).unclaim(payment_id)
        raise ServiceUnavailable("The payment provider did not answer; try again.") from None


async def _reread(payments: PaymentRepository, payment_id: str) -> Payment:
    payment = await payments.get(payment_id)
    if payment is None:
        raise NotFound(f"Payment {payment_id} does not exist.")
    return payment


async def _charge(db: Database, provider: PaymentProvider, claimed: Payment) -> Payment:
    """Ask the provider about a claimed (processing) payment and record its answer."""
    result = await _ask_provider(
        db,
        claimed.payment_id,
        provider.charge(
            payment_id=claimed.payment_id,
            amount=claimed.amount,
            currency=claimed.currency,
            method=claimed.payment_method,
        ),
    )
    async with db.acquire() as conn:
        payments = PaymentRepository(conn)
        settled = await payments.settle(
            claimed.payment_id,
            lifecycle.charge_settles_to(approved=result.approved),
            transaction_id=result.transaction_id,
            reason=None if result.approved else result.reason,
        )
        if settled is None:  # another caller settled it meanwhile: theirs stands
            return await _reread(payments, claimed.payment_id)
    _record(settled)
    return settled


async def create_payment(
    *, db: Database, provider: PaymentProvider, payment_in: PaymentCreate, lease: float
) -> tuple[Payment, bool]:
    """The order's payment, created once; with ``confirm``, charged in the same call.

    Returns the payment and whether this call created it; a declined charge raises 402.
    """
    terms = payment_in.model_dump(exclude={"confirm"})
    async with db.acquire() as conn:
        payments = PaymentRepository(conn)
        if payment_in.confirm:
            payment = await payments.add(
                payment_id=new_payment_id(), status=S.PROCESSING, lease=lease, **terms
            )
        else:
            payment = await payments.add(payment_id=new_payment_id(), **terms)
        created = payment is not None
        if payment is None:
            existing = await payments.by_order(payment_in.order_id)
            assert existing is not None, "a payment conflicts on its order id, never deleted"
            _ensure_same(existing, payment_in)
            if not payment_in.confirm:
                return existing, False
            payment = await payments.claim(existing.payment_id, lease)
            if payment is None:  # not pending, nor abandoned while processing
                now = await _reread(payments, existing.payment_id)
                return _answer(lifecycle.charge_answer(now)), False
    if not payment_in.confirm:
        return payment, True
    return _answer(lifecycle.charge_answer(await _charge(db, provider, payment))), created


async def get_payment(*, db: Database, payment_id: str) -> Payment:
    async with db.acquire() as conn:
        return await _reread(PaymentRepository(conn), payment_id)


async def payment_for_order(*, db: Database, order_id: int) -> Payment:
    async with db.acquire() as conn:
        payment = await PaymentRepository(conn).by_order(order_id)
    if payment is None:
        raise NotFound(f"Order {order_id} has no payment.")
    return payment


async def list_for_user(
    *, db: Database, user_id: int, limit: int, offset: int
) -> tuple[list[Payment], int]:
    async with db.acquire() as conn:
        return await PaymentRepository(conn).page_for_user(user_id, limit=limit, offset=offset)


async def process_payment(
    *, db: Database, provider: PaymentProvider, payment_id: str, lease: float
) -> Payment:
    """pending -> processing -> completed | failed. Again: the outcome it had."""
    async with db.acquire() as conn:
        payments = PaymentRepository(conn)
        claimed = await payments.claim(payment_id, lease)
        if claimed is None:
            return _answer(lifecycle.charge_answer(await _reread(payments, payment_id)))
    return _answer(lifecycle.charge_answer(await _charge(db, provider, claimed)))


async def refund_payment(
    *, db: Database, provider: PaymentProvider, payment_id: str, lease: float
) -> Payment:
    """completed -> refunding -> refunded, once, with the provider asked outside any lock.
    Refunding a refunded payment is 409 (``invalid_state``), like any payment that is not
    completed; one being refunded right now is 409 with ``Retry-After``. A retry that must be
    safe sends an ``Idempotency-Key`` and gets the first answer again."""
    async with db.acquire() as conn:
        payments = PaymentRepository(conn)
        claimed = await payments.claim_refund(payment_id, lease)
        if claimed is None:
            _raise(lifecycle.refund_answer(await _reread(payments, payment_id)))
    assert claimed.transaction_id is not None, "a completed payment has its charge's id"
    result = await _ask_provider(
        db,
        payment_id,
        provider.refund(
            payment_id=payment_id,
            transaction_id=claimed.transaction_id,
            amount=claimed.amount,
            currency=claimed.currency,
        ),
    )
    async with db.acquire() as conn:
        payments = PaymentRepository(conn)
        settled = await payments.settle_refund(
            payment_id, result.transaction_id if result.approved else None
        )
        if settled is None:  # another caller settled it meanwhile: theirs stands
            theirs = await _reread(payments, payment_id)
            if theirs.status is not S.REFUNDED:
                _raise(lifecycle.Refused(theirs, f"The payment is {theirs.status}."))
            return theirs
    if not result.approved:
        raise Conflict(f"The provider refused the refund: {result.reason}.")
    _record(settled)
    REFUNDS.labels(settled.currency).inc()
    return settled


async def void_payment(
    *,
    db: Database,
    provider: PaymentProvider,
    payment: Payment,
    lease: float,
    reason: str = "voided",
) -> Payment:
    """pending -> failed without charging (an abandoned order). A processing payment whose
    lease expired is settled with the provider first; completed or refunded ones: 409."""
    while True:
        match lifecycle.void_next(payment):
            case lifecycle.Void():
                async with db.acquire() as conn:
                    payments = PaymentRepository(conn)
                    voided = await payments.void(payment.payment_id, reason)
                    if voided is not None:
                        _record(voided)
                        return voided
                    payment = await _reread(payments, payment.payment_id)  # changed meanwhile
            case lifecycle.SettleFirst():
                async with db.acquire() as conn:
                    claimed = await PaymentRepository(conn).claim(payment.payment_id, lease)
                if claimed is None:  # its claim is live: someone is asking the provider
                    _raise(lifecycle.InProgress(payment))
                settled = await _charge(db, provider, claimed)
                return _answer(lifecycle.void_answer(settled))
            case outcome:
                return _answer(outcome)


async def void_by_id(
    *, db: Database, provider: PaymentProvider, payment_id: str, lease: float
) -> Payment:
    payment = await get_payment(db=db, payment_id=payment_id)
    return await void_payment(db=db, provider=provider, payment=payment, lease=lease)


async def void_for_order(
    *, db: Database, provider: PaymentProvider, order_id: int, terms: PaymentVoid, lease: float
) -> Payment:
    """Void the order's payment. If it has none, record a voided one (a tombstone, like a
    stock release before its reservation), so a create-and-confirm that arrives late is
    answered 402 instead of charging an order that was given up."""
    async with db.acquire() as conn:
        payments = PaymentRepository(conn)
        payment = await payments.by_order(order_id)
        if payment is None:
            tombstone = await payments.add(
                payment_id=new_payment_id(),
                order_id=order_id,
                status=S.FAILED,
                reason="voided",
                **terms.model_dump(),
            )
            if tombstone is not None:
                return tombstone
            payment = await payments.by_order(order_id)  # a create won the race
            assert payment is not None, "the create that won the race committed it"
    return await void_payment(db=db, provider=provider, payment=payment, lease=lease)
