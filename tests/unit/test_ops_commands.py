"""The operations commands pick their server explicitly in production, and the production
entry points (`shop serve`, the ops commands) do not load the development tools."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shop.ops.commands import server_for
from shop.ops.errors import NoServerConfigured


def test_production_without_a_url_refuses_instead_of_finding_a_server(tmp_path, monkeypatch):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(NoServerConfigured, match="no fallback"):
        server_for(None, None, tmp_path, env="production")
    assert not (tmp_path / "pgdata").exists()  # no embedded server was started


def test_an_empty_rendered_url_file_is_an_error_in_every_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://elsewhere/postgres")
    empty = tmp_path / "DATABASE_URL"
    empty.write_text("\n")
    for env in ("production", "development"):
        with pytest.raises(NoServerConfigured, match="is empty"):
            server_for(None, str(empty), tmp_path, env=env)


def test_the_given_url_wins_over_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://from-env/postgres")
    url_file = tmp_path / "url"
    url_file.write_text("postgresql://from-file/postgres\n")
    server = server_for(None, str(url_file), tmp_path, env="production")
    assert (server.url, server.source) == ("postgresql://from-file/postgres", "configured")
    assert server_for(None, None, tmp_path, env="production").url == (
        "postgresql://from-env/postgres"
    )


def test_shop_backup_in_the_image_environment_fails_fast_without_a_url(tmp_path):
    env = {"SHOP_ENV": "production", "SHOP_STATE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        # --without-vault: the Vault options are checked first, and are not what this tests
        [
            sys.executable,
            "-m",
            "shop.cli",
            "backup",
            "--without-vault",
            "--dest",
            str(tmp_path / "b"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "no fallback to a local or embedded server" in done.stderr
    assert not any(Path(tmp_path).glob("b/*"))


def test_shop_serve_imports_no_development_tool():
    code = (
        "import contextlib, io, sys, shop.cli\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    shop.cli.main(['serve', '--help'])\n"
        "print(','.join(m for m in sys.modules if m.startswith('shop.devtools')"
        " or m == 'pgserver'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip() == ""


def test_migrate_reads_the_database_url_from_the_secrets_dir_like_the_services(
    tmp_path, monkeypatch
):
    """The migration initContainer has no SHOP_DATABASE_URL variable: Vault Agent renders it
    as /vault/secrets/SHOP_DATABASE_URL (found by running the Deployments under podman)."""
    from shop.commands import database_url_setting

    monkeypatch.delenv("SHOP_DATABASE_URL", raising=False)
    monkeypatch.setenv("SHOP_SECRETS_DIR", str(tmp_path))
    assert database_url_setting() is None
    (tmp_path / "SHOP_DATABASE_URL").write_text("postgresql://u@db:5432/userdb\n")
    assert database_url_setting() == "postgresql://u@db:5432/userdb"
    monkeypatch.setenv("SHOP_DATABASE_URL", "postgresql://env/userdb")
    assert database_url_setting() == "postgresql://env/userdb"


def test_ops_has_one_exception_tree() -> None:
    """Every exception class ``shop.ops`` defines is an ``OpsError``, declared in ops/errors.py,
    so a command that catches OpsError (or BackupError) misses none of them."""
    import importlib
    import pkgutil

    import shop.ops
    from shop.ops import errors

    for info in pkgutil.iter_modules(shop.ops.__path__):
        module = importlib.import_module(f"shop.ops.{info.name}")
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseException)
                and value.__module__.startswith("shop.ops")
            ):
                assert value.__module__ == "shop.ops.errors", value
                assert issubclass(value, errors.OpsError | SystemExit), value
    assert issubclass(errors.SnapshotError, errors.BackupError)  # a backup's Vault part
