"""HTTP handlers of the payment service.

Creating, processing and refunding are for the order service and admins: a payment's amount
is the one its order computed, so customers pay by placing orders and read their payments here.
The order saga uses two calls: create-and-confirm (``POST /payments`` with ``confirm``) and
void by order id; both are idempotent by the order id (``shop.common.idempotency``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.datastructures import State
from starlette.responses import Response

from shop.common import fastpath
from shop.common.auth import Principal
from shop.common.db import Database
from shop.common.deps import DbDep, IdempotencyKeyDep, PageDep, PrincipalDep, PrivilegedDep
from shop.common.errors import NotFound, Unprocessable
from shop.common.idempotency import fingerprint, run_idempotent
from shop.common.openapi import Responses, problems
from shop.common.responses import json_response
from shop.common.types import MAX_ID, Json
from shop.common.wire import Wire
from shop.payments import service
from shop.payments.db import PaymentRepository
from shop.payments.lifecycle import Payment
from shop.payments.provider import PaymentProvider
from shop.payments.schemas import (
    ORDER_ID_LIST_DESCRIPTION,
    ORDER_ID_LIST_PATTERN,
    PaymentCreate,
    PaymentPage,
    PaymentProblem,
    PaymentRead,
    PaymentVoid,
)

router = APIRouter(prefix="/api/v1/payments", tags=["payments"])
PaymentId = Annotated[str, Path(min_length=5, max_length=40, pattern=r"^pay_[A-Za-z0-9_-]+$")]
Id = Annotated[int, Path(ge=1, le=MAX_ID)]
NOT_FOUND = problems(404, descriptions={404: "No such payment (or not yours)"})
PRIVILEGED = problems(401, 403, descriptions={403: "Not an admin or a service"})


async def _provider(request: Request) -> PaymentProvider:
    provider: PaymentProvider = request.app.state.provider
    return provider


ProviderDep = Annotated[PaymentProvider, Depends(_provider)]


async def _lease(request: Request) -> float:
    lease: float = request.app.state.settings.processing_lease_seconds
    return lease


LeaseDep = Annotated[float, Depends(_lease)]


def _problem(status: int, description: str) -> Responses:
    return problems(status, model=PaymentProblem, descriptions={status: description})


PAYMENT = Wire(PaymentRead)


def _visible(principal: Principal, payment: Payment) -> Payment:
    if not principal.may_access_user(payment.user_id):
        raise NotFound(f"Payment {payment.payment_id} does not exist.")
    return payment


def _scope(principal: Principal, action: str) -> str:
    who = f"service:{principal.service}" if principal.is_service else f"user:{principal.user_id}"
    return f"{who}:{action}"


async def create_payment(
    *, state: State, principal: Principal, body: PaymentCreate, key: str | None
) -> Response:
    """Create the order's payment; with ``confirm``, charge it too (create and confirm)."""
    lease: float = state.settings.processing_lease_seconds
    return await _create(state.db, state.provider, lease, principal, body, key)


# Both routes of POST /api/v1/payments, from one declaration (fastpath.hot_post): the saga's
# call.
CREATE_PAYMENT = fastpath.hot_post(
    router,
    "",
    name="create_payment",
    body=PaymentCreate,
    use_case=create_payment,
    privileged=True,
    idempotent=True,
    status_code=201,
    response_model=PaymentRead,
    responses={
        200: {
            "description": "The order's existing payment (with confirm: its outcome)",
            "model": PaymentRead,
        },
        **_problem(402, "With confirm: declined (the payment is failed)"),
        **_problem(
            409,
            "With confirm: refunded already, or the provider is still being asked"
            " (payment_status processing, with Retry-After); or the Idempotency-Key's first"
            " request is still running",
        ),
        **_problem(
            422,
            "Invalid body, the order already has a payment with other terms, or an"
            " Idempotency-Key reused with another body",
        ),
        **PRIVILEGED,
    },
)


async def _create(
    db: Database,
    provider: PaymentProvider,
    lease: float,
    principal: Principal,
    payment_in: PaymentCreate,
    key: str | None,
) -> Response:
    if key is None:  # the order id is the key: no separate record to claim
        payment, created = await service.create_payment(
            db=db, provider=provider, payment_in=payment_in, lease=lease
        )
        return json_response(PAYMENT(payment), 201 if created else 200)

    async def handler() -> tuple[int, Json]:
        payment, created = await service.create_payment(
            db=db, provider=provider, payment_in=payment_in, lease=lease
        )
        return (201 if created else 200), PAYMENT(payment)

    return await run_idempotent(
        db,
        key=key,
        scope=_scope(principal, "create"),
        request_fingerprint=fingerprint(payment_in.model_dump(mode="json")),
        handler=handler,
    )


