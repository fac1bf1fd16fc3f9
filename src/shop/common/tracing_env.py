"""What the environment says about tracing, read without the SDK: the share of new traces kept
(the standard ``OTEL_TRACES_SAMPLER``/``OTEL_TRACES_SAMPLER_ARG``) and, for the local gateway's
Envoy, which reads no environment, the collector's OTLP/HTTP base URL. The services' sampler
(``tracing_sdk``) and ``shop run``'s gateway read the same rule here, so the edge and the
services keep the same share."""

from __future__ import annotations

from collections.abc import Mapping


def sample_ratio_from_env(environ: Mapping[str, str], default: float) -> float:
    """The share of new traces kept: the standard ``OTEL_TRACES_SAMPLER_ARG`` (with
    ``OTEL_TRACES_SAMPLER=parentbased_traceidratio``, as the cluster sets them), else
    ``default`` (``SHOP_TRACE_SAMPLE_RATIO``). The services' sampler and the local gateway's
    tracer both read it here, so the edge and the services keep the same share."""
    sampler = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower()
    argument = environ.get("OTEL_TRACES_SAMPLER_ARG", "").strip()
    if sampler in ("parentbased_traceidratio", "traceidratio") and argument:
        try:
            return min(1.0, max(0.0, float(argument)))
        except ValueError:
            pass
    return default


def edge_collector(environ: Mapping[str, str]) -> str | None:
    """The OTLP/HTTP base URL the local gateway's Envoy sends its spans to (Envoy reads no
    environment): the services' ``SHOP_OTLP_ENDPOINT``, else ``OTEL_EXPORTER_OTLP_ENDPOINT``;
    None when tracing is off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    return environ.get("SHOP_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None
