"""Print every Terraform file under a folder as JSON: {relative path: parsed HCL}.

Runs with .venv-tools' python (python-hcl2 lives there, not in the main venv).
Usage: python hcl2json.py DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hcl2

try:  # python-hcl2 >= 7
    from hcl2 import SerializationOptions

    OPTIONS = {
        "serialization_options": SerializationOptions(
            strip_string_quotes=True, explicit_blocks=False
        )
    }
except ImportError:  # pragma: no cover - older python-hcl2
    OPTIONS = {}


def main(root: str) -> None:
    base = Path(root)
    out = {}
    for path in sorted(base.rglob("*")):
        if path.suffix not in (".tf", ".tfvars", ".hcl") or ".terraform" in path.parts:
            continue
        with path.open(encoding="utf-8") as fh:
            try:
                out[str(path.relative_to(base))] = hcl2.load(fh, **OPTIONS)
            except Exception as exc:
                raise SystemExit(f"{path}: {exc}") from exc
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
