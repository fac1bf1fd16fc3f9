"""The floor of a Python service: Starlette + an asyncpg pool reading one product by id.

No framework validation, no middleware, no logging or metrics: what any Python service on
this stack pays at least. It uses the same pool settings as the services (size 10, the
cheap reset) and freezes its start-up objects, so the ratio to it isolates what the
platform's framework and middleware cost. Run: ``FLOOR_DATABASE_URL=... uvicorn
bench.floor_app:app``.
"""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

QUERY = (
    "SELECT id, name, description, price, stock, category, created_at, updated_at"
    " FROM products WHERE id = $1 AND deleted_at IS NULL"
)


async def _reset(conn: asyncpg.Connection) -> None:
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def product(request: Request) -> Response:
    async with request.app.state.pool.acquire() as conn:
        row = await conn.fetchrow(QUERY, int(request.path_params["product_id"]))
    if row is None:
        return Response(b'{"detail": "not found"}', 404, media_type="application/json")
    body = {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "price": f"{row['price']:.2f}",
        "stock": row["stock"],
        "category": row["category"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }
    return Response(orjson.dumps(body), media_type="application/json")


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(
        os.environ["FLOOR_DATABASE_URL"], min_size=2, max_size=10, reset=_reset
    )
    gc.collect()
    gc.freeze()
    yield
    await app.state.pool.close()


app = Starlette(
    routes=[Route("/api/v1/products/{product_id:int}", product)],
    lifespan=lifespan,
)


# The floor of a cache hit: the same route answering pre-serialised bytes from memory, no
# database at all (``uvicorn bench.floor_app:json_app``). A cached product read can at best
# approach this; the catalogue cache's near layer serves bytes the same way.
_BODIES = [
    orjson.dumps(
        {
            "id": i,
            "name": f"Product {i:05d} oak",
            "description": "A floor item. " * 12,
            "price": "19.99",
            "stock": 5000,
            "category": "category-01",
            "created_at": "2026-12-01T00:00:00+00:00",
            "updated_at": "2026-12-01T00:00:00+00:00",
        }
    )
    for i in range(1, 1001)
]


async def product_json(request: Request) -> Response:
    body = _BODIES[int(request.path_params["product_id"]) % len(_BODIES)]
    return Response(body, media_type="application/json")


json_app = Starlette(routes=[Route("/api/v1/products/{product_id:int}", product_json)])
