"""The one owner of ``Idempotency-Key`` semantics, for every service that takes one.

A request that carries a key (or, for the calls between services, a natural key such as the
order id) is answered at most once:

* same key, same body, the first finished: the first answer again;
* same key, another body: 422 (``code: idempotency_key_reused``);
* same key while the first is still running: 409 with ``Retry-After``
  (``code: request_in_progress``);
* same key, the first died without an answer: taken over once its lease expired, run again.

Running a request again is always safe, because every use case behind a key is idempotent by
its natural key. The record of a key lives where the request's own write is, so claiming it
costs no extra transaction:

* placing an order: the order row (``idempotency_key``, ``request_fingerprint``, its lease;
  its final state is the first answer) — ``shop.orders.service``;
* creating and confirming a payment: the payment row, unique per order id, with the request's
  fields as its fingerprint and ``processing_until`` as its lease — ``shop.payments.service``;
* everything else (refunds, an admin's payment): the ``idempotency_keys`` table below, which
  stores the response itself (``run_idempotent``).

All three use ``ensure_same_request`` and ``in_progress`` from here, so the answers agree.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import orjson
from starlette.responses import Response

from shop.common.db import Database
from shop.common.errors import PROBLEM_CONTENT_TYPE, Conflict, Problem, Unprocessable
from shop.common.responses import json_response
from shop.common.types import IDEMPOTENCY_KEY_MAX, Json

LEASE_SECONDS = 30
WAIT_SECONDS = 10.0

TABLE_DDL = """
CREATE TABLE idempotency_keys (
    scope        text        NOT NULL,
    key          text        NOT NULL,
    fingerprint  text        NOT NULL,
    status_code  integer,
    response     jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    locked_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
)
"""


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status_code: int
    body: Json


def key_reused(detail: str | None = None) -> Unprocessable:
    return Unprocessable(
        detail or "This Idempotency-Key was already used with a different request.",
        extra={"code": "idempotency_key_reused"},
    )


def in_progress(
    detail: str = "A request with this key is still in progress.", **extra: Json
) -> Conflict:
    return Conflict(
        detail, headers={"Retry-After": "1"}, extra={"code": "request_in_progress", **extra}
    )


def ensure_same_request(
    stored_fingerprint: str | None, request_fingerprint: str, *, detail: str | None = None
) -> None:
    """A repeat of a key must repeat its request: 422 otherwise."""
    if stored_fingerprint != request_fingerprint:
        raise key_reused(detail)


def fingerprint(*parts: object) -> str:
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS, default=str)).hexdigest()


async def begin(
    db: Database, *, scope: str, key: str, request_fingerprint: str
) -> StoredResponse | None:
    """Claim the key. None: the caller runs the request. A response: replay it."""
    if not key or len(key) > IDEMPOTENCY_KEY_MAX:
        raise Unprocessable(f"Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_MAX} characters.")
    deadline = asyncio.get_running_loop().time() + WAIT_SECONDS
    delay = 0.02
    while True:
        async with db.acquire() as conn:
            claimed = await conn.fetchval(
                """
                INSERT INTO idempotency_keys (scope, key, fingerprint) VALUES ($1, $2, $3)
                ON CONFLICT (scope, key) DO UPDATE SET locked_at = now()
                    WHERE idempotency_keys.status_code IS NULL
                      AND idempotency_keys.fingerprint = EXCLUDED.fingerprint
                      AND idempotency_keys.locked_at < now() - make_interval(secs => $4)
                RETURNING true
                """,
                scope,
                key,
                request_fingerprint,
                LEASE_SECONDS,
            )
            if claimed:
                return None
            row = await conn.fetchrow(
                "SELECT fingerprint, status_code, response FROM idempotency_keys"
                " WHERE scope = $1 AND key = $2",
                scope,
                key,
            )
        if row is None:
            continue  # released between our two statements: claim again
        ensure_same_request(row["fingerprint"], request_fingerprint)
        if row["status_code"] is not None:
            return StoredResponse(row["status_code"], orjson.loads(row["response"]))
        if asyncio.get_running_loop().time() >= deadline:
            raise in_progress()
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.5)


async def complete(db: Database, *, scope: str, key: str, status_code: int, body: Json) -> None:
    async with db.acquire() as conn:
        await conn.execute(
            "UPDATE idempotency_keys SET status_code = $3, response = $4::jsonb"
            " WHERE scope = $1 AND key = $2",
            scope,
            key,
            status_code,
            orjson.dumps(body).decode(),
        )


async def release(db: Database, *, scope: str, key: str) -> None:
    """Forget an unfinished key (the request failed transiently), so a retry runs it again."""
    async with db.acquire() as conn:
        await conn.execute(
            "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND status_code IS NULL",
            scope,
            key,
        )


async def run_idempotent(
    db: Database,
    *,
    key: str | None,
    scope: str,
    request_fingerprint: str,
    handler: Callable[[], Awaitable[tuple[int, Json]]],
) -> Response:
    """Answer a request at most once per key: run ``handler`` or replay its stored answer.

    Client errors (4xx problems) are stored and replayed like successes; a 5xx or an
    unexpected error releases the key so the client's retry runs the request again.
    """
    if key is None:
        status, body = await handler()
        return json_response(body, status)
    stored = await begin(db, scope=scope, key=key, request_fingerprint=request_fingerprint)
    if stored is not None:
        media = PROBLEM_CONTENT_TYPE if stored.status_code >= 400 else "application/json"
        return json_response(
            stored.body,
            stored.status_code,
            media_type=media,
            headers={"Idempotent-Replayed": "true"},
        )
    try:
        status, body = await handler()
    except Problem as problem:
        if problem.status >= 500:
            await release(db, scope=scope, key=key)
        else:
            await complete(
                db, scope=scope, key=key, status_code=problem.status, body=problem.to_dict()
            )
        raise
    except BaseException:
        await release(db, scope=scope, key=key)
        raise
    await complete(db, scope=scope, key=key, status_code=status, body=body)
    return json_response(body, status)
