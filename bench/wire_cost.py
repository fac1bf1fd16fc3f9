"""What a product's row and its response cost to build, in-process (issue 27 part 3).

    .venv/bin/python -m bench.wire_cost [--calls 200000]

Microseconds per call, the best of five rounds (``timeit``): the product row as the repository
builds it (a named tuple) against a frozen slots dataclass of the same fields, and the
response dict as ``Wire(ProductRead)`` compiles it against a hand-written dict literal of the
same fields. docs/performance.md ("One mapper from typed rows to responses") quotes it.
"""

from __future__ import annotations

import argparse
import dataclasses
import timeit
from datetime import UTC, datetime
from decimal import Decimal

from shop.common.wire import Wire
from shop.products.db import Product
from shop.products.schemas import ProductRead

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
ROW = (7, "Oak lamp", "A lamp of oak.", Decimal("19.99"), 12, "lighting", NOW, NOW)

FrozenProduct = dataclasses.make_dataclass(
    "FrozenProduct", Product._fields, frozen=True, slots=True
)


def _literal(p: Product) -> dict[str, object]:
    return {
        "id": p.id,
        "name": p.name,
        "description": p.description,
        "price": f"{p.price:.2f}",
        "stock": p.stock,
        "category": p.category,
        "created_at": p.created_at.isoformat(),
        "updated_at": p.updated_at.isoformat(),
    }


def _us(call: object, calls: int) -> float:
    return min(timeit.repeat(call, number=calls, repeat=5)) / calls * 1e6  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200_000)
    calls = parser.parse_args().calls
    wire = Wire(ProductRead)
    product = Product(*ROW)
    assert wire(product) == _literal(product)  # the same answer, whichever builds it
    print(f"row: named tuple        {_us(lambda: Product(*ROW), calls):6.2f} us")
    print(f"row: frozen dataclass   {_us(lambda: FrozenProduct(*ROW), calls):6.2f} us")
    print(f"response: Wire          {_us(lambda: wire(product), calls):6.2f} us")
    print(f"response: dict literal  {_us(lambda: _literal(product), calls):6.2f} us")


if __name__ == "__main__":
    main()
