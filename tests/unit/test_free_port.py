"""``free_port`` never hands one process the same port twice: the processes started on its
ports bind seconds later, and until then the kernel may offer the same port again."""

from __future__ import annotations

from shop.devtools.processes import free_port


def test_no_port_is_handed_out_twice() -> None:
    ports = [free_port() for _ in range(2000)]
    assert len(set(ports)) == len(ports)
