"""CPU seconds and peak memory of processes while a scenario runs (psutil, sampled)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import psutil

# A backend publishes its counters at most once a second (PGSTAT_MIN_INTERVAL): poll at
# more than that, so two equal readings mean nothing was left to publish.
STATS_POLL_SECONDS = 1.2
STATS_SETTLE_MAX_SECONDS = 8.0
STATS_IDLE_SECONDS = 10.5  # PostgreSQL's PGSTAT_IDLE_INTERVAL (10 s), and a margin


@dataclass
class StatsWait:
    """How long commit counts are given to settle (see BackendCpu._snapshot)."""

    poll: float = STATS_POLL_SECONDS
    settle_max: float = STATS_SETTLE_MAX_SECONDS
    idle: float = STATS_IDLE_SECONDS


STATS_WAIT = StatsWait()


def quick_counts() -> None:
    """Read the commit counts without waiting for them to settle (``--quick-counts``: the
    machinery's smoke test, tests/bench): a count may then miss the last second's commits,
    so no figure of such a run is one to quote."""
    STATS_WAIT.poll, STATS_WAIT.settle_max, STATS_WAIT.idle = 0.0, 0.0, 0.0


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _cpu(proc: psutil.Process) -> float:
    try:
        t = proc.cpu_times()
        return float(t.user + t.system)
    except psutil.NoSuchProcess:
        return 0.0


@dataclass
class ProcessUsage:
    cpu_seconds: float
    peak_rss_mb: float  # of the largest single process (a worker, with several)
    processes: int


class Sampler:
    """Watches named process trees (a service and its workers) and, optionally, extra pids
    found later (PostgreSQL backends): CPU used between enter and exit, peak RSS."""

    def __init__(self, pids: dict[str, int], interval: float = 0.2) -> None:
        self.pids = pids
        self.interval = interval
        self._start: dict[str, dict[int, float]] = {}
        self._peak: dict[str, float] = dict.fromkeys(pids, 0.0)
        self._seen: dict[str, dict[int, psutil.Process]] = {name: {} for name in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.usage: dict[str, ProcessUsage] = {}

    def _sample(self) -> None:
        for name, pid in self.pids.items():
            for proc in _tree(pid):
                self._seen[name].setdefault(proc.pid, proc)
                try:
                    rss = proc.memory_info().rss / 2**20
                except psutil.NoSuchProcess:
                    continue
                self._peak[name] = max(self._peak[name], rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> Sampler:
        for name, pid in self.pids.items():
            self._start[name] = {p.pid: _cpu(p) for p in _tree(pid)}
        self._sample()
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
        for name in self.pids:
            procs = self._seen[name]
            start = self._start.get(name, {})
            cpu = sum(_cpu(p) - start.get(pid, 0.0) for pid, p in procs.items())
            self.usage[name] = ProcessUsage(round(cpu, 2), round(self._peak[name], 1), len(procs))


class BackendCpu:
    """CPU seconds of the PostgreSQL backends serving this run's databases (a local server:
    their pids are readable; with a remote one this reports nothing), and the transactions
    committed in them."""

    def __init__(
        self,
        conn_url: str,
        prefix: str,
        *,
        exact: bool = False,
        count_rows: tuple[str, str] | None = None,
    ) -> None:
        self.conn_url, self.prefix = conn_url, prefix
        self.exact = exact
        # (database, table): rows added during the run, counted at the same two moments as
        # the commits (the orders placed, in-flight ones included, for commits per order).
        self.count_rows = count_rows
        self._rows = 0
        self.rows_added: int | None = None
        self._opened = 0.0
        self.window_seconds: float | None = None  # between the two counts
        self._start: dict[int, float] = {}
        self._commits: dict[str, int] = {}
        self.seconds: float | None = None
        self.commits: int | None = None
        self.commits_by_database: dict[str, int] | None = None

    def _snapshot(self) -> tuple[list[int], dict[str, int], int]:
        """The backends' pids, and the transactions committed in the run's databases, once the
        count has settled.

        Backends publish their transaction counts to pg_stat_database at most once a second,
        and a backend that just went idle publishes a moment later: a fixed wait could read
        the count with some of the last second's commits still unpublished, or the warm-up's
        last ones arriving after it. The count is read every ``STATS_POLL_SECONDS`` until two
        readings agree (or ``STATS_SETTLE_MAX_SECONDS`` pass: the services' background work
        may commit now and then). A backend that goes idle within a second of its last publish
        keeps the rest for PostgreSQL's PGSTAT_IDLE_INTERVAL (10 s) unless it runs again, so
        two readings can agree with commits still held: ``exact`` waits that out first (the
        order scenarios, whose transactions per order are a target).
        """
        import asyncio

        import asyncpg

        async def fetch() -> tuple[list[int], dict[str, int], int]:
            if self.exact:
                await asyncio.sleep(STATS_WAIT.idle)
            conn = await asyncpg.connect(self.conn_url)
            try:
                commits = await self._commits_now(conn)
                deadline = time.monotonic() + STATS_WAIT.settle_max
                while time.monotonic() < deadline:
                    await asyncio.sleep(STATS_WAIT.poll)
                    again = await self._commits_now(conn)
                    if again == commits:
                        break
                    commits = again
                rows = await conn.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname LIKE $1 || '%'", self.prefix
                )
            finally:
                await conn.close()
            counted = 0
            if self.count_rows is not None:
                database, table = self.count_rows
                other = await asyncpg.connect(self.conn_url, database=self.prefix + database)
                try:
                    counted = int(await other.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608
                finally:
                    await other.close()
            return [r["pid"] for r in rows], commits, counted

        return asyncio.run(fetch())

    async def _commits_now(self, conn: Any) -> dict[str, int]:
        """Transactions committed so far in each of the run's databases (by name, no prefix)."""
        await conn.execute("SELECT pg_stat_clear_snapshot()")  # read the counters afresh
        rows = await conn.fetch(
            "SELECT datname, xact_commit FROM pg_stat_database WHERE datname LIKE $1 || '%'",
            self.prefix,
        )
        return {r["datname"].removeprefix(self.prefix): int(r["xact_commit"]) for r in rows}

    def __enter__(self) -> BackendCpu:
        self._start = {}
        pids, self._commits, self._rows = self._snapshot()
        self._opened = time.monotonic()
        for pid in pids:
            try:
                self._start[pid] = _cpu(psutil.Process(pid))
            except psutil.Error:
                continue
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        total, readable = 0.0, False
        pids, commits, rows = self._snapshot()
        self.window_seconds = time.monotonic() - self._opened
        if self.count_rows is not None:
            self.rows_added = rows - self._rows
        self.commits_by_database = {
            name: count - self._commits.get(name, 0) for name, count in commits.items()
        }
        self.commits = sum(self.commits_by_database.values())
        for pid in pids:
            try:
                total += _cpu(psutil.Process(pid)) - self._start.get(pid, 0.0)
                readable = True
            except psutil.Error:
                continue
        self.seconds = round(total, 2) if readable else None
