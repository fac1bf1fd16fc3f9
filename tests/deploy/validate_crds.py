"""Validate custom resources against the JSON schemas in ./schemas (strict, hand-written).

Runs with .venv-tools' python, which has jsonschema (a dependency of kubernetes-validate).
Reads a JSON list of documents on stdin; prints a JSON list of errors (empty when all valid).
A document of a kind without a schema here is an error too.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema

SCHEMAS = Path(__file__).with_name("schemas")


def main() -> None:
    docs = json.load(sys.stdin)
    errors = []
    for doc in docs:
        kind, api = doc.get("kind", "?"), doc.get("apiVersion", "?")
        name = doc.get("metadata", {}).get("name", "?")
        group_version = api.replace("/", "-")
        schema_file = SCHEMAS / f"{kind.lower()}.{group_version}.json"
        if not schema_file.is_file():
            errors.append(f"{kind}/{name}: no schema for {api} {kind} ({schema_file.name})")
            continue
        schema = json.loads(schema_file.read_text(encoding="utf-8"))
        validator = jsonschema.Draft202012Validator(schema)
        for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
            where = "/".join(map(str, err.path))
            errors.append(f"{kind}/{name} at /{where}: {err.message}")
    json.dump(errors, sys.stdout)


if __name__ == "__main__":
    main()
