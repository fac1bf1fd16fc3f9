"""The tracing rules read from the environment, shared by the services' sampler and the local
gateway's tracer (shop.common.tracing_env)."""

from __future__ import annotations

import pytest

from shop.common.tracing_env import edge_collector, sample_ratio_from_env

RATIO = "parentbased_traceidratio"


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, 0.5),  # nothing said: the setting's default
        ({"OTEL_TRACES_SAMPLER": RATIO, "OTEL_TRACES_SAMPLER_ARG": "0.1"}, 0.1),
        ({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "1"}, 1.0),
        ({"OTEL_TRACES_SAMPLER_ARG": "0.1"}, 0.5),  # an argument without its sampler
        ({"OTEL_TRACES_SAMPLER": "always_on", "OTEL_TRACES_SAMPLER_ARG": "0.1"}, 0.5),
        ({"OTEL_TRACES_SAMPLER": RATIO, "OTEL_TRACES_SAMPLER_ARG": "2"}, 1.0),  # clamped
        ({"OTEL_TRACES_SAMPLER": RATIO, "OTEL_TRACES_SAMPLER_ARG": "ten"}, 0.5),
    ],
)
def test_the_ratio_comes_from_the_standard_variables(environ, expected) -> None:
    assert sample_ratio_from_env(environ, 0.5) == expected


def test_the_gateway_sends_where_the_services_send_unless_tracing_is_off() -> None:
    assert edge_collector({}) is None
    assert edge_collector({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}) == "http://c:4318"
    both = {"SHOP_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}
    assert edge_collector(both) == "http://a:4318"  # as the services' settings: SHOP_ first
    assert edge_collector({**both, "OTEL_SDK_DISABLED": "true"}) is None
