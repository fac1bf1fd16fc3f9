"""A local Prometheus (Debian's ``prometheus`` package) scraping the services as processes.

Used by ``shop run --prometheus`` and by the real-Prometheus test. The configuration is
``deploy/monitoring/prometheus/prometheus.local.yml.tmpl`` with its placeholders filled in, and
the rules are ``alerts.yml``: the same files a deployment uses, from this checkout.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from string import Template

ROOT = Path(__file__).resolve().parents[3]
PROMETHEUS_DIR = ROOT / "deploy" / "monitoring" / "prometheus"
CONFIG_TEMPLATE = PROMETHEUS_DIR / "prometheus.local.yml.tmpl"
RULES_FILE = PROMETHEUS_DIR / "alerts.yml"
# The scrape job (the `job` label) of each service.
JOBS = {
    "users": "user-service",
    "products": "product-service",
    "orders": "order-service",
    "payments": "payment-service",
}
GATEWAY_JOB = "gateway"  # Envoy's admin port, /stats/prometheus
_INTERVALS = re.compile(r"^(\s*)(scrape_interval|scrape_timeout|evaluation_interval):.*$", re.M)


def find_prometheus() -> str | None:
    """The prometheus binary, if installed (scripts/install-apt-tools.sh installs it)."""
    return shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )


def render_config(
    targets: Mapping[str, Sequence[str]],
    *,
    rules_file: Path = RULES_FILE,
    interval: str | None = None,
) -> str:
    """The local config template filled in: ``host:port`` targets by job name; ``interval``
    (e.g. "1s") replaces the template's scrape and evaluation intervals."""
    missing = set(JOBS.values()) - set(targets)
    if missing:
        raise ValueError(f"no targets for {sorted(missing)}")
    mapping = {
        f"{job.replace('-', '_').upper()}_TARGETS": ", ".join(targets[job]) for job in JOBS.values()
    }
    # The gateway's job is optional: no target, an empty job (no gateway in that run).
    mapping[f"{GATEWAY_JOB.upper()}_TARGETS"] = ", ".join(targets.get(GATEWAY_JOB, ()))
    mapping["RULES_FILE"] = str(rules_file.resolve())
    # Comment lines (which show placeholders as examples) are copied as they are.
    text = "".join(
        line if line.lstrip().startswith("#") else Template(line).substitute(mapping)
        for line in CONFIG_TEMPLATE.read_text(encoding="utf-8").splitlines(keepends=True)
    )
    if interval is not None:
        text, count = _INTERVALS.subn(lambda m: f"{m[1]}{m[2]}: {interval}", text)
        if count != 3:
            raise ValueError(f"expected 3 interval settings in {CONFIG_TEMPLATE}, found {count}")
    return text


@dataclass
class PrometheusProcess:
    """One Prometheus server on loopback with its own config file and storage folder."""

    binary: str
    config: Path
    data_dir: Path
    port: int
    log_path: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.data_dir}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    # Keeps the latency buckets' exemplars (trace ids), which Grafana links to
                    # Jaeger; Prometheus 2.x stores none without it (docs/observability.md).
                    "--enable-feature=exemplar-storage",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:  # noqa: S310
                return bool(r.status == 200)
        except OSError:
            return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited; log tail:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus not ready after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.1)

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def local_prometheus(
    binary: str,
    state_dir: Path,
    ports: Mapping[str, int],
    *,
    port: int = 9090,
    interval: str | None = None,
    gateway_admin_port: int | None = None,
) -> PrometheusProcess:
    """A Prometheus for services listening on 127.0.0.1 at ``ports`` (by service name) and,
    if given, the gateway's admin port; its config, data and log under ``state_dir`` (not
    started)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    config = state_dir / "prometheus.yml"
    targets = {JOBS[name]: [f"127.0.0.1:{port_}"] for name, port_ in ports.items()}
    if gateway_admin_port is not None:
        targets[GATEWAY_JOB] = [f"127.0.0.1:{gateway_admin_port}"]
    config.write_text(render_config(targets, interval=interval), encoding="utf-8")
    return PrometheusProcess(
        binary, config, state_dir / "data", port, log_path=state_dir / "prometheus.log"
    )
