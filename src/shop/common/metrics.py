"""Prometheus metrics: one definition per name, shared by every service (the scrape adds ``job``).

Multi-worker safe: when ``PROMETHEUS_MULTIPROC_DIR`` is set before start-up (uvicorn with
several workers), values go to shared files and ``/metrics`` aggregates them.

With tracing on (``record_trace_exemplars``, called by ``shop.common.tracing``), a request's
latency observation carries the trace id of its sampled server span as an exemplar, so a slow
bucket in Grafana opens its trace in Jaeger. Exemplars exist only in the OpenMetrics format:
``/metrics`` answers in it when the scraper asks (``Accept: application/openmetrics-text``, as
Prometheus does), else in Prometheus' text format. With tracing off the observation costs one
flag test more (docs/observability.md, "Exemplars").
"""

from __future__ import annotations

import functools
import os

from opentelemetry import trace
from opentelemetry.trace import SpanContext
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as _mp
from prometheus_client.openmetrics import exposition as _openmetrics

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1, 1.5, 2.5, 5, 10)

# --- HTTP --------------------------------------------------------------------------------
HTTP_REQUESTS = Counter(
    "http_requests_total", "HTTP requests handled.", ["method", "route", "status_class"]
)
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time to handle an HTTP request.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)
HTTP_IN_PROGRESS = Gauge(
    "http_requests_in_progress",
    "HTTP requests being handled.",
    ["method"],
    multiprocess_mode="livesum",
)
HTTP_EXCEPTIONS = Counter(
    "http_exceptions_total",
    "Unhandled exceptions while handling a request.",
    ["route", "exception"],
)

# --- Database pool -----------------------------------------------------------------------
DB_POOL_SIZE = Gauge("db_pool_size", "Connections open in the pool.", multiprocess_mode="livesum")
DB_POOL_IN_USE = Gauge(
    "db_pool_in_use", "Connections checked out of the pool.", multiprocess_mode="livesum"
)
DB_POOL_MAX = Gauge("db_pool_max", "The pool's maximum size.", multiprocess_mode="livesum")
DB_POOL_ACQUIRE = Histogram(
    "db_pool_acquire_seconds", "Time waiting for a pool connection.", buckets=LATENCY_BUCKETS
)

# --- Outbound calls ----------------------------------------------------------------------
# Requests a lean route answered (shop.common.fastpath), by route template: with the route's
# http_requests_total, the share of the fast path (which tracing must not turn off).
LEAN_REQUESTS = Counter(
    "shop_lean_requests", "Requests answered by a lean route, not FastAPI's.", ["route"]
)
OUTBOUND_REQUESTS = Counter(
    "outbound_requests_total", "Calls to other services.", ["target", "outcome"]
)
OUTBOUND_DURATION = Histogram(
    "outbound_request_duration_seconds",
    "Duration of calls to other services.",
    ["target"],
    buckets=LATENCY_BUCKETS,
)

# --- Business ----------------------------------------------------------------------------
REGISTRATIONS = Counter("shop_user_registrations", "Users registered.")
LOGINS = Counter("shop_user_logins", "Login attempts.", ["outcome"])
ORDERS = Counter("shop_orders", "Orders reaching a final status.", ["status"])
ORDER_AMOUNT = Counter(
    "shop_order_amount", "Money in orders reaching a final status.", ["status", "currency"]
)
PAYMENTS = Counter("shop_payments", "Payments reaching a status.", ["status", "currency"])
PAYMENT_AMOUNT = Counter(
    "shop_payment_amount", "Money in payments reaching a status.", ["status", "currency"]
)
REFUNDS = Counter("shop_refunds", "Payments refunded.", ["currency"])
STOCK_OUTS = Counter("shop_stock_outs", "Reservations refused for insufficient stock.")
SAGA_BACKLOG = Gauge(
    "shop_saga_recovery_backlog",
    "Orders stuck mid-saga, waiting for recovery.",
    multiprocess_mode="max",
)
CATALOGUE_CACHE_HITS = Counter(
    "shop_catalogue_cache_hits", "Catalogue reads answered from the cache.", ["layer"]
)
CATALOGUE_CACHE_MISSES = Counter(
    "shop_catalogue_cache_misses", "Catalogue reads the cache sent to PostgreSQL."
)
CATALOGUE_CACHE_INVALIDATIONS = Counter(
    "shop_catalogue_cache_invalidations", "Catalogue cache invalidations issued.", ["scope"]
)
CATALOGUE_CACHE_ERRORS = Counter(
    "shop_catalogue_cache_errors", "Redis calls of the catalogue cache that failed."
)
SAGA_RECOVERED = Counter("shop_saga_recovered", "Orders finished by recovery.", ["outcome"])


