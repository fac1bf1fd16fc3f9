"""PostgreSQL's CPU per uncached search over the bench's search mix, for the search statements
of one or more commits, alternated round by round on one database (docs/performance.md,
"Search without ts_rank").

    .venv/bin/python -m bench.search_cpu                          # this checkout, a scratch db
    .venv/bin/python -m bench.search_cpu --commits 59937d9 HEAD   # two commits' statements
    .venv/bin/python -m bench.search_cpu --database URL --generic # also as generic plans

The mix is ``bench.scenarios.search_queries`` (a quarter each: one word, two words, a typo in
each of two words, a word with a filter) as ``ProductRepository.search`` of each commit's
``src/shop/products/db.py`` sends it, on one connection per variant. The figure is the
connection's backend process CPU (user + system, from /proc: the server must run on this
machine) per search, which the other work on a shared machine moves far less than wall time;
the wall-clock mean and the median per kind are printed beside it. Without ``--database``, a
scratch database migrated to this checkout's head with the bench's 100,000 products, dropped
afterwards (an older commit's statements must run on this schema).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg

from bench.platform import ROOT, scratch_catalogue
from bench.scenarios import search_queries
from shop.products.schemas import search_words

KINDS = ("one word", "two words", "typos", "a filter")


def _module(commit: str | None, workdir: Path) -> ModuleType:
    """``shop.products.db`` as of ``commit`` (None: this checkout's), under a name of its own."""
    if commit is None:
        path = ROOT / "src" / "shop" / "products" / "db.py"
    else:
        path = workdir / f"db_{commit.replace('/', '_')}.py"
        source = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{commit}:src/shop/products/db.py"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        path.write_text(source)
    name = f"bench_search_db_{secrets.token_hex(3)}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _queries(db: ModuleType, count: int) -> list[tuple[int, Any]]:
    """The mix's requests as ``db.SearchQuery`` values, each with its kind (KINDS)."""
    out = []
    for i, path in enumerate(search_queries(count)):
        p = {k: v[0] for k, v in parse_qs(urlsplit(path).query).items()}
        out.append(
            (
                i % 4,
                db.SearchQuery(
                    words=search_words(p["q"]),
                    category=p.get("category"),
                    min_price=None,
                    max_price=Decimal(p["max_price"]) if "max_price" in p else None,
                    in_stock=p.get("in_stock") == "true",
                    sort=p.get("sort", "relevance"),
                    limit=20,
                    offset=0,
                ),
            )
        )
    return out


def _backend_cpu(conn: asyncpg.Connection) -> float:
    """Seconds of CPU (user + system) the connection's server process has used."""
    fields = Path(f"/proc/{conn.get_server_pid()}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def measure(
    url: str, variants: dict[str, ModuleType], *, rounds: int, count: int, generic: bool
) -> str:
    plans = dict.fromkeys(variants, False)
    if generic:
        plans |= {f"{name}, generic plans": True for name in variants}
    conns = {
        name: await asyncpg.connect(
            url, server_settings={"plan_cache_mode": "force_generic_plan"} if forced else {}
        )
        for name, forced in plans.items()
    }
    modules = {name: variants[name.removesuffix(", generic plans")] for name in plans}
    mixes = {name: _queries(module, count) for name, module in modules.items()}
    cpu = dict.fromkeys(plans, 0.0)
    wall = dict.fromkeys(plans, 0.0)
    by_kind: dict[str, list[list[float]]] = {name: [[], [], [], []] for name in plans}
    try:
        for round_ in range(rounds + 1):  # round 0 warms the caches and the plans
            for name in plans:
                repo = modules[name].ProductRepository(conns[name])
                cpu0, wall0 = _backend_cpu(conns[name]), time.perf_counter()
                for kind, query in mixes[name]:
                    started = time.perf_counter()
                    await repo.search(query)
                    by_kind[name][kind].append((time.perf_counter() - started) * 1000)
                if round_:
                    cpu[name] += _backend_cpu(conns[name]) - cpu0
                    wall[name] += time.perf_counter() - wall0
    finally:
        for conn in conns.values():
            await conn.close()
    searches = rounds * count
    lines = [f"{searches} searches per variant ({rounds} rounds of {count}), alternated:"]
    for name in plans:
        kinds = ", ".join(
            f"{k} {statistics.median(t):.2f}" for k, t in zip(KINDS, by_kind[name], strict=True)
        )
        lines.append(
            f"  {name}: PostgreSQL CPU {cpu[name] * 1000 / searches:.2f} ms a search;"
            f" wall {wall[name] * 1000 / searches:.2f} ms; median ms by kind: {kinds}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--database", help="a migrated, loaded products database")
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--commits", nargs="+", help="commits whose statements to compare")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--queries", type=int, default=400, help="searches per round")
    parser.add_argument("--generic", action="store_true", help="also as generic plans")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        commits: list[str | None] = args.commits or [None]
        variants = {c or "this checkout": _module(c, Path(workdir)) for c in commits}

        def run(url: str) -> None:
            print(
                asyncio.run(
                    measure(
                        url,
                        variants,
                        rounds=args.rounds,
                        count=args.queries,
                        generic=args.generic,
                    )
                )
            )

        if args.database:
            run(args.database)
            return
        with scratch_catalogue("searchcpu", products=args.products) as url:
            run(url)


if __name__ == "__main__":
    main()
