"""The gateway's Envoy configuration, rendered: pure, no process and no file written.

``EnvoyConfig.render()`` is the bootstrap (listeners, filters, clusters) and ``eds(service)``
an endpoint file; ``shop.devtools.gateway.Gateway`` writes them and supervises the Envoy that
reads them, and scripts/gen-compose-gateway.py renders compose's gateway from the same class.
What the configuration does, filter by filter, is in the gateway module's docstring;
tests/unit/test_envoy_config.py holds a snapshot of one rendering.

It stays one module (about 700 lines, over the project's 500) because it reads as Envoy reads
the bootstrap, listener by listener and filter by filter; split by filter, each piece would
need the whole configuration to make sense.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from shop.common.types import Json, JsonObject
from shop.edge import IDEMPOTENT, READS, ROUTES, Bucket, Limits, Route

PROBLEM = "https://shop.example.com/problems/"
OVERWRITE = "OVERWRITE_IF_EXISTS_OR_ADD"
EXT = "type.googleapis.com/envoy.extensions."  # the prefix of every filter's config type
OTLP_CLUSTER = "otel_collector"  # where the tracer's spans go (EnvoyConfig.otlp_endpoint)


def _problem(status: int, slug: str, title: str, detail: str) -> JsonObject:
    return {"type": PROBLEM + slug, "title": title, "status": status, "detail": detail}


# Envoy's own answers (local replies) as problem+json; a service's answers pass untouched.
LOCAL_REPLIES = (
    (401, _problem(401, "unauthorized", "Unauthorized", "A valid bearer token is required.")),
    (404, _problem(404, "not-found", "Not Found", "No such route.")),
    (413, _problem(413, "payload-too-large", "Payload Too Large", "The body is too large.")),
    (
        429,
        _problem(429, "rate-limited", "Too Many Requests", "Too many requests; slow down."),
    ),
    (
        503,
        _problem(503, "unavailable", "Service Unavailable", "No replica could answer; retry."),
    ),
    (504, _problem(504, "timeout", "Gateway Timeout", "The service did not answer in time.")),
)
RETRY_AFTER = {429: "1", 503: "2"}
HEALTHY = '{"status":"ok"}'

ACCESS_LOG_FORMAT = {
    "timestamp": "%START_TIME(%Y-%m-%dT%H:%M:%S.%3fZ)%",
    "level": "INFO",
    "service": "gateway",
    "pod": "%HOSTNAME%",
    "message": "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "user_id": "%DYNAMIC_METADATA(envoy.filters.http.jwt_authn:jwt_payload:sub)%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "trace_id": "%REQ(TRACEPARENT)%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "status": "%RESPONSE_CODE%",
    "flags": "%RESPONSE_FLAGS%",
    "details": "%RESPONSE_CODE_DETAILS%",
    "upstream": "%UPSTREAM_HOST%",
    "route": "%ROUTE_NAME%",
    "duration_ms": "%DURATION%",
    "bytes_sent": "%BYTES_SENT%",
    "client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
}


def _method_match(methods: Sequence[str]) -> JsonObject:
    return {
        "name": ":method",
        "string_match": {"safe_regex": {"regex": "^(" + "|".join(methods) + ")$"}},
    }


def _retry_policy(idempotent: bool) -> JsonObject:
    # A refused or failed connection sent nothing: safe for any method.
    retry_on = "connect-failure,refused-stream,reset-before-request"
    if idempotent:
        retry_on += ",reset,gateway-error"
    return {
        "retry_on": retry_on,
        "num_retries": 3,
        "per_try_timeout": "10s",
        "retry_host_predicate": [
            {
                "name": "envoy.retry_host_predicates.previous_hosts",
                "typed_config": {
                    "@type": EXT + "retry.host.previous_hosts.v3.PreviousHostsPredicate"
                },
            }
        ],
        "host_selection_retry_max_attempts": 5,
        "retry_back_off": {"base_interval": "0.05s", "max_interval": "0.5s"},
    }


def _local_ratelimit(stat_prefix: str, bucket: Bucket) -> JsonObject:
    """``local_ratelimit``'s config: one token bucket per client address (its dynamic
    descriptors), 429 with ``Retry-After`` when empty."""
    tokens: JsonObject = {
        "max_tokens": bucket.burst,
        "tokens_per_fill": bucket.rate,
        "fill_interval": f"{bucket.period}s",
    }
    return {
        "@type": EXT + "filters.http.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": stat_prefix,
        # The route-independent bucket is unlimited: the per-client descriptors do the limiting.
        "token_bucket": {"max_tokens": 10**6, "tokens_per_fill": 10**6, "fill_interval": "1s"},
        "filter_enabled": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        "filter_enforced": {"default_value": {"numerator": 100, "denominator": "HUNDRED"}},
        "response_headers_to_add": [
            {"append_action": OVERWRITE, "header": {"key": "Retry-After", "value": "1"}}
        ],
        "rate_limits": [{"actions": [{"remote_address": {}}]}],
        "descriptors": [{"entries": [{"key": "remote_address"}], "token_bucket": tokens}],
        "max_dynamic_descriptors": 100_000,
        "always_consume_default_token_bucket": False,
    }


@dataclass
class EnvoyConfig:
    """The configuration of one Envoy: public HTTP (and HTTPS) listeners, one internal
    listener per service, an admin port with metrics. ``upstreams`` maps a service to its
    replicas' ports; ``drained`` ones are left out of its endpoints."""

    state_dir: Path
    port: int
    upstreams: Mapping[str, list[int]]
    internal_ports: Mapping[str, int] = field(default_factory=dict)
    tls_port: int | None = None
    admin_port: int = 0
    limits: Limits = field(default_factory=Limits.from_env)
    cors_origins: Sequence[str] = ()
    jwt_issuer: str = "shop-users"
    jwt_audience: str = "shop"
    drained: set[int] = field(default_factory=set)
    # Compose's render mode (scripts/gen-compose-gateway.py): services named here are reached
    # by DNS name (``users`` -> users:5000, every address the name resolves to, so a scaled
    # service is balanced), as STRICT_DNS clusters instead of EDS files; the public listeners
    # bind ``listen_address``; the access log goes to ``log_path`` (a container's stdout).
    hosts: Mapping[str, str] = field(default_factory=dict)
    listen_address: str = "127.0.0.1"
    log_path: Path | None = None
    # The platform's combined OpenAPI (shop.devtools.contract), served at /openapi.json.
    openapi: Mapping[str, Json] | None = field(default=None, repr=False)
    # Tracing at the edge: an OTLP/HTTP collector's base URL (the services' SHOP_OTLP_ENDPOINT,
    # http://127.0.0.1:4318) turns on Envoy's OpenTelemetry tracer on the public listeners; it
    # continues a request's traceparent or starts a trace, kept at ``trace_sampling`` percent,
    # whose decision the services follow (parent-based). None: no tracer, no collector cluster.
    otlp_endpoint: str | None = None
    trace_sampling: float = 100.0

    def __post_init__(self) -> None:
        self.state_dir = self.state_dir.resolve()

    # --- addresses ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"https://127.0.0.1:{self.tls_port}"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def internal_url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.internal_ports[service]}"

    @property
    def access_log(self) -> Path:
        return self.log_path or self.state_dir / "access.log"

    @property
    def config_path(self) -> Path:
        return self.state_dir / "envoy.json"

    @property
    def ca_path(self) -> Path:
        return self.state_dir / "tls" / "ca.pem"

    def _eds_path(self, service: str) -> Path:
        return self.state_dir / "eds" / f"{service}.json"

    # --- configuration -----------------------------------------------------------------

    def routes(self) -> list[Route]:
        """The table's routes whose service is among the upstreams."""
        return [r for r in ROUTES if r.service in self.upstreams]

    def _origins(self) -> list[str]:
        if self.cors_origins:
            return list(self.cors_origins)
        hosts = ("127.0.0.1", "localhost")
        origins = [f"http://{h}:{self.port}" for h in hosts]
        if self.tls_port:
            origins += [f"https://{h}:{self.tls_port}" for h in hosts]
        return origins

    def _envoy_routes(self) -> list[JsonObject]:
        """Each table route as up to four Envoy routes: (public or protected) x (idempotent or
        not), so the token requirement and the retry policy both follow the method."""
        out: list[JsonObject] = []
        for route in self.routes():
            path = {"path": route.path} if route.exact else {"prefix": route.path}
            groups: list[tuple[str, tuple[str, ...] | None, bool]] = []
            methods: tuple[str, ...] | None
            public_idem = tuple(m for m in route.public if m in IDEMPOTENT)
            public_other = tuple(m for m in route.public if m not in IDEMPOTENT)
            protected_idem = tuple(m for m in IDEMPOTENT if m not in route.public)
            for kind, methods, idem in (
                ("public", public_idem, True),
                ("public", public_other, False),
                ("protected", protected_idem, True),
            ):
                if methods:
                    groups.append((kind, methods, idem))
            groups.append(("protected", None, False))  # every other method
            for kind, methods, idem in groups:
                match: JsonObject = dict(path)
                if methods is not None:
                    match["headers"] = [_method_match(methods)]
                name = f"{route.service}:{route.path}:{kind}:{'idempotent' if idem else 'other'}"
                jwt = (
                    {"requirement_name": "optional" if route.optional_token else "public"}
                    if kind == "public"
                    else {"requirement_name": "optional" if route.optional_token else "required"}
                )
                per_filter: JsonObject = {
                    "envoy.filters.http.jwt_authn": {
                        "@type": EXT + "filters.http.jwt_authn.v3.PerRouteConfig",
                        **jwt,
                    }
                }
                if self.limits.enabled and route.limit == "auth":
                    per_filter["envoy.filters.http.local_ratelimit"] = _local_ratelimit(
                        "gateway_auth", self.limits.auth
                    )
                envoy_route: JsonObject = {
                    "name": name,
                    "match": match,
                    "route": {
                        "cluster": route.service,
                        "timeout": "30s",
                        "retry_policy": _retry_policy(idem),
                    },
                    "typed_per_filter_config": per_filter,
                }
                if self.otlp_endpoint is not None:  # the span's name; Envoy's own is "ingress"
                    envoy_route["decorator"] = {"operation": f"gateway {route.path}"}
                out.append(envoy_route)
        return out

    def _jwt_filter(self) -> JsonObject:
        provider: JsonObject = {
            "issuer": self.jwt_issuer,
            "audiences": [self.jwt_audience],
            "remote_jwks": {
                "http_uri": {
                    "uri": "http://users/.well-known/jwks.json",
                    "cluster": "users",
                    "timeout": "5s",
                },
                # Short enough that a key published ahead of its use (the user service
                # publishes the next signing key a rotation early) is known before the first
                # token it signs; Envoy 1.40 has no refetch on an unknown kid.
                "cache_duration": "30s",
                # Fetched in the background from start-up (the user service may come up
                # after Envoy), again every second while it fails.
                "async_fetch": {"failed_refetch_duration": "1s"},
                "retry_policy": {"num_retries": 3},
            },
            "forward": True,  # the services verify again (defence in depth)
            "payload_in_metadata": "jwt_payload",
            "clock_skew_seconds": 30,
        }
        return {
            "name": "envoy.filters.http.jwt_authn",
            "typed_config": {
                "@type": EXT + "filters.http.jwt_authn.v3.JwtAuthentication",
                "providers": {"users": provider},
                "requirement_map": {
                    "required": {"provider_name": "users"},
                    "optional": {
                        "requires_any": {
                            "requirements": [{"provider_name": "users"}, {"allow_missing": {}}]
                        }
                    },
                    # Public routes: a token is not even looked at (an expired one in a
                    # browser must not break the catalogue).
                    "public": {"allow_missing_or_failed": {}},
                },
                "bypass_cors_preflight": True,
            },
        }

    def _http_filters(self) -> list[JsonObject]:
        filters: list[JsonObject] = [
            {
                "name": "envoy.filters.http.cors",
                "typed_config": {"@type": EXT + "filters.http.cors.v3.Cors"},
            }
        ]
        if self.limits.enabled:
            filters.append(
                {
                    "name": "envoy.filters.http.local_ratelimit",
                    "typed_config": _local_ratelimit("gateway", self.limits.default),
                }
            )
        filters.append(self._jwt_filter())
        filters.append(
            {
                "name": "envoy.filters.http.compressor",
                "typed_config": {
                    "@type": EXT + "filters.http.compressor.v3.Compressor",
                    "response_direction_config": {
                        "common_config": {
                            "min_content_length": 512,
                            "content_type": [
                                "application/json",
                                "application/problem+json",
                                "application/graphql-response+json",
                                "text/html",
                                "text/css",
                                "text/plain",
                                "application/javascript",
                            ],
                        }
                    },
                    "compressor_library": {
                        "name": "gzip",
                        "typed_config": {"@type": EXT + "compression.gzip.compressor.v3.Gzip"},
                    },
                },
            }
        )
        filters.append(_router())
        return filters

    def _local_reply_config(self) -> JsonObject:
        mappers = []
        # jwt_authn answers 403 for a token whose audience or issuer is not ours: to a client
        # that is an invalid token like any other (the contract's 401), so it is one.
        replies = [(403, LOCAL_REPLIES[0][1]), *LOCAL_REPLIES]
        for status, body in replies:
            mapper: JsonObject = {
                "filter": {
                    "status_code_filter": {
                        "comparison": {
                            "op": "EQ",
                            "value": {"default_value": status, "runtime_key": f"shop_{status}"},
                        }
                    }
                },
                "body_format_override": {
                    "json_format": {**body, "request_id": "%REQ(X-REQUEST-ID)%"},
                    "content_type": "application/problem+json",
                },
            }
            if status == 403:
                mapper["status_code"] = 401
            headers = []
            if status in RETRY_AFTER:
                headers.append(("Retry-After", RETRY_AFTER[status]))
            if status in (401, 403):
                headers.append(("WWW-Authenticate", 'Bearer realm="shop"'))
            if headers:
                mapper["headers_to_add"] = [
                    {
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
                        "header": {"key": k, "value": v},
                    }
                    for k, v in headers
                ]
            mappers.append(mapper)
        return {"mappers": mappers}

    def _openapi_route(self) -> list[JsonObject]:
        """``GET /openapi.json``: the platform's one document, answered by Envoy itself."""
        if self.openapi is None:
            return []
        document = json.dumps(self.openapi, separators=(",", ":"))
        match: JsonObject = {"path": "/openapi.json", "headers": [_method_match(READS)]}
        return [_gateway_json_route("gateway:openapi", match, document)]

    def _public_hcm(self, stat_prefix: str) -> JsonObject:
        virtual_host: JsonObject = {
            "name": "shop",
            "domains": ["*"],
            "routes": [
                _gateway_json_route("gateway:health", {"path": "/health"}, HEALTHY),
                *self._openapi_route(),
                *self._envoy_routes(),
            ],
            "typed_per_filter_config": {
                "envoy.filters.http.cors": {
                    "@type": EXT + "filters.http.cors.v3.CorsPolicy",
                    "allow_origin_string_match": [{"exact": o} for o in self._origins()],
                    "allow_methods": "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
                    "allow_headers": "authorization, content-type, idempotency-key, x-request-id",
                    "expose_headers": "x-request-id, retry-after",
                    "max_age": "600",
                    "allow_credentials": True,
                }
            },
        }
        route_config: JsonObject = {"virtual_hosts": [virtual_host]}
        if self.openapi is not None:  # Envoy's default cap on a direct response is 4 KiB
            size = len(json.dumps(self.openapi, separators=(",", ":")).encode())
            route_config["max_direct_response_body_size_bytes"] = size + 1024
        return _hcm(
            stat_prefix,
            route_config,
            self._http_filters(),
            access_log=self.access_log,
            local_reply=self._local_reply_config(),
            tracing=None if self.otlp_endpoint is None else self._tracing(),
        )

    def _tracing(self) -> JsonObject:
        """The public listeners' tracer: OpenTelemetry, spans over OTLP/HTTP to the collector,
        the request id as a span attribute (from a log line to its trace, docs/observability.md).
        The internal listeners have none: in the cluster a service calls another directly, so
        the hop is the caller's client span and the callee's server span, not a gateway's."""
        assert self.otlp_endpoint is not None
        return {
            "random_sampling": {"value": self.trace_sampling},
            "provider": {
                "name": "envoy.tracers.opentelemetry",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                    "service_name": "shop-gateway",
                    "http_service": {
                        "http_uri": {
                            "uri": self.otlp_endpoint.rstrip("/") + "/v1/traces",
                            "cluster": OTLP_CLUSTER,
                            "timeout": "2s",
                        }
                    },
                },
            },
            "custom_tags": [
                {
                    "tag": "http.request.header.x_request_id",
                    "request_header": {"name": "x-request-id", "default_value": "-"},
                }
            ],
        }

    def _otlp_cluster(self) -> JsonObject:
        """Where the tracer sends its spans: the collector of ``otlp_endpoint``."""
        assert self.otlp_endpoint is not None
        url = urlsplit(self.otlp_endpoint)
        host = url.hostname or "127.0.0.1"
        port = url.port or (443 if url.scheme == "https" else 80)
        cluster: JsonObject = {
            "name": OTLP_CLUSTER,
            "type": "STRICT_DNS",
            "dns_refresh_rate": "5s",
            "connect_timeout": "2s",
            "load_assignment": {
                "cluster_name": OTLP_CLUSTER,
                "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _address(port, host)}}]}],
            },
        }
        if url.scheme == "https":
            cluster["transport_socket"] = {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": EXT + "transport_sockets.tls.v3.UpstreamTlsContext",
                    "sni": host,
                },
            }
        return cluster

    def render(self) -> JsonObject:
        """The bootstrap configuration (Envoy's JSON), regenerated on every start."""
        listeners = [
            _listener(
                "public_http",
                self.port,
                self._public_hcm("public_http"),
                host=self.listen_address,
            )
        ]
        if self.tls_port is not None:
            tls = self.state_dir / "tls"
            transport_socket: JsonObject = {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": EXT + "transport_sockets.tls.v3.DownstreamTlsContext",
                    "common_tls_context": {
                        "alpn_protocols": ["h2", "http/1.1"],
                        "tls_certificates": [
                            {
                                "certificate_chain": {"filename": str(tls / "server.pem")},
                                "private_key": {"filename": str(tls / "server.key")},
                            }
                        ],
                    },
                },
            }
            listeners.append(
                _listener(
                    "public_https",
                    self.tls_port,
                    self._public_hcm("public_https"),
                    host=self.listen_address,
                    transport_socket=transport_socket,
                )
            )
        for service, port in self.internal_ports.items():
            routes: JsonObject = {
                "virtual_hosts": [
                    {
                        "name": service,
                        "domains": ["*"],
                        "routes": [
                            {
                                "name": f"{service}:internal:idempotent",
                                "match": {"prefix": "/", "headers": [_method_match(IDEMPOTENT)]},
                                "route": {
                                    "cluster": service,
                                    "timeout": "30s",
                                    "retry_policy": _retry_policy(True),
                                },
                            },
                            {
                                "name": f"{service}:internal:other",
                                "match": {"prefix": "/"},
                                "route": {
                                    "cluster": service,
                                    "timeout": "30s",
                                    "retry_policy": _retry_policy(False),
                                },
                            },
                        ],
                    }
                ]
            }
            listeners.append(
                _listener(
                    f"internal_{service}",
                    port,
                    _hcm(
                        f"internal_{service}",
                        routes,
                        [_router()],
                        access_log=self.access_log,
                        local_reply=self._local_reply_config(),
                    ),
                )
            )
        return {
            "node": {"id": "shop-gateway", "cluster": "shop-gateway"},
            "admin": {
                "address": _address(self.admin_port),
                "access_log": [],
            },
            "layered_runtime": {
                "layers": [
                    {
                        "name": "static",
                        "static_layer": {
                            # Envoy's default is unlimited; a front door should not be.
                            "overload.global_downstream_max_connections": 10000,
                        },
                    }
                ]
            },
            "static_resources": {
                "listeners": listeners,
                "clusters": [self._cluster(s) for s in self.upstreams]
                + ([self._otlp_cluster()] if self.otlp_endpoint is not None else []),
            },
        }

    def _discovery(self, service: str) -> JsonObject:
        """How the cluster finds its replicas: by DNS name, or from its EDS file."""
        if service in self.hosts:
            endpoints = [
                {"endpoint": {"address": _address(port, self.hosts[service])}}
                for port in self.upstreams[service]
            ]
            return {
                "type": "STRICT_DNS",
                "dns_refresh_rate": "5s",
                "load_assignment": {
                    "cluster_name": service,
                    "endpoints": [{"lb_endpoints": endpoints}],
                },
            }
        return {
            "type": "EDS",
            "eds_cluster_config": {
                "service_name": service,
                "eds_config": {
                    "resource_api_version": "V3",
                    "path_config_source": {
                        "path": str(self._eds_path(service)),
                        "watched_directory": {"path": str(self._eds_path(service).parent)},
                    },
                },
            },
        }

    def _cluster(self, service: str) -> JsonObject:
        return {
            "name": service,
            **self._discovery(service),
            "connect_timeout": "2s",
            "lb_policy": "LEAST_REQUEST",
            "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
            "outlier_detection": {
                "consecutive_5xx": 5,
                "consecutive_gateway_failure": 2,
                "consecutive_local_origin_failure": 2,
                "split_external_local_origin_errors": True,
                "interval": "1s",
                "base_ejection_time": "5s",
                "max_ejection_time": "30s",
                "max_ejection_percent": 50,
            },
            "circuit_breakers": {
                "thresholds": [
                    {
                        "max_connections": 2048,
                        "max_pending_requests": 2048,
                        "max_requests": 4096,
                        "max_retries": 64,
                    }
                ]
            },
        }

    def eds(self, service: str) -> JsonObject:
        endpoints = [
            {"endpoint": {"address": _address(port)}}
            for port in self.upstreams[service]
            if port not in self.drained
        ]
        assignment: JsonObject = {
            "@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
            "cluster_name": service,
            "endpoints": [{"lb_endpoints": endpoints}],
        }
        return {"version_info": str(time.monotonic_ns()), "resources": [assignment]}


