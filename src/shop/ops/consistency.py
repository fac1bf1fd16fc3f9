"""Cross-database invariants of orders, reservations and payments (``shop check-consistency``).

Reads the three databases and reports every finished order whose reservation, payment and
status disagree: a paid order holds every one of its lines, at its quantity, and one completed
payment of its total (the sum of its lines); a failed or cancelled one holds none and was not
charged. Unfinished (pending) orders are counted, not judged: recovery owns them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

import asyncpg

PAID = ("paid", "shipped", "delivered")


@dataclass
class Report:
    orders: int = 0
    pending: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_order(
    order: asyncpg.Record, reservation: asyncpg.Record | None, payment: asyncpg.Record | None
) -> list[str]:
    oid, status = order["id"], order["status"]
    found: list[str] = []
    reserved = reservation is not None and reservation["status"] == "reserved"
    if status in PAID:
        if payment is None or payment["status"] != "completed":
            found.append(
                f"order {oid} is {status} but its payment is "
                f"{payment['status'] if payment else 'missing'}"
            )
        elif Decimal(payment["amount"]) != Decimal(order["total_price"]):
            found.append(f"order {oid} total {order['total_price']} != paid {payment['amount']}")
        lines = sorted(zip(order["product_ids"], order["quantities"], strict=True))
        if reservation is None or not reserved or sorted(reservation["lines"]) != lines:
            found.append(f"order {oid} is {status} but its stock is not reserved line by line")
        if order["lines_total"] is not None and Decimal(order["lines_total"]) != Decimal(
            order["total_price"]
        ):
            found.append(f"order {oid} total {order['total_price']} != its lines'")
    elif status in ("failed", "cancelled"):
        if payment is not None and payment["status"] == "completed":
            found.append(f"order {oid} is {status} but its payment was charged, not refunded")
        if reserved:
            found.append(f"order {oid} is {status} but still holds its stock")
    return found


async def check(orders_url: str, products_url: str, payments_url: str) -> Report:
    conns = [await asyncpg.connect(u) for u in (orders_url, products_url, payments_url)]
    try:
        orders = await conns[0].fetch(
            "SELECT o.id, o.status, o.total_price, o.payment_id,"
            " array_agg(l.product_id ORDER BY l.position) AS product_ids,"
            " array_agg(l.quantity ORDER BY l.position) AS quantities,"
            " sum(l.unit_price * l.quantity) AS lines_total"
            " FROM orders o JOIN order_lines l ON l.order_id = o.id GROUP BY o.id"
        )
        reservations = {
            r["order_id"]: {
                "status": r["status"],
                "lines": [tuple(line) for line in zip(r["products"], r["quantities"], strict=True)],
            }
            for r in await conns[1].fetch(
                "SELECT r.order_id, r.status,"
                " coalesce(array_agg(l.product_id) FILTER (WHERE l.product_id IS NOT NULL),"
                " '{}') AS products,"
                " coalesce(array_agg(l.quantity) FILTER (WHERE l.product_id IS NOT NULL),"
                " '{}') AS quantities"
                " FROM reservations r LEFT JOIN reservation_lines l USING (order_id)"
                " GROUP BY r.order_id, r.status"
            )
        }
        payments = {
            p["order_id"]: p
            for p in await conns[2].fetch(
                "SELECT order_id, payment_id, status, amount FROM payments"
            )
        }
        negative = await conns[1].fetchval("SELECT count(*) FROM products WHERE stock < 0")
    finally:
        for conn in conns:
            await conn.close()
    report = Report(orders=len(orders))
    known = set()
    for order in orders:
        known.add(order["id"])
        if order["status"] == "pending":
            report.pending += 1
            continue
        report.problems += _check_order(
            order, reservations.get(order["id"]), payments.get(order["id"])
        )
    for order_id, payment in payments.items():
        if order_id not in known:
            report.problems.append(f"payment {payment['payment_id']} has no order {order_id}")
    for order_id, reservation in reservations.items():
        if order_id not in known and reservation["status"] == "reserved":
            report.problems.append(f"stock reserved for unknown order {order_id}")
    if negative:
        report.problems.append(f"{negative} products have negative stock")
    return report
