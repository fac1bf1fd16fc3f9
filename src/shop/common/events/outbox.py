"""The outbox and inbox every service has, and the two ways a change writes its event.

An event is a row of ``outbox`` written by the transaction of the change it describes, so a
rolled-back change has no event and a committed one always has (the relay publishes it later).

* ``with_event(statement, ...)`` wraps a single data-modifying statement into one that also
  inserts its event (a data-modifying CTE): still one statement and one round trip, atomic
  without ``BEGIN``/``COMMIT``. ``data`` is the changed row as JSON (``to_jsonb``); the relay
  renders it into the resource's REST shape, so the request path does no serialising.
* ``record(conn, ...)`` inserts an event with ``data`` given, inside a transaction the caller
  has open (several statements, or data that is not a row, e.g. a user without its hash).

``stream`` names the resource (``product:42``): the relay publishes the events of one stream
in ``id`` order. ``inbox`` holds the event ids a consumer of this database has handled. The
tables' definitions, for Alembic, are in ``shop.common.tables``.
"""

from __future__ import annotations

from typing import Any

import orjson
from opentelemetry import trace


def traceparent() -> str | None:
    """The W3C ``traceparent`` of the current span, if a trace is being recorded."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def with_event(
    statement: str,
    *,
    type_sql: str,
    stream: str,
    traceparent_param: int,
    subject: str = "id::text",
    where: str = "true",
    also: str = "",
    data: str = "to_jsonb(changed)",
) -> str:
    """``statement`` (an INSERT/UPDATE ... RETURNING) plus the insert of its event, one per
    returned row that matches ``where``. ``type_sql`` is a SQL expression over the row (a
    constant like ``'shop.product.created'`` or ``'shop.order.' || status``); the statement
    takes the current ``traceparent()`` as parameter ``$traceparent_param``. ``also`` adds
    statements that follow from the change (CTEs that may read ``changed``), and ``data`` the
    event's data if it is more than the row. It returns the statement's rows, as before."""
    # Every part is a constant of the calling repository, never input: no injection here.
    follows = f" {also}," if also else ""
    return (
        f"WITH changed AS ({statement}),{follows}"  # noqa: S608
        " event AS (INSERT INTO outbox (type, subject, stream, data, traceparent)"
        f" SELECT {type_sql}, {subject}, '{stream}:' || {subject}, {data},"
        f" ${traceparent_param} FROM changed WHERE {where})"
        " SELECT * FROM changed"
    )


async def record(
    conn: Any, *, type: str, subject: str | int, stream: str, data: dict[str, Any]
) -> None:
    """Write an event in the caller's open transaction (``data``: JSON-able, REST shape)."""
    await conn.execute(
        "INSERT INTO outbox (type, subject, stream, data, traceparent)"
        " VALUES ($1, $2, $3, $4::jsonb, $5)",
        type,
        str(subject),
        f"{stream}:{subject}",
        orjson.dumps(data, default=str).decode(),
        traceparent(),
    )
