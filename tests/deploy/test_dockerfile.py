"""The one image of the platform: hadolint-clean, multi-stage, non-root, venv only."""

from __future__ import annotations

import json
import re

from .conftest import ROOT, run, tool

DOCKERFILE = ROOT / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages() -> dict[str, list[tuple[str, str]]]:
    result: dict[str, list[tuple[str, str]]] = {}
    current = None
    for word, rest in instructions():
        if word == "FROM":
            current = rest.split(" AS ")[-1].strip() if " AS " in rest else rest
            result[current] = []
        elif current is not None:
            result[current].append((word, rest))
    return result


def test_hadolint_is_clean():
    proc = run([tool("hadolint"), "--no-color", str(DOCKERFILE)])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_base_image_is_pinned_python_slim():
    args = dict(
        rest.split("=", 1) for word, rest in instructions() if word == "ARG" and "=" in rest
    )
    assert args["PYTHON_IMAGE"] == "python:3.11-slim-bookworm"  # postgresql-client-15
    froms = [rest for word, rest in instructions() if word == "FROM"]
    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]


def test_build_stage_installs_the_lock_then_the_project():
    build = stages()["build"]
    runs = [rest for word, rest in build if word == "RUN"]
    # uv at the locked version, by hash; then the lock's runtime set, wheels only, no project.
    assert "python scripts/bootstrap-uv.py /opt/uv" in runs[0]
    assert "uv sync --frozen --no-dev --no-install-project --no-build" in runs[0]
    # Then the project, from the same lock, offline: nothing can resolve or download there.
    assert "uv sync --frozen --no-dev --no-editable --offline" in runs[1]
    assert not any("pip install" in run for run in runs)
    copies = [rest for word, rest in build if word == "COPY"]
    # The dependency layer is cached apart from the code.
    assert copies[:2] == ["uv.lock pyproject.toml ./", "scripts/bootstrap-uv.py ./scripts/"]


def test_runtime_stage_is_minimal_and_non_root():
    runtime = stages()["runtime"]
    words = [word for word, _ in runtime]
    runs = " ".join(rest for word, rest in runtime if word == "RUN")
    # Debian's PostgreSQL client of the RDS engine's major version, and nothing else.
    installs = re.findall(r"apt-get install -y --no-install-recommends ([\w.+ -]+?)(?: &&|$)", runs)
    assert [i.split() for i in installs] == [["postgresql-client-15"]]
    assert "pip" not in runs
    assert [rest for word, rest in runtime if word == "COPY"] == [
        "--from=build /opt/venv /opt/venv"
    ]
    assert "useradd --system --uid 10001" in runs
    assert ("USER", "10001:10001") in runtime
    assert words.index("USER") > words.index("COPY")
    entry = [json.loads(rest) for word, rest in runtime if word == "ENTRYPOINT"]
    cmd = [json.loads(rest) for word, rest in runtime if word == "CMD"]
    assert entry == [["shop"]]
    assert cmd == [["serve", "users"]]
    labels = " ".join(rest for word, rest in runtime if word == "LABEL")
    for key in ("title", "source", "version", "revision", "created"):
        assert f"org.opencontainers.image.{key}=" in labels
    assert 'org.opencontainers.image.licenses="MIT"' in labels  # as pyproject.toml says


def test_dockerignore_sends_only_what_the_build_copies():
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"
    allowed = {line[1:] for line in lines if line.startswith("!")}
    assert allowed == {
        "uv.lock",
        "pyproject.toml",
        "scripts/bootstrap-uv.py",
        "README.md",
        "LICENSE",
        "src/",
    }


def test_postgresql_client_matches_the_rds_engine_major_version():
    variables = (ROOT / "deploy" / "terraform" / "variables.tf").read_text()
    engine = re.search(r'variable "db_engine_version" \{.*?default\s*=\s*"(\d+)\.', variables, re.S)
    assert engine is not None
    assert f"postgresql-client-{engine.group(1)} " in DOCKERFILE.read_text() + " "
