"""Build the platform's image from the Dockerfile, write its SBOM, print name, size and SBOM.

``make images`` runs this. The engine is Docker where a Docker engine answers, else Podman
(Debian's, installed by scripts/install-apt-tools.sh; no daemon). No registry may be reachable:
when the base image named by the Dockerfile's ``FROM`` (``ARG PYTHON_IMAGE``) is neither present
nor pullable, an equivalent Debian base is built with ``debootstrap`` from the machine's own
Debian mirror (read from /etc/apt/sources.list*, never written into the repository) and tagged
with that name. Podman runs with runc and capped ulimits (a CONTAINERS_CONF file under
.shop/podman): crun fails on hybrid cgroups, higher ulimits fail with "error setting rlimit".

The tests (tests/images) import this module and build the same image, so the build cache
makes a rerun take seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("SHOP_STATE_DIR", ROOT / ".shop")).resolve()
IMAGE = "localhost/shop:dev"
SBOM_DIR = STATE / "images"
# What debootstrap adds to minbase so the rootfs stands in for python:3.11-slim-<suite>: the
# interpreter, venv (ensurepip), the `python` name and CA certificates for pip and apt.
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
CONTAINERS_CONF = """\
# Written by scripts/images.py: runc (crun fails with "cgroups in hybrid mode not supported")
# and ulimits a nested or unprivileged host can grant.
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=16384:16384"]

[engine]
runtime = "runc"
"""


@dataclass(frozen=True)
class Engine:
    name: str  # "docker" or "podman"
    env: dict[str, str]

    def run(
        self, *args: str, check: bool = True, capture: bool = True, timeout: float = 1800
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.name, *args],
            env=self.env,
            check=check,
            text=True,
            capture_output=capture,
            timeout=timeout,
        )

    def has_image(self, name: str) -> bool:
        return self.run("image", "inspect", name, check=False).returncode == 0


def _docker_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        done = subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def engine() -> Engine:
    """Docker where an engine answers, else Podman with this project's containers.conf."""
    if os.environ.get("SHOP_IMAGE_ENGINE", "") != "podman" and _docker_answers():
        return Engine("docker", dict(os.environ))
    if shutil.which("podman") is None:
        raise SystemExit("neither a Docker engine nor podman: run scripts/install-apt-tools.sh")
    conf = STATE / "podman" / "containers.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    if not conf.exists() or conf.read_text() != CONTAINERS_CONF:
        conf.write_text(CONTAINERS_CONF)
    return Engine("podman", {**os.environ, "CONTAINERS_CONF": str(conf)})


def base_image(dockerfile: Path = ROOT / "Dockerfile") -> str:
    """The image the Dockerfile builds FROM: the default of ``ARG PYTHON_IMAGE``."""
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)", dockerfile.read_text(), re.M)
    if match is None:
        raise SystemExit("the Dockerfile has no ARG PYTHON_IMAGE=<default>")
    return match.group(1)


