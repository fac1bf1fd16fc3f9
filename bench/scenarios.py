"""The scenarios: what each one asks of which service, as wrk jobs."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from bench.platform import ADJECTIVES, CATEGORIES, NOUNS, PASSWORD, Platform
from bench.wrk import Job

# The seed's traffic: mostly catalogue reads, some logins and orders (shares of requests).
MIX = {"product_by_id": 0.75, "product_list": 0.20, "order": 0.04, "login": 0.01}
ALL = (
    "product_by_id",
    "product_by_id_nocache",
    "product_by_id_gateway",
    "product_list",
    "product_list_nocache",
    "login",
    "order",
    "flash_sale",
    "cart",
    "search",
    "search_nocache",
    "mixed",
    "mixed_traced",  # the mix again with tracing on at 10% (bench/traced.py), last
)
FLASH_PRODUCT = 1  # every flash-sale order is for this product
FLASH_STOCK = 10_000_000  # its stock for the run: the sale never sells out
CART_LINES = 3  # a cart scenario's order: three lines of three random products, one payment
# order.lua's options for each scenario that places orders.
ORDER_KINDS: dict[str, dict[str, str]] = {
    "order": {},
    "flash_sale": {"product": str(FLASH_PRODUCT)},
    "cart": {"lines": str(CART_LINES)},
}
ORDERS = tuple(ORDER_KINDS)  # the scenarios that place orders
# The scenarios measured through the Envoy gateway (the rest go to the service directly):
# the gateway's cost per request is product_by_id_gateway against product_by_id.
VIA_GATEWAY = "_gateway"
# The same catalogue reads against a second product process with the catalogue cache off.
NO_CACHE = "_nocache"
# The scenarios measured on a warm catalogue cache (bench.runner.warm_cache walks it first).
CACHED_READS = ("product_by_id", "product_list", "mixed")


@dataclass
class Options:
    duration: float
    connections: int  # per closed-loop read scenario
    order_connections: int
    login_connections: int
    traced_rounds: int = 5  # mixed_traced: rounds of an untraced and a traced step


SEARCH_QUERIES = 2_000  # distinct search requests in a run's query file


def _typo(word: str, rng: random.Random) -> str:
    """``word`` with one letter dropped or two neighbours swapped, as people mistype."""
    i = rng.randrange(1, len(word) - 1)
    if rng.random() < 0.5:
        return word[:i] + word[i + 1 :]
    return word[:i] + word[i + 1] + word[i] + word[i + 2 :]


def search_queries(count: int = SEARCH_QUERIES, *, seed: int = 29) -> list[str]:
    """Realistic search requests against the bench catalogue (bench/platform.py's words), a
    quarter each: one word; two words; a typo in each of two words; a word with a filter
    (in stock under a price, or a category sorted by price)."""
    rng = random.Random(seed)
    paths = []
    for i in range(count):
        adjective, noun = rng.choice(ADJECTIVES), rng.choice(NOUNS)
        kind = i % 4
        params: dict[str, str]
        if kind == 0:
            params = {"q": noun}
        elif kind == 1:
            params = {"q": f"{adjective} {noun}"}
        elif kind == 2:
            params = {"q": f"{_typo(adjective, rng)} {_typo(noun, rng)}"}
        elif rng.random() < 0.5:
            params = {"q": noun, "in_stock": "true", "max_price": str(rng.choice([50, 100, 200]))}
        else:
            category = f"category-{rng.randrange(1, CATEGORIES + 1):02d}"
            params = {"q": noun, "category": category, "sort": "price"}
        paths.append("/api/v1/products?" + urlencode(params))
    return paths


def job(
    name: str,
    platform: Platform,
    tokens_file: Path,
    *,
    connections: int,
    rate: float | None = None,
    via_gateway: bool = False,
) -> Job:
    """The wrk job of one request kind against the service that answers it (or the gateway:
    also when the name ends in ``_gateway``)."""
    if name.endswith(NO_CACHE):
        inner = job(name.removesuffix(NO_CACHE), platform, tokens_file, connections=connections)
        url = platform.url("products_nocache")
        return Job(name, url, inner.script, inner.connections, inner.args, rate)
    if name.endswith(VIA_GATEWAY):
        kind = name.removesuffix(VIA_GATEWAY)
        inner = job(
            kind, platform, tokens_file, connections=connections, rate=rate, via_gateway=True
        )
        return Job(name, inner.url, inner.script, inner.connections, inner.args, inner.rate)
    if name == "product_by_id":
        return Job(
            name,
            platform.url("products", via_gateway=via_gateway),
            "product_by_id.lua",
            connections,
            {"products": str(platform.products)},
            rate,
        )
    if name == "product_list":
        return Job(
            name,
            platform.url("products", via_gateway=via_gateway),
            "product_list.lua",
            connections,
            {"categories": str(CATEGORIES)},
            rate,
        )
    if name == "search":
        queries = platform.workdir / "search-queries.txt"
        if not queries.exists():
            queries.write_text("\n".join(search_queries()) + "\n")
        return Job(
            name,
            platform.url("products", via_gateway=via_gateway),
            "search.lua",
            connections,
            {"queries": str(queries)},
            rate,
        )
    if name == "login":
        return Job(
            name,
            platform.url("users", via_gateway=via_gateway),
            "login.lua",
            connections,
            {"users": str(platform.users), "password": PASSWORD},
            rate,
        )
    if name in ORDER_KINDS:  # all three through order.lua: one product, a flash sale, a cart
        return Job(
            name,
            platform.url("orders", via_gateway=via_gateway),
            "order.lua",
            connections,
            {"products": str(platform.products), "tokens": str(tokens_file), **ORDER_KINDS[name]},
            rate,
        )
    raise ValueError(f"unknown request kind {name}")


def mixed_jobs(
    platform: Platform, tokens_file: Path, rate: float, mix: dict[str, float] | None = None
) -> list[Job]:
    """One paced wrk per request kind, each at its share of ``rate``, all through the gateway
    as clients would send them; enough connections for every job to keep its pace at 100 ms
    per request."""
    jobs = []
    for name, share in (mix or MIX).items():
        if share <= 0:
            continue
        share_rate = rate * share
        connections = min(256, max(2, math.ceil(share_rate * 0.1) + 2))
        jobs.append(
            job(
                name,
                platform,
                tokens_file,
                connections=connections,
                rate=share_rate,
                via_gateway=True,
            )
        )
    return jobs


def mix_capacity_estimate(
    rps: dict[str, float], mix: dict[str, float] | None = None
) -> float | None:
    """The mix's rate if each kind cost what it cost alone: 1 / sum(share / capacity)."""
    shares = {k: v for k, v in (mix or MIX).items() if v > 0}
    if not all(rps.get(name) for name in shares):
        return None
    return 1 / sum(share / rps[name] for name, share in shares.items())
