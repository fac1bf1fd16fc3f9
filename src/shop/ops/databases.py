"""The platform's databases and the server that holds them."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

SERVICE_DATABASES = {
    "users": "userdb",
    "products": "productdb",
    "orders": "orderdb",
    "payments": "paymentdb",
}


@dataclass(frozen=True)
class Server:
    url: str  # the maintenance database's URL
    source: str  # "configured", "local" or "embedded"

    def database_url(self, name: str) -> str:
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path=f"/{name}"))


def database_names(prefix: str = "") -> dict[str, str]:
    return {svc: prefix + db for svc, db in SERVICE_DATABASES.items()}