@router.get(
    "",
    response_model=PaymentPage,
    summary="The payments of a batch of orders",
    responses=problems(401),
)
async def payments_of_orders(
    db: DbDep,
    page: PageDep,
    principal: PrincipalDep,
    order_ids: Annotated[
        str,
        Query(
            pattern=ORDER_ID_LIST_PATTERN,
            description=ORDER_ID_LIST_DESCRIPTION,
            examples=["1,2,3"],
        ),
    ],
) -> Response:
    wanted = sorted({int(i) for i in order_ids.split(",")})
    if wanted[-1] > MAX_ID:
        raise Unprocessable(
            "The request is not valid.",
            errors=[{"loc": ["query", "order_ids"], "msg": "out of range"}],
        )
    owner = None if principal.is_privileged else principal.user_id
    async with db.acquire() as conn:
        rows = await PaymentRepository(conn).by_orders(wanted, user_id=owner)
    return page.response([PAYMENT(r) for r in rows], len(rows))


@router.get("/{payment_id}", response_model=PaymentRead, responses={**NOT_FOUND, **problems(401)})
async def get_payment(payment_id: PaymentId, db: DbDep, principal: PrincipalDep) -> Response:
    payment = await service.get_payment(db=db, payment_id=payment_id)
    return json_response(PAYMENT(_visible(principal, payment)))


@router.post(
    "/{payment_id}/process",
    response_model=PaymentRead,
    responses={
        **NOT_FOUND,
        **PRIVILEGED,
        **_problem(402, "Declined (or voided: a voided payment is never charged)"),
        **_problem(409, "Already refunded, or still being processed (with Retry-After)"),
    },
)
async def process_payment(
    payment_id: PaymentId,
    db: DbDep,
    provider: ProviderDep,
    lease: LeaseDep,
    principal: PrivilegedDep,
    key: IdempotencyKeyDep = None,
) -> Response:
    async def handler() -> tuple[int, Json]:
        payment = await service.process_payment(
            db=db, provider=provider, payment_id=payment_id, lease=lease
        )
        return 200, PAYMENT(payment)

    return await run_idempotent(
        db,
        key=key,
        scope=_scope(principal, f"process:{payment_id}"),
        request_fingerprint=fingerprint(payment_id),
        handler=handler,
    )


@router.post(
    "/{payment_id}/refund",
    response_model=PaymentRead,
    responses={
        **NOT_FOUND,
        **PRIVILEGED,
        **_problem(
            409, "Not a completed payment (refunded already, too), or being refunded (Retry-After)"
        ),
    },
)
async def refund_payment(
    payment_id: PaymentId,
    db: DbDep,
    provider: ProviderDep,
    lease: LeaseDep,
    principal: PrivilegedDep,
    key: IdempotencyKeyDep = None,
) -> Response:
    async def handler() -> tuple[int, Json]:
        payment = await service.refund_payment(
            db=db, provider=provider, payment_id=payment_id, lease=lease
        )
        return 200, PAYMENT(payment)

    return await run_idempotent(
        db,
        key=key,
        scope=_scope(principal, f"refund:{payment_id}"),
        request_fingerprint=fingerprint(payment_id),
        handler=handler,
    )


@router.post(
    "/{payment_id}/void",
    response_model=PaymentRead,
    summary="Fail a pending payment without charging it (internal)",
    responses={
        **NOT_FOUND,
        **PRIVILEGED,
        **_problem(409, "Already completed or refunded, or processing"),
    },
)
async def void_payment(
    payment_id: PaymentId, db: DbDep, provider: ProviderDep, lease: LeaseDep, _: PrivilegedDep
) -> Response:
    payment = await service.void_by_id(db=db, provider=provider, payment_id=payment_id, lease=lease)
    return json_response(PAYMENT(payment))


@router.post(
    "/order/{order_id}/void",
    response_model=PaymentRead,
    summary="Void an order's payment, or record it voided if it has none (internal)",
    responses={
        **PRIVILEGED,
        **problems(404, descriptions={404: "No such path (the order id is not a number)"}),
        **_problem(
            409, "Completed or refunded (payment_status says which), or processing (Retry-After)"
        ),
    },
)
async def void_order_payment(
    order_id: Id,
    terms: PaymentVoid,
    db: DbDep,
    provider: ProviderDep,
    lease: LeaseDep,
    _: PrivilegedDep,
) -> Response:
    payment = await service.void_for_order(
        db=db, provider=provider, order_id=order_id, terms=terms, lease=lease
    )
    return json_response(PAYMENT(payment))


@router.get(
    "/user/{user_id}",
    response_model=PaymentPage,
    responses=problems(401, 404, descriptions={404: "Not this caller's user id"}),
)
async def payments_of_user(
    user_id: Id, db: DbDep, page: PageDep, principal: PrincipalDep
) -> Response:
    if not principal.may_access_user(user_id):
        raise NotFound(f"User {user_id} does not exist.")
    rows, total = await service.list_for_user(
        db=db, user_id=user_id, limit=page.limit, offset=page.offset
    )
    return page.response([PAYMENT(r) for r in rows], total)


@router.get(
    "/order/{order_id}",
    response_model=PaymentRead,
    responses=problems(401, 404, descriptions={404: "The order has no payment (or not yours)"}),
)
async def payment_of_order(order_id: Id, db: DbDep, principal: PrincipalDep) -> Response:
    payment = await service.payment_for_order(db=db, order_id=order_id)
    return json_response(PAYMENT(_visible(principal, payment)))


LEAN_ROUTES = [CREATE_PAYMENT]
