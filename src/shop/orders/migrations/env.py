from alembic import context

from shop.common.migrations import run_env
from shop.orders.tables import metadata

run_env(context, metadata)
