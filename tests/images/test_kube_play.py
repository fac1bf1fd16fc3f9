"""The Deployments run: ``podman kube play --network host`` starts the rendered Deployments of
the dev overlay with the built image and a local Secret in place of Vault Agent's files, and
each container answers its manifest's probe paths on its manifest's port, as the user and with
the read-only root filesystem the manifest sets; the migration initContainers run first; the
storefront's Deployment (no database) serves its catalogue from the product service's pod.

What podman does not cover (docs/deploy.md): Services, HPAs, PDBs, NetworkPolicies, RBAC and
the ServiceMonitors are ignored; readiness probes are not evaluated (this test calls them);
Vault Agent injection does not exist (the Secret stands in for its rendered files); the ports
are moved to free ones (the host network is shared), consistently in containerPort, SHOP_PORT
and the peers' URLs, after checking they agree in the manifest.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import re
import secrets
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from shop.common.auth import generate_private_key_pem
from shop.devtools.postgres import SERVICE_DATABASES, Server, create_databases, drop_databases
from shop.devtools.processes import free_port
from tests.conftest import ROOT
from tests.deploy.conftest import render

from .conftest import UID, images

SECRETS_MOUNT = "/vault/secrets"  # where Vault Agent renders them; SHOP_SECRETS_DIR says so
SERVICE_OF = {  # Deployment -> the service whose database it uses
    "user-service": "users",
    "product-service": "products",
    "order-service": "orders",
    "payment-service": "payments",
}


def _secret_names(deployment: dict[str, Any]) -> list[str]:
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    prefix = "vault.hashicorp.com/agent-inject-secret-"
    return sorted(k.removeprefix(prefix) for k in annotations if k.startswith(prefix))


def _app(pod: dict[str, Any]) -> dict[str, Any]:
    """The pod's serving container (a service pod also runs the outbox relay sidecar)."""
    (app,) = (c for c in pod["containers"] if c["name"] == "app")
    return app


