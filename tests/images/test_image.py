"""The image runs: migrations and every process of the platform (the four services and the
storefront) start from it as the non-root user with a read-only root filesystem against the
host's PostgreSQL, the smoke test passes against the containers, the storefront serves its
pages and static files from the installed package, and SIGTERM stops each one cleanly within
its grace period."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from shop.common.auth import generate_private_key_pem
from shop.common.services import PROCESSES, SERVICES, STOREFRONT
from shop.devtools.processes import free_port, platform_env, storefront_env
from tests.conftest import FAST_SERVICES, ROOT

from .conftest import UID, Container, images, run_args, wait_http

GRACE_SECONDS = 30  # terminationGracePeriodSeconds of every Deployment (deploy/k8s/base)
SECRETS_IN_CONTAINER = "/run/shop-secrets"


@pytest.fixture(scope="module")
def migrated(engine, image_databases, run_id) -> dict[str, str]:
    for svc in SERVICES:
        name = f"shop-test-{run_id}-migrate-{svc}"
        env = {"SHOP_DATABASE_URL": image_databases[svc]}
        done = engine.run(
            *run_args(name, env, {}), "--rm", images.IMAGE, "migrate", svc, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert f"{svc}: migrated" in done.stdout
    return image_databases


@pytest.fixture(scope="module")
def admin_password() -> str:
    return "image-admin-" + secrets.token_urlsafe(8)


@pytest.fixture(scope="module")
def platform(
    engine, migrated, run_id, admin_password, tmp_path_factory
) -> Iterator[dict[str, Container]]:
    """Every process of the platform, one container each, on free ports; the storefront calls
    the four services' containers directly, as it calls their Services in the cluster."""
    secrets_dir = tmp_path_factory.mktemp("image-secrets")
    key = secrets_dir / "jwt-signing.pem"
    key.write_text(generate_private_key_pem())
    secrets_dir.chmod(0o755)  # readable by the container's user, uid 10001
    key.chmod(0o644)
    ports = {name: free_port() for name in PROCESSES}
    token_secret = secrets.token_urlsafe(32)
    envs = platform_env(
        database_urls=migrated,
        ports=ports,
        secrets_dir=Path(SECRETS_IN_CONTAINER),
        admin_password=admin_password,
        service_token_secret=token_secret,
        env="test",
        extra=FAST_SERVICES,
    )
    envs[STOREFRONT] = storefront_env(
        services={svc: f"http://127.0.0.1:{ports[svc]}" for svc in SERVICES},
        port=ports[STOREFRONT],
        shared={"SHOP_ENV": "test", "SHOP_SERVICE_TOKEN_SECRET": token_secret},
    )
    containers: dict[str, Container] = {}
    try:
        for svc in PROCESSES:
            name = f"shop-test-{run_id}-{svc}"
            args = run_args(name, envs[svc], {secrets_dir: SECRETS_IN_CONTAINER})
            engine.run(*args, "--detach", images.IMAGE, "serve", svc)
            containers[svc] = Container(engine, name, ports[svc])
        for svc, container in containers.items():
            wait_http(f"http://127.0.0.1:{ports[svc]}/health/ready", container)
        yield containers
    finally:
        for container in containers.values():
            container.podman("rm", "--force", "--time", "0", container.name, check=False)


def test_every_process_runs_as_its_user_on_a_read_only_root(platform):
    for svc, container in platform.items():
        info = container.inspect()
        assert info["HostConfig"]["ReadonlyRootfs"] is True, svc
        uid = container.podman("exec", container.name, "id", "-u").stdout.strip()
        assert uid == str(UID), svc
        denied = container.podman("exec", container.name, "touch", "/opt/venv/written", check=False)
        assert denied.returncode != 0, svc
        assert "Read-only file system" in denied.stderr, svc


def test_the_image_carries_pg_dump_matching_the_rds_engine(platform):
    container = next(iter(platform.values()))
    out = container.podman(
        "exec", container.name, "/usr/lib/postgresql/15/bin/pg_dump", "--version"
    ).stdout
    assert "(PostgreSQL) 15." in out


def test_smoke_test_passes_against_the_containers(platform, admin_password):
    urls = []
    for svc in SERVICES:
        urls += [f"--{svc}-url", f"http://127.0.0.1:{platform[svc].port}"]
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "smoke_test.py"),
            *urls,
            "--admin-username",
            "admin",
            "--admin-password",
            admin_password,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_storefront_serves_its_pages_and_files_from_the_installed_package(platform):
    storefront = platform[STOREFRONT]
    base = f"http://127.0.0.1:{storefront.port}"
    # The catalogue page: a template rendered with the product service's answer.
    with urllib.request.urlopen(base + "/", timeout=30) as resp:  # noqa: S310 - http only
        assert resp.status == 200
        assert resp.headers["content-type"].startswith("text/html")
        page = resp.read().decode()
    assert "/static/style.css" in page
    with urllib.request.urlopen(base + "/static/style.css", timeout=30) as resp:  # noqa: S310
        assert resp.status == 200
        assert resp.headers["content-type"].startswith("text/css")
    # The published schema ships in the package too (pyproject package-data).
    check = (
        "import pathlib, shop.storefront as s;"
        " d = pathlib.Path(s.__file__).parent;"
        " print((d / 'schema.graphql').read_text().count('type Query'))"
    )
    out = storefront.podman("exec", storefront.name, "python", "-c", check).stdout.strip()
    assert out == "1"


def test_sigterm_stops_each_process_cleanly_within_its_grace_period(platform):
    # Last in this module: it stops the containers.
    for svc, container in platform.items():
        started = time.monotonic()
        container.podman("stop", "--time", str(GRACE_SECONDS), container.name)
        took = time.monotonic() - started
        state = container.inspect()["State"]
        assert state["ExitCode"] == 0, f"{svc} exited {state['ExitCode']}:\n{container.logs()}"
        assert took < GRACE_SECONDS, f"{svc} needed {took:.1f}s: it was killed, not stopped"


def test_the_sbom_lists_the_locked_dependencies_and_the_debian_packages(engine, tmp_path):
    path = images.sbom(engine, out_dir=tmp_path)
    doc = json.loads(path.read_text())
    assert doc["bomFormat"] == "CycloneDX"
    assert doc["metadata"]["component"]["name"] == images.IMAGE
    names = {c["name"]: c.get("version") for c in doc["components"]}
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {p["name"]: p["version"] for p in lock["package"] if "version" in p}
    assert names.get("fastapi") == locked["fastapi"]
    assert names.get("asyncpg") == locked["asyncpg"]
    assert "postgresql-client-15" in names
