"""The platform's processes and their default ports: the one list that ``shop serve``, ``shop
run``, the tests and the image test (tests/images) read. A new service is added here."""

from __future__ import annotations

import os
from pathlib import Path

# Where the local platform keeps its state (databases, secrets, backups): SHOP_STATE_DIR.
STATE_DIR = Path(os.environ.get("SHOP_STATE_DIR", ".shop"))

SERVICES = ("users", "products", "orders", "payments")  # each with its own database
# The backend-for-frontend (GraphQL and the storefront's pages): no database, it calls the four.
STOREFRONT = "storefront"
PROCESSES = (*SERVICES, STOREFRONT)
DEFAULT_PORTS = {"users": 5000, "products": 5001, "orders": 5002, "payments": 5003}
DEFAULT_PORTS[STOREFRONT] = 5004
