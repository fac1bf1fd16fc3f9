"""Every Python install comes from uv.lock: the lock agrees with pyproject.toml, and what is
installed is exactly what it locks (docs/dependencies.md)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

LOCK = ROOT / "uv.lock"
UV = ROOT / ".venv" / "bin" / "uv"
OFFLINE = {**os.environ, "UV_OFFLINE": "1", "UV_PYTHON_DOWNLOADS": "never"}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_versions() -> dict[str, set[str]]:
    """Package name -> every version the lock holds (forks may lock two, e.g. packaging)."""
    versions: dict[str, set[str]] = {}
    for package in tomllib.loads(LOCK.read_text(encoding="utf-8"))["package"]:
        if "version" in package:
            versions.setdefault(normalize(package["name"]), set()).add(package["version"])
    return versions


def uv(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(UV), *args], cwd=cwd, env=OFFLINE, capture_output=True, text=True, timeout=120
    )


def test_the_lock_agrees_with_pyproject():
    proc = uv("lock", "--check")
    assert proc.returncode == 0, proc.stderr


def test_a_dependency_added_without_relocking_is_caught(tmp_path):
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    pyproject = tmp_path / "pyproject.toml"
    text = pyproject.read_text(encoding="utf-8")
    pyproject.write_text(text.replace('"orjson>=3.10",', '"orjson>=3.10",\n    "idna>=3",', 1))
    proc = uv("lock", "--check", cwd=tmp_path)
    assert proc.returncode != 0
    # Offline, uv sees the requirements changed and tries to re-resolve: with the new package's
    # metadata cached it says the lock needs updating, without it that it could not resolve.
    # Either way it did not accept the stale lock (the matching lock passes offline, above).
    assert "needs to be updated" in proc.stderr or "network was disabled" in proc.stderr


def test_this_environment_is_exactly_the_lock():
    """Every distribution installed here is locked, at a locked version; nothing locked for the
    default groups is missing (uv's own check of the same environment agrees)."""
    locked = locked_versions()
    installed = {
        normalize(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()
    }
    strays = {n: v for n, v in installed.items() if v not in locked.get(n, set())}
    assert strays == {}, f"installed but not at a locked version: {strays}"
    proc = uv("sync", "--frozen", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("venv", "group"), [(".venv-tools", "deploy-tools"), (".venv-checkov", "checkov")]
)
def test_the_validators_environments_are_exactly_the_lock(venv, group):
    env = {**OFFLINE, "UV_PROJECT_ENVIRONMENT": str(ROOT / venv)}
    proc = subprocess.run(
        [str(UV), "sync", "--frozen", "--check", "--only-group", group],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_uv_is_the_version_the_lock_pins():
    """scripts/bootstrap-uv.py installs the locked uv by hash; `uv sync` keeps that same one."""
    spec = importlib.util.spec_from_file_location(
        "bootstrap_uv", ROOT / "scripts" / "bootstrap-uv.py"
    )
    assert spec is not None
    assert spec.loader is not None
    bootstrap = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bootstrap)
    requirement = bootstrap.locked_requirement()
    version = requirement.split()[0].removeprefix("uv==")
    assert locked_versions()["uv"] == {version}
    assert requirement.count("--hash=sha256:") >= 5  # a wheel per platform, each checked
    assert (
        subprocess.run([str(UV), "--version"], capture_output=True, text=True).stdout.split()[1]
        == version
    )


def test_the_build_backend_is_the_one_built_into_the_locked_uv():
    """uv_build within the locked uv's minor: uv then builds the project itself, offline."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["build-system"]["build-backend"] == "uv_build"
    (requirement,) = pyproject["build-system"]["requires"]
    (version,) = locked_versions()["uv"]
    major, minor, _ = version.split(".")
    assert requirement == f"uv_build>={version},<{major}.{int(minor) + 1}"


def test_no_install_step_resolves():
    """The project's install steps all go through the lock: no `pip install` of a name."""
    sources = [ROOT / "Makefile", ROOT / "Dockerfile", *sorted((ROOT / "scripts").glob("*.sh"))]
    sources += sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    for path in sources:
        for line in path.read_text(encoding="utf-8").splitlines():
            assert not re.search(r"\bpip3? install\b", line), f"{path.name}: {line.strip()}"


def test_renovate_proposes_weekly_upgrades_that_ci_must_pass():
    config = json.loads((ROOT / "renovate.json").read_text(encoding="utf-8"))
    assert config["lockFileMaintenance"]["enabled"] is True
    weekly = ["before 6am on monday"]
    assert config["schedule"] == weekly
    assert config["lockFileMaintenance"]["schedule"] == weekly
    assert "pep621" in config["enabledManagers"]  # pyproject.toml and uv.lock
    assert config["automerge"] is False  # a person merges, after CI
    ci = (ROOT / ".github" / "workflows" / "ci.yml").read_text(encoding="utf-8")
    assert "pull_request:" in ci


def test_the_licence_text_is_mit_and_ships_with_the_package(tmp_path):
    """pyproject says MIT (the image's OCI label repeats it); LICENSE holds MIT's text, and the
    wheel the image installs carries it (PEP 639 ``license-files``; uv's backend, offline)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "MIT"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert text.startswith("MIT License\n")
    assert "Permission is hereby granted, free of charge" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text
    proc = uv("build", "--wheel", "--no-build-logs", "--quiet", "-o", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("shop-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        dist_info = next(n.split("/")[0] for n in archive.namelist() if ".dist-info/" in n)
        assert archive.read(f"{dist_info}/licenses/LICENSE").decode() == text
        assert "License-Expression: MIT" in archive.read(f"{dist_info}/METADATA").decode()


@pytest.mark.parametrize("package", ["fastapi", "opentelemetry.sdk.trace", "asyncpg"])
def test_the_install_compiled_the_packages_to_bytecode(package: str) -> None:
    """make's install writes the bytecode (uv sync --compile-bytecode): with
    PYTHONDONTWRITEBYTECODE=1 no process would, and each would compile every module it imports
    again (bench/import_cost.py measures what that costs)."""
    spec = importlib.util.find_spec(package)
    assert spec is not None
    assert spec.origin is not None
    cached = importlib.util.cache_from_source(spec.origin)
    assert Path(cached).is_file(), f"{package} has no bytecode at {cached}"
