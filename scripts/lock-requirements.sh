#!/usr/bin/env bash
# Regenerate requirements.lock: the exact runtime dependency set pip resolves for the project
# (no dev tools), which the container image installs with --no-deps.
set -euo pipefail
cd "$(dirname "$0")/.."
report=$(mktemp)
.venv/bin/pip install --dry-run --ignore-installed --quiet --report "$report" .
.venv/bin/python - "$report" <<'PY'
import json, sys
items = json.load(open(sys.argv[1]))["install"]
pins = sorted(f"{i['metadata']['name'].lower()}=={i['metadata']['version']}" for i in items
              if i["metadata"]["name"].lower() != "shop")
with open("requirements.lock", "w") as f:
    f.write("# Pinned runtime dependencies for the container image"
            " (regenerate: scripts/lock-requirements.sh).\n" + "\n".join(pins) + "\n")
PY
rm -f "$report"
