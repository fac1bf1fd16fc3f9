from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from shop.common.types import Money, PositiveMoney


class Priced(BaseModel):
    price: PositiveMoney


class Amount(BaseModel):
    amount: Money


@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("9999999999.99"), places=2))
def test_any_cent_amount_round_trips_as_a_two_place_string(value: Decimal) -> None:
    model = Priced(price=str(value))
    dumped = model.model_dump(mode="json")["price"]
    assert Decimal(dumped) == value
    assert len(dumped.split(".")[1]) == 2


@pytest.mark.parametrize("value", ["19.99", 19.99, 19, "19"])
def test_strings_and_numbers_are_accepted(value: object) -> None:
    assert Priced(price=value).price in (Decimal("19.99"), Decimal("19"))


@pytest.mark.parametrize(
    "value",
    [
        "19.999",
        0.1 + 0.2,
        "NaN",
        "Infinity",
        True,
        "1e400",
        "abc",
        "0",
        "-1",
        "10000000000.00",
        None,
        [],
    ],
)
def test_noise_and_nonsense_are_refused(value: object) -> None:
    with pytest.raises(ValidationError):
        Priced(price=value)


def test_serialized_as_a_string_never_a_float() -> None:
    assert Amount(amount="5").model_dump_json() == '{"amount":"5.00"}'
