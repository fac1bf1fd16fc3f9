"""Recovery on its own (``shop recover``): the pass the order service runs in the background."""

from __future__ import annotations

from shop.common.db import Database
from shop.orders.app import build_saga
from shop.orders.settings import OrdersSettings


async def recover_once(settings: OrdersSettings | None = None) -> dict[str, int]:
    settings = settings or OrdersSettings()
    db = Database(settings.database_url.get_secret_value(), min_size=1, max_size=2)
    await db.connect()
    saga, clients = build_saga(settings, db)
    try:
        return await saga.recover(limit=1000)
    finally:
        for client in clients:
            await client.aclose()
        await db.close()
