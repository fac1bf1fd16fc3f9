"""Install uv, the one installer of every Python environment here, at the version uv.lock pins.

    python3 scripts/bootstrap-uv.py VENV

makes VENV if it does not exist and installs into it the `uv` that uv.lock locks, checked by
the lock's own hashes (`--require-hashes`, wheels only). Then
`VENV/bin/uv sync --frozen` installs everything else from the same lock. The lock is the only
place uv's version is written, so the installer cannot drift from what it installs. Standard
library only: this runs before anything is installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import tomllib
import venv
from pathlib import Path

LOCK = Path(__file__).resolve().parent.parent / "uv.lock"


def locked_requirement(lock: Path = LOCK, name: str = "uv") -> str:
    """`uv==V --hash=sha256:...` for every wheel of `name` in the lock."""
    packages = tomllib.loads(lock.read_text(encoding="utf-8"))["package"]
    (entry,) = (p for p in packages if p["name"] == name)
    hashes = [wheel["hash"] for wheel in entry.get("wheels", [])]
    if not hashes:
        raise SystemExit(f"bootstrap-uv: {lock.name} locks {name} without wheel hashes")
    return f"{name}=={entry['version']} " + " ".join(f"--hash={h}" for h in hashes)


def installed_version(target: Path) -> str | None:
    uv = target / "bin" / "uv"
    if not uv.exists():
        return None
    out = subprocess.run([uv, "--version"], capture_output=True, text=True, check=False).stdout
    return out.split()[1] if out.startswith("uv ") else None


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python3 scripts/bootstrap-uv.py VENV", file=sys.stderr)
        return 2
    target = Path(argv[1]).absolute()
    requirement = locked_requirement()
    version = requirement.split()[0].split("==")[1]
    if installed_version(target) == version:
        return 0
    with tempfile.TemporaryDirectory(prefix="bootstrap-uv-") as tmp:
        # pip, in a throwaway venv, installs the locked uv by hash; that uv then makes VENV
        # (without pip or setuptools: it holds only what the lock holds) and installs itself
        # there, checking the same hashes. The throwaway venv goes with the directory.
        seed = Path(tmp) / "venv"
        venv.create(seed, with_pip=True)
        requirements = Path(tmp) / "uv.txt"
        requirements.write_text(requirement + "\n", encoding="utf-8")
        hashed = ["--require-hashes", "--no-deps", "--requirement", str(requirements)]
        # -qq: pip's warnings about this machine's extra indexes (which hold no uv) are noise.
        pip = [str(seed / "bin" / "python"), "-m", "pip", "install", "-qq"]
        pip.append("--disable-pip-version-check")
        subprocess.run([*pip, "--only-binary=:all:", *hashed], check=True)
        uv = [str(seed / "bin" / "uv")]
        env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
        if not (target / "bin" / "python").exists():
            subprocess.run(
                [*uv, "venv", "--quiet", "--python", sys.executable, target], env=env, check=True
            )
        install = [*uv, "pip", "install", "--quiet", "--python", str(target / "bin" / "python")]
        subprocess.run([*install, "--no-build", *hashed], env=env, check=True)
    print(f"bootstrap-uv: uv {version} in {target} (hash-checked from {LOCK.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
