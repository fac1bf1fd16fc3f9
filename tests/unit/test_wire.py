"""The one row-to-response mapper (shop.common.wire): each service's response, from its typed
row, is what pydantic makes of that row with the response model, field for field and in the
model's order (datetimes as the contract has them: isoformat, and Z for users)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import orjson
from pydantic import BaseModel

from shop.common.wire import Wire, iso_z
from shop.orders.saga import Order, OrderLine, OrderStatus, SagaStep
from shop.orders.schemas import OrderRead
from shop.payments.lifecycle import Payment, PaymentStatus
from shop.payments.schemas import PaymentRead
from shop.products.db import Category, Product, Reservation, ReservationLine
from shop.products.schemas import CategoryRead, ProductRead, ReservationRead
from shop.users.db import User
from shop.users.schemas import UserRead

AT = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
ON_THE_SECOND = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _pydantic(model: type[BaseModel], row: object) -> object:
    """What the model makes of the row, with timestamps as ``isoformat`` writes them."""
    dumped = model.model_validate(row, from_attributes=True).model_dump(mode="json")
    return orjson.loads(orjson.dumps(dumped).replace(b'Z"', b'+00:00"'))


def _check(model: type[BaseModel], row: object) -> None:
    wire = Wire(model)(row)
    assert list(wire) == list(model.model_fields)
    assert wire == _pydantic(model, row)


def test_product() -> None:
    product = Product(
        id=1,
        name="Keyboard",
        description="",
        price=Decimal("19.90"),
        stock=0,
        category=None,
        created_at=AT,
        updated_at=ON_THE_SECOND,
    )
    _check(ProductRead, product)
    assert Wire(ProductRead)(product) == {
        "id": 1,
        "name": "Keyboard",
        "description": "",
        "price": "19.90",
        "stock": 0,
        "category": None,
        "created_at": AT.isoformat(),
        "updated_at": ON_THE_SECOND.isoformat(),
    }


def test_category_and_reservation() -> None:
    _check(CategoryRead, Category(name="books", count=3))
    line = ReservationLine(product_id=2, name="Pen", quantity=3, unit_price=Decimal("1.50"))
    reservation = Reservation(order_id=7, status="reserved", lines=(line,))
    _check(ReservationRead, reservation)
    assert Wire(ReservationRead)(reservation)["lines"] == [
        {"product_id": 2, "name": "Pen", "quantity": 3, "unit_price": "1.50"}
    ]


def _order(*lines: OrderLine, total: Decimal | None) -> Order:
    return Order(
        id=5,
        user_id=9,
        lines=lines,
        total_price=total,
        currency="USD",
        status=OrderStatus.PAID,
        payment_id="pay_x",
        payment_method="card",
        saga_step=SagaStep.DONE,
        failure_reason=None,
        request_fingerprint="f",
        created_at=AT,
        updated_at=AT,
    )


def test_order_one_line_and_many() -> None:
    priced = OrderLine(product_id=1, quantity=2, name="A", unit_price=Decimal("2.50"))
    never_priced = OrderLine(product_id=2, quantity=1)
    one = _order(priced, total=Decimal("5.00"))
    _check(OrderRead, one)
    wire = Wire(OrderRead)(one)
    assert (wire["product_id"], wire["quantity"], wire["total_price"]) == (1, 2, "5.00")
    assert wire["lines"] == [
        {"product_id": 1, "name": "A", "quantity": 2, "unit_price": "2.50", "line_total": "5.00"}
    ]
    many = _order(priced, never_priced, total=None)
    _check(OrderRead, many)
    assert Wire(OrderRead)(many)["product_id"] is None


def test_payment() -> None:
    payment = Payment(
        id=1,
        payment_id="pay_1",
        order_id=5,
        user_id=9,
        amount=Decimal("5.00"),
        currency="USD",
        status=PaymentStatus.COMPLETED,
        payment_method="card",
        transaction_id=None,
        failure_reason=None,
        created_at=AT,
        updated_at=AT,
    )
    _check(PaymentRead, payment)


def test_user_times_end_in_z_as_pydantic_writes_them() -> None:
    user = User(id=1, username="ann", email="ann@example.com", role="customer", created_at=AT)
    wire = Wire(UserRead, datetimes=iso_z)(user)
    assert wire == UserRead.model_validate(user, from_attributes=True).model_dump(mode="json")
    assert wire["created_at"] == "2026-01-02T03:04:05.678901Z"


def test_the_cost_script_builds_the_same_answer_both_ways(capsys, monkeypatch) -> None:
    """bench.wire_cost (docs/performance.md's figures) compares like with like: it checks the
    compiled encoder's dict against the literal's before it times them."""
    from bench import wire_cost

    monkeypatch.setattr("sys.argv", ["wire_cost", "--calls", "10"])
    wire_cost.main()
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["row", "row", "response", "response"]
