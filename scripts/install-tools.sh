#!/usr/bin/env bash
# Everything the tests need beyond the Python packages: Debian packages (promtool, wrk, Chromium, Podman)
# and the deployment validators in their own virtual environments. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
for script in scripts/install-apt-tools.sh scripts/install-deploy-tools.sh; do
  if [ -f "$script" ]; then
    bash "$script"
  fi
done
