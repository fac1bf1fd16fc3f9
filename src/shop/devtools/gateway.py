"""NGINX in front of N replicas per service: the local stand-in for the Kubernetes ingress.

One public port routes ``/api/v1/<service>`` to that service's replicas, like
``deploy/k8s/base/ingress.yaml``; one internal port per service stands in for its ClusterIP
Service, which the order service calls (no rate limit there). Upstream health is passive:
a replica that refuses a connection or answers 502/503/504 is skipped for a few seconds and
the request goes to the next one. NGINX retries a request on another replica only when that
is safe: always when the connection was refused (nothing was sent), and for a failure after
sending only when the method is idempotent, so a POST is never sent twice by the gateway.

Per-client rate limiting (429 problem with ``Retry-After``), an ``X-Request-ID`` on every
request (the client's, or one NGINX makes), JSON access logs, and bounded timeouts.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/bin/nginx")
ROUTES = {
    "users": ["/api/v1/users", "= /.well-known/jwks.json"],
    "products": ["/api/v1/products"],
    "orders": ["/api/v1/orders"],
    "payments": ["/api/v1/payments"],
}
PROBLEM = "https://shop.example.com/problems/"


def find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return next((c for c in NGINX_CANDIDATES if Path(c).exists()), None)


def _problem(status: int, slug: str, title: str, detail: str) -> str:
    body = {"type": PROBLEM + slug, "title": title, "status": status, "detail": detail}
    # NGINX's `return` takes a quoted string: JSON's double quotes go inside single ones.
    return "'" + json.dumps(body, separators=(",", ":")) + "'"


def _problem_location(
    name: str, status: int, slug: str, title: str, detail: str, *, retry_after: int
) -> str:
    """A named location answering a problem+json, for NGINX's own errors."""
    return f"""
        location @{name} {{
            default_type application/problem+json;
            add_header Retry-After {retry_after} always;
            add_header X-Request-ID $shop_request_id always;
            return {status} {_problem(status, slug, title, detail)};
        }}"""