def qualified(name: str) -> str:
    """docker.io/library/python:... for python:...: the name Podman resolves a short FROM to."""
    if "/" not in name:
        return f"docker.io/library/{name}"
    return name


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The machine's Debian mirror, from its apt sources (deb822 or one-line format)."""
    files = [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file():
            continue
        text = path.read_text()
        for uri in re.findall(r"^URIs:\s*(\S+)", text, re.M) + re.findall(
            r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, re.M
        ):
            if not uri.rstrip("/").endswith(("-security", "debian-security")):
                return uri
    raise SystemExit(f"no Debian mirror in {sources}/sources.list*: cannot debootstrap a base")


def debootstrap_base(eng: Engine, name: str) -> None:
    """Build a Debian rootfs for the suite in name (python:3.11-slim-bookworm -> bookworm)."""
    suite = name.rsplit("-", 1)[-1]
    if not suite.isalpha():
        raise SystemExit(f"cannot tell the Debian suite of {name}: name it ...-slim-<suite>")
    mirror = debian_mirror()
    print(f"base {name}: not available, debootstrap {suite} from {mirror} (about a minute)")
    with tempfile.TemporaryDirectory(prefix="shop-rootfs-") as rootfs:
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                suite,
                rootfs,
                mirror,
            ],
            check=True,
            capture_output=True,
            timeout=1800,
        )
        # What python:*-slim also does: no apt lists or caches in the image.
        for leftover in ("var/lib/apt/lists", "var/cache/apt/archives"):
            for path in Path(rootfs, leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        try:
            subprocess.run(
                [
                    eng.name,
                    "import",
                    "--change",
                    "CMD python3",
                    "--change",
                    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "-",
                    qualified(name),
                ],
                stdin=tar.stdout,
                env=eng.env,
                check=True,
                capture_output=True,
                timeout=1800,
            )
        finally:
            if tar.stdout is not None:
                tar.stdout.close()
            tar.wait()


def ensure_base(eng: Engine, name: str) -> str:
    """Make sure the base image exists locally; returns how it got there."""
    if eng.has_image(qualified(name)):
        return "present"
    try:
        if eng.run("pull", qualified(name), check=False, timeout=120).returncode == 0:
            return "pulled"
    except subprocess.TimeoutExpired:
        pass
    debootstrap_base(eng, name)
    return "debootstrapped"


def revision() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or "unknown"


def pip_ca_bundle() -> str | None:
    """The CA bundle this machine's pip trusts, if it sets one ($PIP_CERT, pip's config): the
    build's pip needs it behind a TLS-intercepting proxy. A public certificate, no secret."""
    if found := os.environ.get("PIP_CERT") or os.environ.get("REQUESTS_CA_BUNDLE"):
        return found
    done = subprocess.run(
        [sys.executable, "-m", "pip", "config", "get", "global.cert"],
        capture_output=True,
        text=True,
        check=False,
    )
    path = done.stdout.strip()
    return path if done.returncode == 0 and path and Path(path).is_file() else None


def build(eng: Engine | None = None, tag: str = IMAGE) -> Engine:
    """Build the image (cached layers are reused); returns the engine that built it."""
    eng = eng or engine()
    ensure_base(eng, base_image())
    args = ["build", "--tag", tag, "--file", str(ROOT / "Dockerfile")]
    if eng.name == "podman":
        # No registry to check for a newer base; the build's RUN steps reach PyPI and the
        # Debian mirror through the host's network.
        args += ["--pull=never", "--network", "host", "--layers"]
    if ca := pip_ca_bundle():
        args += ["--secret", f"id=pip-ca,src={ca}"]
    args += ["--build-arg", f"REVISION={revision()}", str(ROOT)]
    done = eng.run(*args, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{eng.name} build failed:\n{done.stdout[-4000:]}{done.stderr[-4000:]}")
    return eng


def size_bytes(eng: Engine, tag: str = IMAGE) -> int:
    out = eng.run("image", "inspect", tag, "--format", "{{.Size}}").stdout.strip()
    return int(out)


def sbom(eng: Engine, tag: str = IMAGE, out_dir: Path = SBOM_DIR) -> Path:
    """A CycloneDX SBOM of the image, by Trivy: from the engine (Docker) or from the image's
    mounted root filesystem (Podman). No vulnerability database is needed for an SBOM."""
    trivy = shutil.which("trivy") or str(Path(sys.executable).parent / "trivy")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / (tag.rsplit("/", 1)[-1].replace(":", "-") + ".cdx.json")
    common = ["--format", "cyclonedx", "--output", str(path), "--quiet"]
    if eng.name == "docker":
        subprocess.run([trivy, "image", *common, tag], check=True, timeout=900)
        return path
    mount = eng.run("image", "mount", tag).stdout.strip()
    try:
        subprocess.run([trivy, "rootfs", *common, mount], check=True, timeout=900)
    finally:
        eng.run("image", "unmount", tag, check=False)
    doc = json.loads(path.read_text())
    doc.setdefault("metadata", {}).setdefault("component", {})["name"] = tag
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tag", default=IMAGE)
    parser.add_argument("--no-sbom", action="store_true")
    args = parser.parse_args(argv)
    eng = build(tag=args.tag)
    size = size_bytes(eng, args.tag)
    sbom_path = None if args.no_sbom else sbom(eng, args.tag)
    print(f"{'image':<22} {'size':>10}  sbom")
    print(f"{args.tag:<22} {size / 1e6:>7.1f} MB  {sbom_path or '-'}  (built with {eng.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
