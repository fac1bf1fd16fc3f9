"""One logging set-up for every service: one JSON object per line, in the architecture's format.

    {"timestamp": "...Z", "level": "INFO", "service": "user-service", "pod": "...",
     "message": "...", "user_id": 123, "request_id": "req-...", "trace_id": "..."}

Standard-library loggers (uvicorn, asyncpg, alembic) go through the same renderer, so every
line of a service has the same shape. Secrets never reach a log: known-sensitive keys are
redacted by a processor, whatever a caller passes.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

from shop.common.context import request_id_var, user_id_var

SENSITIVE_KEYS = frozenset(
    {
        "password",
        "password_hash",
        "token",
        "access_token",
        "refresh_token",
        "authorization",
        "secret",
        "service_token_secret",
        "jwt_private_key",
        "database_url",
        "cookie",
    }
)
REDACTED = "[redacted]"

_static: dict[str, str] = {"service": "shop", "pod": ""}


def _seed_format(_: Any, method: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    message = event.pop("event", "")
    level = event.pop("level", method).upper()
    record: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "level": "WARNING" if level == "WARN" else level,
        "service": _static["service"],
        "pod": _static["pod"],
        "message": message,
        "user_id": event.pop("user_id", None) or user_id_var.get(),
        "request_id": event.pop("request_id", None) or request_id_var.get(),
        "trace_id": event.pop("trace_id", None) or _current_trace_id(),
    }
    event.pop("logger", None)
    event.pop("timestamp", None)
    for key, value in event.items():
        record[key] = REDACTED if key.lower() in SENSITIVE_KEYS else value
    return record


def _current_trace_id() -> str | None:
    try:
        from opentelemetry import trace
    except ImportError:  # tracing is optional
        return None
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def _render(_: Any, __: str, event: Mapping[str, Any]) -> str:
    return orjson.dumps(event, default=str).decode()


def configure_logging(*, service: str, pod: str, level: str = "INFO", json: bool = True) -> None:
    """Configure structlog and the standard library once per process."""
    _static["service"], _static["pod"] = service, pod
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.format_exc_info,
    ]
    renderer: Any = _render if json else structlog.dev.ConsoleRenderer(colors=False)
    final = [_seed_format, renderer] if json else [renderer]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.ExtraAdder()],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # uvicorn's access log duplicates our request log line; its error log is kept.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def get_logger(name: str | None = None) -> Any:
    return structlog.get_logger(name)