def status_class(status: int) -> str:
    return f"{status // 100}xx"


def render_metrics(accept: str | None = None) -> tuple[bytes, str]:
    """The registry as the scraper asked (its ``Accept`` header): OpenMetrics, which carries
    the exemplars, or Prometheus' text format."""
    registry: CollectorRegistry | None = None
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        _mp.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    if accept and "application/openmetrics-text" in accept:
        payload = _openmetrics.generate_latest(registry or REGISTRY)  # type: ignore[no-untyped-call]
        return payload, _openmetrics.CONTENT_TYPE_LATEST
    return generate_latest(registry or REGISTRY), CONTENT_TYPE_LATEST


# The exemplar's label: Grafana's Prometheus data source links it to Jaeger by this name
# (deploy/monitoring/grafana/provisioning/datasources/prometheus.yml).
TRACE_ID_LABEL = "trace_id"


class _Exemplars:
    """Whether latency observations look for a recording span (set once, when tracing is on)."""

    on = False


def record_trace_exemplars() -> None:
    """From now on, a request observed inside a sampled span carries its trace id."""
    _Exemplars.on = True


def _trace_exemplar(context: SpanContext | None) -> dict[str, str] | None:
    if context is None:
        context = trace.get_current_span().get_span_context()
    if not context.trace_flags.sampled:
        return None
    return {TRACE_ID_LABEL: format(context.trace_id, "032x")}


_UNTIMED_ROUTES = frozenset({"/metrics", "/health/live", "/health/ready"})


@functools.cache
def _duration(method: str, route: str) -> Histogram:
    return HTTP_DURATION.labels(method, route)


@functools.cache
def _requests(method: str, route: str, status: int) -> Counter:
    return HTTP_REQUESTS.labels(method, route, status_class(status))


@functools.cache
def in_progress(method: str) -> Gauge:
    """The in-progress gauge of one method (its child, looked up once)."""
    return HTTP_IN_PROGRESS.labels(method)


def observe_request(
    method: str, route: str, status: int, seconds: float, context: SpanContext | None = None
) -> None:
    """Count and time one HTTP request by its route template, never the raw path (the
    request middleware, ``shop.common.middleware``, calls this once per request, with the
    context of the request's span it has already looked up; None: the current span's).

    Each labelled child is looked up once and kept (prometheus_client's ``labels()`` checks
    and locks on every call: 4 lookups were ~19% of a cached product read's in-process cost,
    docs/performance.md); the keys are the same few the metrics themselves hold: route
    templates, never raw paths."""
    if route not in _UNTIMED_ROUTES:
        if _Exemplars.on:
            _duration(method, route).observe(seconds, _trace_exemplar(context))
        else:
            _duration(method, route).observe(seconds)
    _requests(method, route, status).inc()


# --- events (shop.common.events) -----------------------------------------------------------
OUTBOX_BACKLOG = Gauge(
    "shop_outbox_backlog",
    "Events written but not yet published.",
    ["service"],
    multiprocess_mode="max",
)
OUTBOX_OLDEST_AGE = Gauge(
    "shop_outbox_oldest_unsent_age_seconds",
    "Age of the oldest unpublished event (0 when none).",
    ["service"],
    multiprocess_mode="max",
)
EVENTS_PUBLISHED = Counter("shop_events_published_total", "Events published, confirmed.", ["type"])
EVENTS_CONSUMED = Counter(
    "shop_events_consumed_total",
    "Events a consumer took from its queue, by outcome (handled, duplicate).",
    ["consumer", "outcome"],
)
EVENTS_RETRIED = Counter(
    "shop_events_retried_total", "Events sent back for a later attempt.", ["consumer"]
)
EVENTS_DEAD_LETTERED = Counter(
    "shop_events_dead_lettered_total", "Events moved to a consumer's DLQ.", ["consumer"]
)
EVENTS_INBOX_UP = Gauge(
    "shop_events_inbox_up",
    "1 while a consumer's Redis inbox answers; 0 while it handles events at least once.",
    ["consumer"],
    multiprocess_mode="min",
)
