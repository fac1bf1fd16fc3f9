"""One benchmark run: baselines, then each scenario against the real platform, then the checks."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import random
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from bench import pgbench, scenarios, traced
from bench.platform import (
    ROOT,
    Platform,
    environment,
    login_tokens,
    mails_received,
    pgbench_database,
)
from bench.procstats import STATS_WAIT, BackendCpu, Sampler
from bench.wrk import Job, JobResult, merge, run_jobs
from shop.devtools.postgres import SERVICE_DATABASES
from shop.devtools.processes import free_port
from shop.products.cache import CatalogueCache

MIX_STEPS = (0.4, 0.5, 0.6, 0.7, 0.85, 1.0, 1.15)
MIX_REFINEMENTS = 2  # bisections between the last held and the first failed rate
MIX_RESOLUTION = 0.1  # ... while they are more than 10% of the held rate apart
LATENCY_AT_HALF_LOAD = ("product_by_id", "order", "flash_sale", "cart", "search_nocache")
P95_TARGET_MS = 100.0


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _local_server(url: str) -> bool:
    host = urlsplit(url).hostname
    return host in (None, "", "127.0.0.1", "localhost", "::1")


def measure(
    jobs: list[Job],
    *,
    duration: float,
    pids: dict[str, int],
    backends: tuple[str, str] | None,
    warmup: float = 0.0,
    exact_commits: bool = False,
    mail_dir: Path | None = None,
) -> dict[str, Any]:
    """Run jobs together; return the merged load figures and each process's CPU and memory
    (``exact_commits``: wait for every backend to publish its commits, see BackendCpu), and
    the mails the SMTP sink received in the window (``mail_dir``: the sink's folder)."""
    if warmup > 0:
        run_jobs(jobs, warmup)
    mails_before = mails_received(mail_dir)
    with ExitStack() as stack:
        sampler = stack.enter_context(Sampler(pids))
        backend = (
            stack.enter_context(
                BackendCpu(
                    *backends,
                    exact=exact_commits,
                    count_rows=(SERVICE_DATABASES["orders"], "orders") if exact_commits else None,
                )
            )
            if backends
            else None
        )
        results, wrk_cpu = run_jobs(jobs, duration)
    # Counted at the two ends of the CPU window (the sampler's), which also holds the
    # commit counts' settling: the mail of the window's last orders is sent, and counted, there.
    mails = mails_received(mail_dir) - mails_before
    summary = merge(results, wrk_cpu)
    summary["jobs"] = by_job(results)
    if mail_dir is not None:
        summary["mails_sent"] = mails
    summary["connections"] = {j.name: j.connections for j in jobs}
    summary["processes"] = {
        name: {
            "cpu_seconds": u.cpu_seconds,
            "peak_rss_mb": u.peak_rss_mb,
            "processes": u.processes,
            "cpu_ms_per_request": (
                round(1000 * u.cpu_seconds / summary["requests"], 3)
                if summary["requests"]
                else None
            ),
        }
        for name, u in sampler.usage.items()
    }
    if backend is not None:
        summary["postgres_cpu_seconds"] = backend.seconds
        summary["postgres_commits"] = backend.commits
        summary["postgres_commits_by_database"] = backend.commits_by_database
        if backend.rows_added is not None:
            summary["orders_placed"] = backend.rows_added
            summary["postgres_window_seconds"] = round(backend.window_seconds or 0.0, 2)
    return summary


def by_job(results: list[JobResult]) -> dict[str, Any]:
    """Each wrk job's own rate, errors and latencies (a mix runs one job per request kind)."""
    return {
        r.name: {
            "rps": r.rps,
            "requests": r.requests,
            "errors": r.errors,
            "latency_ms": r.latency_ms,
        }
        for r in results
    }


@contextmanager
def floor_service(database_url: str, app: str = "bench.floor_app:app") -> Any:
    """bench/floor_app.py under uvicorn, one process, as `shop serve` runs the services
    (``app``: the asyncpg floor, or ``bench.floor_app:json_app``, the no-database floor)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host=127.0.0.1",
            f"--port={port}",
            "--log-level=warning",
            "--no-access-log",
            "--no-server-header",
        ],
        cwd=ROOT,
        env={**os.environ, "FLOOR_DATABASE_URL": database_url},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/v1/products/1", timeout=1):  # noqa: S310
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the floor app did not start") from None
                time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


def warm_cache(platform: Platform, connections: int, *, passes: int = 6) -> None:
    """Walk the whole catalogue once, so the cache-on scenarios measure a warm cache (a shop's
    steady state); the hit ratio each scenario reports says how warm it stayed. A pass is
    bounded in time, so on a crowded machine one may not reach the end: the next pass goes on
    from where it stopped (up to ``passes``). Passes that each started at a random id left gaps:
    with 100,000 products, 8,677 of the 52,812 reads of the fresh clone's product_by_id
    (2026-12-07) went to PostgreSQL, a cold start's misses rather than a warm cache's."""
    start = random.randrange(platform.products)
    walked = 0
    for n in range(1, passes + 1):
        seconds = min(15.0, max(2.0, (platform.products - walked) / 1000))
        _log(f"warming the catalogue cache ({seconds:g} s, pass {n}, {walked} walked)")
        job = Job(
            "warm",
            platform.url("products"),
            "warm_products.lua",
            connections,
            {"products": str(platform.products), "start": str(start + walked)},
        )
        results, _ = run_jobs([job], seconds)
        walked += sum(r.requests for r in results)
        if walked >= platform.products:
            return
    _log(f"warming stopped after {passes} passes: {walked} of {platform.products} products")


def refill_cache(platform: Platform, connections: int) -> None:
    """Drop every product page and list page, through the platform's own invalidation (Redis
    and every replica's near cache), then walk the catalogue: the pages the mix reads are then
    all fresh. Walking alone is not enough before the mix. The single-kind scenarios take about
    as long as a page's TTL (240-300 s), so the pages filled by the first walk were still fresh
    at the second, and they expired during the mix's steps: the mix ran in a wave of expiries
    (a hit ratio of 74% in the fifth round's `make bench`, docs/performance.md) that a shop
    meets once after a cold start, not at every moment. What the mix then leaves out is the
    steady state's expiries, about one refill per page per TTL (37 per second for 10,000
    products)."""
    url = platform.redis_url
    assert url is not None

    async def invalidate_all() -> None:
        cache = CatalogueCache.from_url(url, prefix=platform.catalogue_prefix)
        async with cache.running():
            for product_id in range(1, platform.products + 1):
                await cache.invalidate(product_id)
            await cache.invalidate(None)

    _log(f"invalidating the catalogue's {platform.products} pages and its list pages")
    asyncio.run(invalidate_all())
    warm_cache(platform, connections)


def cache_counts(platform: Platform) -> dict[str, float]:
    """The product service's catalogue-cache counters (hits by layer, misses), from /metrics."""
    counts: dict[str, float] = {}
    try:
        with urllib.request.urlopen(f"{platform.url('products')}/metrics", timeout=5) as r:  # noqa: S310
            text = r.read().decode()
    except OSError:
        return counts
    for line in text.splitlines():
        if line.startswith("shop_catalogue_cache_hits_total{"):
            layer = line.split('layer="', 1)[1].split('"', 1)[0]
            counts[f"hits_{layer}"] = float(line.rsplit(" ", 1)[1])
        elif line.startswith("shop_catalogue_cache_misses_total "):
            counts["misses"] = float(line.rsplit(" ", 1)[1])
    return counts


def cache_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """Hits and misses between two readings, and the hit ratio (None: no cached reads)."""
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
    hits = sum(v for k, v in delta.items() if k.startswith("hits_"))
    total = hits + delta.get("misses", 0.0)
    return {**delta, "hit_ratio": round(hits / total, 4) if total else None}


async def _stock(url: str) -> dict[int, int]:
    conn = await asyncpg.connect(url)
    try:
        return {r["id"]: r["stock"] for r in await conn.fetch("SELECT id, stock FROM products")}
    finally:
        await conn.close()


async def _stock_for_flash_sale(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "UPDATE products SET stock = $2 WHERE id = $1",
            scenarios.FLASH_PRODUCT,
            scenarios.FLASH_STOCK,
        )
    finally:
        await conn.close()


async def _integrity(platform: Platform, stock_before: dict[int, int]) -> dict[str, Any]:
    """No oversell and nothing lost: every unit of stock that left a product is held by a
    reservation of a paid order, no stock is negative, and the three databases agree."""
    from shop.ops.consistency import check

    # Orders still pending when the load stopped are finished by the recovery worker.
    deadline = time.monotonic() + 60
    while True:
        conn = await asyncpg.connect(platform.urls["orders"])
        try:
            pending = await conn.fetchval("SELECT count(*) FROM orders WHERE status = 'pending'")
            by_status = {
                r["status"]: r["n"]
                for r in await conn.fetch(
                    "SELECT status, count(*) AS n FROM orders GROUP BY status"
                )
            }
        finally:
            await conn.close()
        if not pending or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    conn = await asyncpg.connect(platform.urls["products"])
    try:
        stock_after = {
            r["id"]: r["stock"] for r in await conn.fetch("SELECT id, stock FROM products")
        }
        held = {
            r["product_id"]: r["q"]
            for r in await conn.fetch(
                "SELECT product_id, sum(quantity) AS q FROM reservation_lines"
                " JOIN reservations USING (order_id)"
                " WHERE status = 'reserved' GROUP BY product_id"
            )
        }
        reservations = await conn.fetchval(
            "SELECT count(*) FROM reservations WHERE status = 'reserved'"
        )
    finally:
        await conn.close()
    negative = sum(1 for s in stock_after.values() if s < 0)
    mismatched = [
        pid for pid, before in stock_before.items() if before - stock_after[pid] != held.get(pid, 0)
    ]
    report = await check(
        platform.urls["orders"], platform.urls["products"], platform.urls["payments"]
    )
    paid = sum(by_status.get(s, 0) for s in ("paid", "shipped", "delivered"))
    return {
        "orders_by_status": by_status,
        "reserved_reservations": reservations,
        "paid_orders_match_reservations": paid == reservations,
        "negative_stock_products": negative,
        "stock_mismatched_products": len(mismatched),
        "oversold": negative + len(mismatched),
        "consistency_problems": report.problems[:20],
        "consistency_ok": report.ok,
        "ok": report.ok and not negative and not mismatched and paid == reservations,
    }


def run(
    platform: Platform,
    *,
    options: scenarios.Options,
    selected: list[str],
    baselines: bool = True,
    pgbench_scale: int = 10,
    mix_steps: tuple[float, ...] = MIX_STEPS,
    mix: dict[str, float] | None = None,
) -> dict[str, Any]:
    duration = options.duration
    warmup = min(2.0, duration / 5) if duration >= 5 else 0.0
    backends = (
        (platform.server.url, platform.prefix) if _local_server(platform.server.url) else None
    )
    result: dict[str, Any] = {
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "environment": environment(),
        "postgres": platform.server.source,
        "options": {
            "duration_s": duration,
            "connections": options.connections,
            "order_connections": options.order_connections,
            "login_connections": options.login_connections,
            "products": platform.products,
            "users": platform.users,
            "workers": platform.workers,
            "relay": platform.relay,
            "events": platform.events is not None,
            # where the SMTP sink wrote (tmpfs unless --mail-folder; bench/platform.py)
            "mail_folder": None if platform.mail_dir is None else str(platform.mail_dir.parent),
            "mix": mix or scenarios.MIX,
        },
        "baselines": {},
        "scenarios": {},
    }
    workdir = platform.workdir
    tokens_file = workdir / "tokens.txt"
    customers = min(20, platform.users)

    def log_in() -> None:
        # Access tokens live 15 minutes and a whole run takes longer: the mix and every step
        # of the traced mix log in afresh (a 401 is an error, not a cheap request).
        tokens_file.write_text("\n".join(login_tokens(platform, customers)) + "\n")

    if {*scenarios.ORDERS, "mixed", "mixed_traced"} & set(selected):
        _log(f"logging in {customers} customers for the order scenarios")
        log_in()
    pids = platform.pids()
    if baselines:
        _log(f"baseline: raw Starlette + asyncpg floor ({options.connections} connections)")
        with floor_service(platform.urls["products"]) as (url, pid):
            floor_job = Job(
                "floor",
                url,
                "product_by_id.lua",
                options.connections,
                {"products": str(platform.products)},
            )
            result["baselines"]["floor"] = measure(
                [floor_job], duration=duration, pids={"floor": pid}, backends=None, warmup=warmup
            )
        _log(f"baseline: raw Starlette JSON, no database ({options.connections} connections)")
        with floor_service(platform.urls["products"], "bench.floor_app:json_app") as (url, pid):
            json_job = Job(
                "floor_json",
                url,
                "product_by_id.lua",
                options.connections,
                {"products": str(platform.products)},
            )
            result["baselines"]["floor_json"] = measure(
                [json_job],
                duration=duration,
                pids={"floor_json": pid},
                backends=None,
                warmup=warmup,
            )
        _log("baseline: pgbench select-only, 8 clients")
        result["baselines"]["pgbench"] = pgbench.run(
            pgbench_database(platform), duration=duration, clients=8, scale=pgbench_scale
        )
    if "flash_sale" in selected:
        asyncio.run(_stock_for_flash_sale(platform.urls["products"]))
    stock_before = asyncio.run(_stock(platform.urls["products"]))
    closed_loop = {
        "product_by_id": options.connections,
        "product_by_id_nocache": options.connections,
        "product_list_nocache": options.connections,
        "product_by_id_gateway": options.connections,
        "product_list": options.connections,
        "login": options.login_connections,
        "order": options.order_connections,
        "flash_sale": options.order_connections,
        "cart": options.order_connections,
        "search": options.connections,
        "search_nocache": options.connections,
    }
    cached_reads = set(scenarios.CACHED_READS) & set(selected)
    if cached_reads and platform.redis_url:
        warm_cache(platform, options.connections)
    if backends and {*scenarios.ORDERS} & set(selected):
        result["background_commits_per_second"] = background_commits(backends)
    for name in [s for s in selected if s not in ("mixed", "mixed_traced")]:
        _log(f"scenario {name} ({closed_loop[name]} connections, {duration:g} s)")
        jobs = [scenarios.job(name, platform, tokens_file, connections=closed_loop[name])]
        before = cache_counts(platform)
        result["scenarios"][name] = measure(
            jobs,
            duration=duration,
            pids=pids,
            backends=backends,
            warmup=warmup,
            exact_commits=name in scenarios.ORDERS,
            mail_dir=platform.mail_dir,
        )
        result["scenarios"][name]["cache"] = cache_delta(before, cache_counts(platform))
        if name in LATENCY_AT_HALF_LOAD:
            result["scenarios"][name]["at_half_load"] = half_load(
                name, result["scenarios"][name]["rps"], platform, tokens_file, duration, pids
            )
    if "mixed" in selected:
        # The scenarios before it invalidated the page of every product they sold (a few
        # thousand), and the pages of the first walk are near the end of their TTL: refill the
        # catalogue, so the mix starts from pages that are all fresh (see refill_cache).
        if platform.redis_url and set(selected) - {"mixed"}:
            refill_cache(platform, options.connections)
        log_in()
        result["scenarios"]["mixed"] = run_mixed(
            platform, result, tokens_file, options, pids, backends, mix_steps
        )
    if "mixed_traced" in selected:
        # Half the mix's sustained rate (or a modest one without it): both steps must hold it.
        best = (result["scenarios"].get("mixed") or {}).get("highest_sustained_rps")
        rate = max(50.0, round((best or 400.0) * 0.5, -1))
        _log(
            f"scenario mixed_traced at {rate:g} req/s: {options.traced_rounds} rounds of"
            " untraced and tracing on at 10%, alternating"
        )
        result["mixed_traced"] = traced.run_mixed_traced(
            platform,
            tokens_file,
            rate=rate,
            duration=duration,
            measure=measure,
            backends=backends,
            mix=result["options"]["mix"],
            rounds=options.traced_rounds,
            log_in=log_in,
        )
        pids.update(platform.pids())  # the services were restarted
    if {*scenarios.ORDERS, "mixed"} & set(selected):
        _log("checking stock and cross-service consistency")
        result["integrity"] = asyncio.run(_integrity(platform, stock_before))
    return result


def background_commits(backends: tuple[str, str], seconds: float | None = None) -> float:
    """Commits per second in the run's databases with no load at all: the services' own
    periodic work (health checks' pings, recovery's pass), which the order scenarios' windows
    also hold and commits per order should not."""
    if seconds is None:
        seconds = 10.0 if STATS_WAIT.idle else 1.0  # --quick-counts: a second is enough
    _log(f"counting the platform's background commits ({seconds:g} s idle)")
    with BackendCpu(*backends, exact=True) as idle:
        time.sleep(seconds)
    return round((idle.commits or 0) / (idle.window_seconds or seconds), 3)


def half_load(
    name: str,
    saturated_rps: float,
    platform: Platform,
    tokens_file: Path,
    duration: float,
    pids: dict[str, int],
) -> dict[str, Any]:
    """The same requests paced at half the saturated rate: the latency a service shows with
    headroom, which is where a latency target applies (at saturation a closed loop's latency
    is only its connections divided by the rate)."""
    rate = max(1.0, round(saturated_rps / 2, 1))
    connections = min(256, max(2, math.ceil(rate * 0.1) + 2))
    _log(f"scenario {name} paced at {rate:g} req/s (half its saturated rate)")
    job = scenarios.job(name, platform, tokens_file, connections=connections, rate=rate)
    paced = measure([job], duration=duration, pids=pids, backends=None)
    return {
        "target_rps": rate,
        "rps": paced["rps"],
        "latency_ms": paced["latency_ms"],
        "error_count": paced["error_count"],
        "errors": paced["errors"],
    }


def run_mixed(
    platform: Platform,
    result: dict[str, Any],
    tokens_file: Path,
    options: scenarios.Options,
    pids: dict[str, int],
    backends: tuple[str, str] | None,
    mix_steps: tuple[float, ...],
) -> dict[str, Any]:
    """Paced mixed traffic at rising rates; the highest that holds p95 < 100 ms with no
    errors and at least 95% of the asked rate is the sustained rate."""
    mix = result["options"]["mix"]
    alone = {name: s["rps"] for name, s in result["scenarios"].items()}
    estimate = scenarios.mix_capacity_estimate(alone, mix)
    if estimate is None:
        estimate = 1000.0  # the single-kind scenarios were not run: a modest first guess
    steps: list[dict[str, Any]] = []

    def step_at(rate: float, why: str) -> dict[str, Any]:
        _log(f"scenario mixed at {rate:g} req/s ({why})")
        jobs = scenarios.mixed_jobs(platform, tokens_file, rate, mix)
        before = cache_counts(platform)
        step = measure(jobs, duration=options.duration, pids=pids, backends=backends)
        step["cache"] = cache_delta(before, cache_counts(platform))
        step["target_rps"] = rate
        step["sustained"] = (
            step["latency_ms"]["p95"] < P95_TARGET_MS
            and step["error_count"] == 0
            and step["rps"] >= 0.95 * rate
        )
        steps.append(step)
        return step

    best: dict[str, Any] | None = None
    failed: float | None = None  # the lowest rate tried that did not hold
    factors = list(mix_steps)
    while factors:
        factor = factors.pop(0)
        rate = max(10.0, round(estimate * factor, -1))
        step = step_at(rate, f"{factor:g} x the estimate {estimate:.0f}")
        if step["sustained"]:
            best = step
            continue
        failed = rate if failed is None else min(failed, rate)
        if best is not None:
            break  # past the knee: higher rates only queue more
        if len(steps) < 3 and rate > 10:
            factors = [factor / 2]  # not even the first held: look lower
    # Between the last rate that held and the first that did not, halve the gap while it is
    # over MIX_RESOLUTION of the held rate: the figure is the knee, not the step grid's.
    for _ in range(MIX_REFINEMENTS):
        if (
            best is None
            or failed is None
            or failed - best["target_rps"] <= (MIX_RESOLUTION * best["target_rps"])
        ):
            break
        rate = round((best["target_rps"] + failed) / 2, -1)
        step = step_at(rate, f"between {best['target_rps']:g} held and {failed:g} not")
        if step["sustained"]:
            best = step
        else:
            failed = rate
    chosen = best or max(steps, key=lambda s: s["rps"])
    return {
        **chosen,
        "estimate_rps": round(estimate, 1),
        "highest_sustained_rps": best["rps"] if best else None,
        "steps": [
            {
                "target_rps": s["target_rps"],
                "rps": s["rps"],
                "p95_ms": s["latency_ms"]["p95"],
                "p99_ms": s["latency_ms"]["p99"],
                "errors": s["error_count"],
                "sustained": s["sustained"],
            }
            for s in steps
        ],
    }
