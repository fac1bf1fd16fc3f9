"""What a cached catalogue body costs in memory: its bytes, not orjson's output buffer."""

from __future__ import annotations

import tracemalloc

import orjson

from shop.products.cache import exact

PAGE = {"id": 1, "name": "Product 00001 oak", "description": "An oak item. " * 25, "stock": 7}


def _traced_bytes(make: object) -> int:
    """Bytes still allocated after keeping 200 results of ``make()``."""
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        kept = [make() for _ in range(200)]  # type: ignore[operator]
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert len(kept) == 200
    return sum(s.size_diff for s in after.compare_to(before, "filename"))


def test_a_kept_body_holds_about_its_own_size() -> None:
    body = orjson.dumps(PAGE)
    assert exact(body) == body
    per_body = _traced_bytes(lambda: exact(orjson.dumps(PAGE))) / 200
    assert per_body < len(body) + 200  # the object header and the list's slot


def test_orjson_output_as_returned_holds_its_whole_buffer() -> None:
    """Why ``exact`` exists: were this to stop holding, the copy could go."""
    body = orjson.dumps(PAGE)
    per_body = _traced_bytes(lambda: orjson.dumps(PAGE)) / 200
    assert per_body > 3 * len(body)
