"""CPU and memory of one argon2id verification at a few parameter sets (docs/security.md).

    .venv/bin/python -m bench.argon2_cost [--rounds 10]

Prints CPU ms and wall ms per verification (``time.process_time`` over ``--rounds``) for the
service's default parameters and the alternatives the decision weighed.
"""

from __future__ import annotations

import argparse
import time

from argon2 import PasswordHasher

from shop.users.settings import UsersSettings

CANDIDATES = [
    ("previous default (RFC 9106 low-memory)", 3, 64 * 1024, 4),
    ("OWASP: m=46 MiB, t=1, p=1", 1, 46 * 1024, 1),
    ("OWASP: m=19 MiB, t=2, p=1", 2, 19 * 1024, 1),
    ("OWASP: m=12 MiB, t=3, p=1", 3, 12 * 1024, 1),
]


def measure(time_cost: int, memory_kib: int, parallelism: int, rounds: int) -> tuple[float, float]:
    """CPU ms and wall ms of one verification at these costs."""
    hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism)
    stored = hasher.hash("correct horse battery staple")
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(rounds):
        hasher.verify(stored, "correct horse battery staple")
    return (
        (time.process_time() - cpu) / rounds * 1000,
        (time.perf_counter() - wall) / rounds * 1000,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    fields = UsersSettings.model_fields
    default = (
        "service default",
        fields["argon2_time_cost"].default,
        fields["argon2_memory_kib"].default,
        fields["argon2_parallelism"].default,
    )
    for name, t, m, p in [default, *CANDIDATES]:
        cpu, wall = measure(t, m, p, args.rounds)
        print(f"{name:42} t={t} m={m // 1024} MiB p={p}: CPU {cpu:6.1f} ms, wall {wall:6.1f} ms")


if __name__ == "__main__":
    main()
