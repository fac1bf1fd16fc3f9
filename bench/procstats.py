"""CPU seconds and peak memory of processes while a scenario runs (psutil, sampled)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from types import TracebackType

import psutil

STATS_FLUSH_SECONDS = 1.5


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

    def __init__(self, conn_url: str, prefix: str) -> None:
        self.conn_url, self.prefix = conn_url, prefix
        self._start: dict[int, float] = {}
        self._commits = 0
        self.seconds: float | None = None
        self.commits: int | None = None

    def _snapshot(self) -> tuple[list[int], int]:
        """The backends' pids, and the transactions committed in the run's databases."""
        import asyncio

        import asyncpg

        # PostgreSQL backends publish their transaction counts at most once a second (and a
        # second after they go idle): wait that out, so the warm-up's commits are not counted
        # in the run and the run's last second is.
        time.sleep(STATS_FLUSH_SECONDS)

        async def fetch() -> tuple[list[int], int]:
            conn = await asyncpg.connect(self.conn_url)
            try:
                rows = await conn.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname LIKE $1 || '%'", self.prefix
                )
                commits = await conn.fetchval(
                    "SELECT coalesce(sum(xact_commit), 0) FROM pg_stat_database"
                    " WHERE datname LIKE $1 || '%'",
                    self.prefix,
                )
            finally:
                await conn.close()
            return [r["pid"] for r in rows], int(commits)

        return asyncio.run(fetch())

    def __enter__(self) -> BackendCpu:
        self._start = {}
        pids, self._commits = self._snapshot()
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
        # Busy backends publish their counters about every second: approximate, within that.
        time.sleep(1.1)
        pids, commits = self._snapshot()
        self.commits = commits - self._commits
        for pid in pids:
            try:
                total += _cpu(psutil.Process(pid)) - self._start.get(pid, 0.0)
                readable = True
            except psutil.Error:
                continue
        self.seconds = round(total, 2) if readable else None