def _gateway_json_route(name: str, match: Mapping[str, Json], body: str) -> JsonObject:
    """A route the gateway answers itself with a JSON ``body``, no token asked."""
    return {
        "name": name,
        "match": match,
        "direct_response": {"status": 200, "body": {"inline_string": body}},
        "response_headers_to_add": [
            {"header": {"key": "content-type", "value": "application/json"}}
        ],
        "typed_per_filter_config": {
            "envoy.filters.http.jwt_authn": {
                "@type": EXT + "filters.http.jwt_authn.v3.PerRouteConfig",
                "disabled": True,
            }
        },
    }


def _address(port: int, host: str = "127.0.0.1") -> JsonObject:
    return {"socket_address": {"address": host, "port_value": port}}


def _router() -> JsonObject:
    return {
        "name": "envoy.filters.http.router",
        "typed_config": {"@type": EXT + "filters.http.router.v3.Router"},
    }


def _hcm(
    stat_prefix: str,
    route_config: Mapping[str, Json],
    filters: list[JsonObject],
    *,
    access_log: Path,
    local_reply: JsonObject,
    tracing: JsonObject | None = None,
) -> JsonObject:
    return {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {
            "@type": EXT + "filters.network.http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": stat_prefix,
            "codec_type": "AUTO",
            "route_config": {"name": stat_prefix, **route_config},
            "http_filters": filters,
            "generate_request_id": True,
            "preserve_external_request_id": True,
            "always_set_request_id_in_response": True,
            "use_remote_address": True,
            "server_name": "shop-gateway",
            "stream_idle_timeout": "60s",
            "request_timeout": "60s",
            "request_headers_timeout": "10s",
            "common_http_protocol_options": {
                "idle_timeout": "60s",
                "headers_with_underscores_action": "REJECT_REQUEST",
            },
            "normalize_path": True,
            "merge_slashes": True,
            "path_with_escaped_slashes_action": "UNESCAPE_AND_REDIRECT",
            "local_reply_config": local_reply,
            "access_log": [
                {
                    "name": "envoy.access_loggers.file",
                    "typed_config": {
                        "@type": EXT + "access_loggers.file.v3.FileAccessLog",
                        "path": str(access_log),
                        "log_format": {
                            "json_format": ACCESS_LOG_FORMAT,
                            "json_format_options": {"sort_properties": False},
                        },
                    },
                }
            ],
            **({} if tracing is None else {"tracing": tracing}),
        },
    }


def _listener(
    name: str,
    port: int,
    hcm: JsonObject,
    host: str = "127.0.0.1",
    *,
    transport_socket: JsonObject | None = None,
) -> JsonObject:
    chain: JsonObject = {"filters": [hcm]}
    if transport_socket is not None:
        chain["transport_socket"] = transport_socket
    return {
        "name": name,
        "address": _address(port, host),
        "per_connection_buffer_limit_bytes": 1_048_576,
        "filter_chains": [chain],
    }
