"""What starting a service process costs in CPU with and without the installed bytecode, A/B
in one run: the imports of a service process (the product and order apps, the tracing SDK),
in child processes that may not write bytecode (``PYTHONDONTWRITEBYTECODE=1``, as this
machine's shell sets it). "compiled" reads the ``.pyc`` files that ``make``'s install writes
(``uv sync --compile-bytecode``, ``compileall src``); "from source" points the interpreter's
bytecode cache at an empty folder (``-X pycache_prefix``), so every module is compiled again,
as each process did before the install compiled them.

    .venv/bin/python -m bench.import_cost [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile

IMPORTS = "import shop.products.app, shop.orders.app, opentelemetry.sdk.trace"


def child_cpu(*flags: str) -> float:
    """CPU seconds (user + system) of one child process doing the imports."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    subprocess.run([sys.executable, *flags, "-c", IMPORTS], check=True, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.import_cost", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    compiled, source = [], []
    with tempfile.TemporaryDirectory() as empty:
        for _ in range(args.rounds):  # alternated, so both see the same machine
            compiled.append(child_cpu())
            source.append(child_cpu("-X", f"pycache_prefix={empty}"))
    print(f"compiled:    {min(compiled):.2f} s of CPU per process (best of {args.rounds})")
    print(f"from source: {min(source):.2f} s of CPU per process (best of {args.rounds})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
