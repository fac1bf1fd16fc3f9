from alembic import context

from shop.common.migrations import run_env
from shop.payments.db import metadata

run_env(context, metadata)