def local_manifests(
    docs: list[dict[str, Any]], run_id: str, database_urls: dict[str, str]
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The Deployments, their ConfigMaps and one Secret each, made runnable on this host.

    Returns the documents and, per Deployment, what the test checks: its pod name, its port
    and the paths of its probes."""
    # The platform's own pods (the shop image's "app" container); the tracing component's
    # Collector and Jaeger run images of their own and are checked offline (tests/deploy).
    deployments = [
        d
        for d in docs
        if d["kind"] == "Deployment"
        and any(c["name"] == "app" for c in d["spec"]["template"]["spec"]["containers"])
    ]
    config_maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    ports = {}
    for dep in deployments:
        app = _app(dep["spec"]["template"]["spec"])
        ports[dep["metadata"]["name"]] = (app["ports"][0]["containerPort"], free_port())
    values = {
        "SHOP_SERVICE_TOKEN_SECRET": secrets.token_urlsafe(32),
        "SHOP_JWT_PRIVATE_KEY": generate_private_key_pem(),
        "SHOP_ADMIN_PASSWORD": "kube-" + secrets.token_urlsafe(12),
        # No broker on purpose: the pods must start and serve while the outbox keeps the
        # events (docs/events.md), and this test publishes nothing into a shared exchange.
        "SHOP_AMQP_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}/",
        "SHOP_SMTP_USERNAME": "kube-play",
        "SHOP_SMTP_PASSWORD": secrets.token_urlsafe(16),
    }
    out: list[dict[str, Any]] = []
    expect: dict[str, dict[str, Any]] = {}
    relay_ports: dict[str, int] = {}
    for original in deployments:
        dep = copy.deepcopy(original)
        name = dep["metadata"]["name"]
        old_port, new_port = ports[name]
        pod = dep["spec"]["template"]["spec"]
        dep["metadata"]["name"] = f"{name}-{run_id}"
        dep["metadata"].pop("namespace", None)
        dep["spec"]["replicas"] = 1
        # Podman 4.3 gives the init containers the pod's restart policy: under "Always" the
        # migration that exited 0 is restarted, and the pod start fails removing it ("cannot
        # remove container ... as it is running"). OnFailure still restarts a failing app.
        pod["restartPolicy"] = "OnFailure"
        # Vault Agent's token volume has no podman equivalent; its files come from a Secret.
        pod["volumes"] = [v for v in pod["volumes"] if "projected" not in v]
        secret_name = f"{name}-local-{run_id}"
        pod["volumes"].append(
            {"name": "vault-secrets", "secret": {"secretName": secret_name, "defaultMode": 0o444}}
        )
        data = {}
        for key in _secret_names(original):
            if key == "SHOP_DATABASE_URL":
                data[key] = database_urls[SERVICE_OF[name]]
            else:
                data[key] = values[key]
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": secret_name},
                "type": "Opaque",
                "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
            }
        )
        env_names = set()
        for container in pod["containers"] + pod.get("initContainers", []):
            container["image"] = images.IMAGE
            container["imagePullPolicy"] = "Never"
            container["volumeMounts"].append(
                {"name": "vault-secrets", "mountPath": SECRETS_MOUNT, "readOnly": True}
            )
            for ref in container.get("envFrom", []):
                env_names.add(ref["configMapRef"]["name"])
            # With the host network the app listens on SHOP_PORT itself; podman refuses port
            # mappings there, so the named port becomes its number in the probes. The outbox
            # relay sidecar listens on SHOP_RELAY_PORT: one free port per pod, or the four
            # sidecars would share the host's 9464.
            port = new_port
            if container["name"] == "relay":
                port = relay_ports[name] = free_port()
                for var in container["env"]:
                    if var["name"] == "SHOP_RELAY_PORT":
                        var["value"] = str(port)
            named = {p["name"]: port for p in container.pop("ports", []) if "name" in p}
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe in container:
                    get = container[probe]["httpGet"]
                    get["port"] = named.get(get["port"], get["port"])
        for cm_name in env_names:
            cm = copy.deepcopy(config_maps[cm_name])
            data_map = cm["data"]
            assert data_map["SHOP_SECRETS_DIR"] == SECRETS_MOUNT
            assert int(data_map["SHOP_PORT"]) == old_port, f"{cm_name}: SHOP_PORT != containerPort"
            data_map["SHOP_PORT"] = str(new_port)
            for key, value in data_map.items():  # peers by their Service name -> loopback
                for peer, (peer_old, peer_new) in ports.items():
                    value = value.replace(
                        f"http://{peer}:{peer_old}", f"http://127.0.0.1:{peer_new}"
                    )
                data_map[key] = value
            cm["metadata"].pop("namespace", None)
            out.append(cm)
        app = _app(pod)
        expect[name] = {
            "pod": f"{name}-{run_id}-pod-0",
            "container": app["name"],
            "port": new_port,
            "paths": sorted(
                {
                    app[p]["httpGet"]["path"]
                    for p in ("startupProbe", "livenessProbe", "readinessProbe")
                    if p in app
                }
            ),
            "user": app["securityContext"]["runAsUser"],
            "read_only": app["securityContext"]["readOnlyRootFilesystem"],
            "relay_port": relay_ports.get(name),
        }
        out.append(dep)
    return out, expect


@pytest.fixture(scope="module")
def kube_databases(pg_server: Server) -> Iterator[dict[str, str]]:
    """Four empty databases: the Deployments' migration initContainers create the schema."""
    if "@127.0.0.1" not in pg_server.url:
        pytest.skip(f"the pods reach PostgreSQL over TCP on the host; have {pg_server.source}")
    prefix = f"kube{secrets.token_hex(3)}_"
    names = [prefix + db for db in SERVICE_DATABASES.values()]
    asyncio.run(create_databases(pg_server, names))
    yield {svc: pg_server.database_url(prefix + db) for svc, db in SERVICE_DATABASES.items()}
    asyncio.run(drop_databases(pg_server, names))


@pytest.fixture(scope="module")
def played(engine, kube_databases, run_id, tmp_path_factory) -> Iterator[dict[str, dict]]:
    docs = [
        d for d in yaml.safe_load_all(render(ROOT / "deploy" / "k8s" / "overlays" / "dev")) if d
    ]
    manifests, expect = local_manifests(docs, run_id, kube_databases)
    folder = tmp_path_factory.mktemp("kube")
    folder.chmod(0o755)
    path = folder / "dev.yaml"
    # The local Secret: podman 4.3 crashes on a Secret volume (a nil pointer in
    # VolumeFromSecret; Secret support in `kube play` is 4.4+), so each Secret's keys become
    # files of a hostPath folder, which is what Vault Agent's volume is to the pod.
    for doc in manifests:
        if doc["kind"] != "Deployment":
            continue
        for volume in doc["spec"]["template"]["spec"]["volumes"]:
            if "secret" in volume:
                secret = next(
                    d
                    for d in manifests
                    if d["kind"] == "Secret"
                    and d["metadata"]["name"] == volume["secret"]["secretName"]
                )
                files = folder / secret["metadata"]["name"]
                files.mkdir(mode=0o755)
                for key, value in secret["data"].items():
                    (files / key).write_bytes(base64.b64decode(value))
                    (files / key).chmod(0o444)
                del volume["secret"]
                volume["hostPath"] = {"path": str(files), "type": "Directory"}
    path.write_text(
        yaml.safe_dump_all([d for d in manifests if d["kind"] != "Secret"], sort_keys=False)
    )
    try:
        done = engine.run("kube", "play", "--network", "host", str(path), check=False, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        for want in expect.values():
            want["ctr"] = f"{want['pod']}-{want['container']}"
            _wait_answers(engine, want)
        yield expect
    finally:
        engine.run("kube", "down", str(path), check=False, timeout=300)


def _get(port: int, path: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return int(resp.status)


def _wait_answers(engine, want: dict, timeout: float = 180.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while True:
        try:
            if all(_get(want["port"], p) == 200 for p in want["paths"]):
                return
        except OSError:
            pass
        state = json.loads(engine.run("inspect", want["ctr"], check=False).stdout or "[{}]")[0]
        if (state and not state["State"]["Running"]) or time.monotonic() > deadline:
            logs = engine.run("logs", "--tail", "30", want["ctr"], check=False)
            raise AssertionError(
                f"{want['ctr']} does not answer {want['paths']}:\n{logs.stdout}{logs.stderr}"
            )
        time.sleep(0.5)


def test_every_deployment_answers_its_probe_paths_on_its_port(played):
    # Every Deployment of the overlay: the four services, and the storefront and the
    # notification worker (no database of their own).
    assert set(played) == {*SERVICE_OF, "storefront", "notifications"}
    for name, want in played.items():
        assert want["paths"], f"{name} has no HTTP probes"
        for path in want["paths"]:
            assert _get(want["port"], path) == 200, (name, path)


def test_each_service_pod_runs_its_outbox_relay_sidecar(played):
    relays = {name: want["relay_port"] for name, want in played.items() if want["relay_port"]}
    assert set(relays) == set(SERVICE_OF)
    import time

    deadline = time.monotonic() + 120  # the sidecar starts beside the app, not before it
    for name, port in relays.items():
        while True:
            try:
                assert _get(port, "/metrics") == 200, name
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)


def test_the_storefront_pod_serves_its_catalogue_from_the_product_pod(played):
    # Its ConfigMap names the services by their Service names (here the other pods' ports).
    assert _get(played["storefront"]["port"], "/") == 200


def test_containers_run_as_the_manifest_user_on_a_read_only_root(engine, played):
    for name, want in played.items():
        assert want["user"] == UID
        uid = engine.run("exec", want["ctr"], "id", "-u").stdout.strip()
        assert uid == str(want["user"]), name
        info = json.loads(engine.run("inspect", want["ctr"]).stdout)[0]
        assert info["HostConfig"]["ReadonlyRootfs"] is want["read_only"] is True, name


def test_the_migration_init_containers_ran_first(played, kube_databases):
    import asyncpg

    async def versions() -> dict[str, str | None]:
        found = {}
        for svc, url in kube_databases.items():
            conn = await asyncpg.connect(url)
            try:
                found[svc] = await conn.fetchval("SELECT to_regclass('alembic_version')::text")
            finally:
                await conn.close()
        return found

    assert all(asyncio.run(versions()).values())


def test_liveness_probes_become_podman_healthchecks_of_the_same_url(engine, played):
    """Podman turns each httpGet liveness probe into a healthcheck running `curl -f URL` inside
    the container. The image carries no curl (the kubelet probes from outside, and the image's
    own HEALTHCHECK uses Python), so `podman healthcheck run` reports unhealthy there: checked
    here is that the healthcheck calls the probe's URL, and that the URL answers."""
    for name, want in played.items():
        info = json.loads(engine.run("inspect", want["ctr"]).stdout)[0]
        test = " ".join((info["Config"].get("Healthcheck") or {}).get("Test") or [])
        url = re.search(r"http://localhost:(\d+)(/\S*)", test)
        assert url, f"{name}: podman made no HTTP healthcheck of the liveness probe: {test!r}"
        assert int(url.group(1)) == want["port"], name
        assert url.group(2) in want["paths"], name
        assert _get(want["port"], url.group(2)) == 200, name