@dataclass
class Gateway:
    state_dir: Path
    port: int
    upstreams: Mapping[str, list[int]]  # service -> replica ports
    internal_ports: Mapping[str, int]  # service -> the port standing in for its Service
    rate: str = "500r/s"  # per client address, NGINX's syntax (r/s or r/m)
    burst: int = 1000
    nginx: str | None = None
    drained: set[int] = field(default_factory=set)  # replica ports taken out of rotation
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.state_dir = self.state_dir.resolve()  # NGINX resolves relative paths its own way

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def internal_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.internal_ports[service]}"

    def render(self) -> str:
        s = self.state_dir
        upstreams = "\n".join(
            f"    upstream {svc} {{\n"
            + "".join(
                f"        server 127.0.0.1:{port} max_fails=1 fail_timeout=1s"
                + (" down" if port in self.drained else "")
                + ";\n"
                for port in ports
            )
            + "    }"
            for svc, ports in self.upstreams.items()
        )
        proxy = """
        proxy_http_version 1.1;
        proxy_set_header Host $host;
        proxy_set_header X-Request-ID $shop_request_id;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_connect_timeout 2s;
        proxy_send_timeout 30s;
        proxy_read_timeout 30s;
        proxy_next_upstream error timeout http_502 http_503 http_504;
        proxy_next_upstream_tries 3;
        proxy_next_upstream_timeout 10s;
        proxy_max_temp_file_size 0;
        proxy_hide_header X-Request-ID;  # the service echoes the same id: send it once
        add_header X-Request-ID $shop_request_id always;"""
        errors = (
            """
        error_page 429 = @too_many_requests;
        error_page 502 503 504 = @unavailable;"""
            + _problem_location(
                "too_many_requests",
                429,
                "rate-limited",
                "Too Many Requests",
                "Too many requests from this client; slow down.",
                retry_after=1,
            )
            + _problem_location(
                "unavailable",
                503,
                "unavailable",
                "Service Unavailable",
                "No replica could answer; try again shortly.",
                retry_after=2,
            )
        )
        public_locations = "".join(
            f"""
        location {route} {{
            limit_req zone=per_client burst={self.burst} nodelay;
            proxy_pass http://{svc};
        }}"""
            for svc, routes in ROUTES.items()
            for route in routes
            if svc in self.upstreams
        )
        internal_servers = "".join(
            f"""
    server {{
        listen 127.0.0.1:{port};
        {proxy.strip()}
        {errors.strip()}
        location / {{
            proxy_pass http://{svc};
        }}
    }}"""
            for svc, port in self.internal_ports.items()
        )
        return f"""# Written by shop (src/shop/devtools/gateway.py); regenerated on every start.
worker_processes 1;
pid {s}/nginx.pid;
error_log {s}/error.log warn;
events {{
    worker_connections 2048;
}}
http {{
    client_body_temp_path {s}/spool/body;
    proxy_temp_path {s}/spool/proxy;
    fastcgi_temp_path {s}/spool/fastcgi;
    uwsgi_temp_path {s}/spool/uwsgi;
    scgi_temp_path {s}/spool/scgi;
    server_tokens off;
    client_max_body_size 1m;
    client_body_timeout 10s;
    client_header_timeout 10s;
    # No keep-alive to clients: a graceful reload (how a replica leaves the rotation) closes
    # the old workers' idle connections, and a client that reuses one just then gets a closed
    # connection instead of an answer. A cloud load balancer in front would keep its own.
    keepalive_timeout 0;

    map $http_x_request_id $shop_request_id {{
        default $http_x_request_id;
        "" $request_id;
    }}
    log_format shop_json escape=json '{{"timestamp":"$time_iso8601","level":"info",'
        '"service":"gateway","message":"$request_method $uri","status":$status,'
        '"request_id":"$shop_request_id","upstream":"$upstream_addr",'
        '"upstream_status":"$upstream_status","duration_s":$request_time}}';
    access_log {s}/access.log shop_json;

    limit_req_zone $binary_remote_addr zone=per_client:10m rate={self.rate};
    limit_req_status 429;

{upstreams}

    server {{
        listen 127.0.0.1:{self.port};
        {proxy.strip()}
        {errors.strip()}
        location = /health {{
            default_type application/json;
            return 200 '{{"status":"ok"}}';
        }}
        location / {{
            default_type application/problem+json;
            return 404 {_problem(404, "not-found", "Not Found", "No such route.")};
        }}{public_locations}
    }}
{internal_servers}
}}
"""

    def start(self, timeout: float = 30.0) -> None:
        nginx = self.nginx or find_nginx()
        if nginx is None:
            raise RuntimeError("nginx is not installed (make tools installs Debian's package)")
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.state_dir / "spool" / sub).mkdir(parents=True, exist_ok=True)
        conf = self._write_config(nginx)
        self.process = subprocess.Popen(
            [nginx, "-p", str(self.state_dir), "-c", str(conf), "-g", "daemon off;"],
            stdout=subprocess.DEVNULL,
            stderr=open(self.state_dir / "nginx.stderr", "ab"),  # noqa: SIM115
        )
        deadline = time.monotonic() + timeout
        while not _accepts(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited; see {self.state_dir / 'error.log'}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"nginx did not listen on {self.port} in {timeout}s")
            time.sleep(0.05)

    def _write_config(self, nginx: str) -> Path:
        conf = self.state_dir / "nginx.conf"
        conf.write_text(self.render())
        check = subprocess.run(
            [nginx, "-t", "-q", "-p", str(self.state_dir), "-c", str(conf)],
            capture_output=True,
            text=True,
            check=False,
        )
        if check.returncode != 0:
            raise RuntimeError(f"nginx rejected {conf}: {check.stderr}")
        return conf

    def set_drained(self, port: int, drained: bool, timeout: float = 30.0) -> None:
        """Take a replica out of rotation (or put it back), as Kubernetes removes a terminating
        pod from its Service's endpoints before the pod stops listening. NGINX reloads
        gracefully: requests in flight finish on the old workers, new ones follow the new
        config. Returns once a new worker is serving."""
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError("the gateway is not running")
        (self.drained.add if drained else self.drained.discard)(port)
        self._write_config(self.nginx or find_nginx() or "nginx")
        before = _children(self.process.pid)
        self.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while not (_children(self.process.pid) - before):
            if time.monotonic() > deadline:
                raise TimeoutError("nginx did not reload")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # SIGTERM: NGINX's fast shutdown
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _children(pid: int) -> set[int]:
    """The PIDs of a process's children (its NGINX workers), from Linux's /proc."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return set()
    return {int(child) for child in text.split()}
