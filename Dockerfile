# syntax=docker/dockerfile:1
#
# One image for all four services.
#
# Why one image and not four: the services are one Python distribution (`shop`) with one
# locked dependency set (uv.lock). Building it once means one dependency set to
# patch, one Trivy scan, one build cache and one tag per release; every service runs the
# same, already scanned bits. Kubernetes picks the service through the container args
# (`serve users`, `serve products`, ... and `migrate <service>` for the migration
# initContainer); the default CMD serves the user service.

# Bookworm, not the moving `3.11-slim` (now trixie): Debian 12 ships postgresql-client-15, the
# major version of the RDS engine (deploy/terraform, db_engine_version), for the backup CronJob.
# Where no registry is reachable, scripts/images.py builds an equivalent base with debootstrap
# and tags it with this name.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

############################
# build: a venv with exactly the locked runtime dependencies, then the project itself
############################
FROM ${PYTHON_IMAGE} AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1

WORKDIR /src

# The lock alone first: this layer (the slow one) is rebuilt only when it changes. uv comes at
# the version uv.lock pins, checked by the lock's hashes (scripts/bootstrap-uv.py); then
# `uv sync --frozen` installs the runtime set of the same lock, by hash, resolving nothing.
# Wheels only (--no-build): every locked dependency has one for CPython 3.11 on Linux, so no
# compiler is needed, and a dependency that would need one fails the build instead of
# compiling silently. The optional `pip-ca` build secret is a CA bundle for a TLS-intercepting
# proxy on the way to PyPI (scripts/images.py passes the host's, when its pip trusts one); it
# never enters a layer.
COPY uv.lock pyproject.toml ./
COPY scripts/bootstrap-uv.py ./scripts/
RUN --mount=type=secret,id=pip-ca \
    if [ -s /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca SSL_CERT_FILE=/run/secrets/pip-ca; fi \
    && python scripts/bootstrap-uv.py /opt/uv \
    && /opt/uv/bin/uv sync --frozen --no-dev --no-install-project --no-build

# Then the project, non-editable, with uv's built-in build backend (nothing to fetch).
COPY README.md* LICENSE ./
COPY src ./src
RUN /opt/uv/bin/uv sync --frozen --no-dev --no-editable --offline \
    && /opt/venv/bin/shop --help >/dev/null

############################
# runtime: the venv, a non-root user, nothing else
############################
FROM ${PYTHON_IMAGE} AS runtime

ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="shop" \
      org.opencontainers.image.description="Shop e-commerce platform: user, product, order and payment services (one image, service chosen by args)" \
      org.opencontainers.image.source="https://github.com/shop/shop" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.vendor="shop" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SHOP_ENV=production

# pg_dump/pg_restore for `shop backup`/`shop restore` (the backup CronJob runs this image):
# Debian's client of the RDS engine's major version, found under /usr/lib/postgresql/15/bin.
# Not version-pinned (DL3008): bookworm's current 15.x with its security fixes is what we want.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client-15 \
    && rm -rf /var/lib/apt/lists/*

# uid/gid 10001: above the host range, matches runAsUser in deploy/k8s.
RUN groupadd --system --gid 10001 shop \
    && useradd --system --uid 10001 --gid shop --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin shop

COPY --from=build /opt/venv /opt/venv

WORKDIR /tmp
USER 10001:10001

# Informational only (the port follows SHOP_PORT): users 5000, products 5001, orders 5002,
# payments 5003, storefront 5004.
EXPOSE 5000 5001 5002 5003 5004

# Kubernetes uses its own probes; this serves `docker run` and compose. Standard library
# only. The port is SHOP_PORT, else the default of the service named in PID 1's arguments.
HEALTHCHECK --interval=30s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; a = open('/proc/1/cmdline').read().split(chr(0)); d = {'users': '5000', 'products': '5001', 'orders': '5002', 'payments': '5003', 'storefront': '5004'}; p = os.environ.get('SHOP_PORT') or next((d[s] for s in a if s in d), '5000'); u.urlopen('http://127.0.0.1:' + p + '/health/live', timeout=2)"]

ENTRYPOINT ["shop"]
CMD ["serve", "users"]
