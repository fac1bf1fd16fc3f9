"""The backup CronJob: `shop backup` from the platform's image into S3, with IRSA credentials,
a Vault-rendered read-only login, the same lockdown as the services, and its own egress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shop.cli import main
from shop.ops import commands as ops_commands

from .conftest import ENVIRONMENTS, SERVICES, TRACING, by_kind


def cronjob(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return by_kind(docs, "CronJob")["shop-backup"]


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return cronjob(docs)["spec"]["jobTemplate"]["spec"]["template"]["spec"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_backup_runs_every_six_hours_never_overlapping_and_bounded(rendered, env):
    spec = cronjob(rendered[env])["spec"]
    assert spec["schedule"] == "17 */6 * * *"
    assert spec["timeZone"] == "Etc/UTC"
    assert spec["concurrencyPolicy"] == "Forbid"
    job = spec["jobTemplate"]["spec"]
    assert job["activeDeadlineSeconds"] <= 3600  # a backup that hangs is a failed backup
    assert job["backoffLimit"] >= 1
    assert job["template"]["spec"]["restartPolicy"] == "Never"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_backup_uses_the_platform_image_and_the_shop_backup_command(rendered, env, monkeypatch):
    spec = pod_spec(rendered[env])
    images = {  # the platform's own Deployments (the tracing ones run upstream images)
        c["image"]
        for name, d in by_kind(rendered[env], "Deployment").items()
        if name not in TRACING
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    (backup,) = spec["initContainers"]
    assert {backup["image"]} == images
    assert backup["args"][0] == "backup"
    # The arguments are the CLI's own: parse them with it.
    seen: dict[str, Any] = {}
    monkeypatch.setattr(
        ops_commands, "cmd_backup", lambda args, _state: seen.update(vars(args)) or 0
    )
    assert main(backup["args"]) == 0
    assert seen["server_url_file"] == "/vault/secrets/DATABASE_URL"
    assert seen["dest"] == "/backups"
    # Every backup includes Vault's snapshot, encrypted to public keys from a ConfigMap.
    assert seen["without_vault"] is False
    assert seen["vault_addr"] == "$(VAULT_ADDR)"  # Kubernetes expands it from envFrom
    assert seen["vault_token_file"] == "/vault/secrets/token"
    (recipients,) = seen["vault_recipients_file"]
    config = by_kind(rendered[env], "ConfigMap")
    (source,) = backup["envFrom"]
    assert config[source["configMapRef"]["name"]]["data"]["VAULT_ADDR"].startswith("https://")
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounted = {m["mountPath"]: m["name"] for m in backup["volumeMounts"]}
    volume = volumes[mounted[str(Path(recipients).parent)]]
    assert "recipients.txt" in config[volume["configMap"]["name"]]["data"]
    mounts = {m["name"]: m["mountPath"] for m in backup["volumeMounts"]}
    assert mounts["backups"] == "/backups"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_upload_goes_to_this_environments_bucket_manifest_last(rendered, env):
    spec = pod_spec(rendered[env])
    (upload,) = spec["containers"]
    script = upload["args"][0]
    assert script.index("--exclude manifest.json") < script.index('manifest.json" "$dest')
    assert "--sse aws:kms" in script
    assert script.startswith("set -eu")
    (source,) = upload["envFrom"]
    config = by_kind(rendered[env], "ConfigMap")[source["configMapRef"]["name"]]["data"]
    assert config["BACKUP_BUCKET"] == f"shop-{env}-backups-111122223333"
    account = by_kind(rendered[env], "ServiceAccount")["shop-backup"]
    role = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert role.endswith(f":role/shop-{env}-backup")
    assert account["automountServiceAccountToken"] is False
    assert spec["serviceAccountName"] == "shop-backup"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_backup_pod_is_locked_down_like_the_services(rendered, env):
    spec = pod_spec(rendered[env])
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in spec["containers"] + spec["initContainers"]:
        sc = container["securityContext"]
        assert sc["runAsUser"] == 10001
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        for key in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(container["resources"][key])
    assert "sizeLimit" in {v["name"]: v for v in spec["volumes"]}["backups"]["emptyDir"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_vault_agent_only_prepopulates_a_read_only_login(rendered, env):
    ann = cronjob(rendered[env])["spec"]["jobTemplate"]["spec"]["template"]["metadata"][
        "annotations"
    ]
    # A sidecar would keep running after the backup and the Job would never complete.
    assert ann["vault.hashicorp.com/agent-pre-populate-only"] == "true"
    assert ann["vault.hashicorp.com/role"] == "shop-backup"
    assert ann["vault.hashicorp.com/agent-inject-secret-DATABASE_URL"] == "database/creds/backup"
    assert ann["vault.hashicorp.com/agent-inject-token"] == "true"  # for the raft snapshot
    template = ann["vault.hashicorp.com/agent-inject-template-DATABASE_URL"]
    assert "@postgres:5432/postgres?sslmode=require" in template


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_backup_egress_is_the_database_and_https_only(rendered, env):
    policies = by_kind(rendered[env], "NetworkPolicy")
    db = policies["allow-database-egress"]["spec"]["podSelector"]["matchExpressions"][0]
    assert set(db["values"]) == {*SERVICES, "shop-backup"}
    own = policies["shop-backup-egress"]["spec"]
    assert own["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "shop-backup"}}
    (rule,) = own["egress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 443}]
    (peer,) = rule["to"]
    assert "169.254.0.0/16" in peer["ipBlock"]["except"]  # never the instance metadata
    assert "10.0.0.0/8" in peer["ipBlock"]["except"]
    labels = cronjob(rendered[env])["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "shop-backup"
