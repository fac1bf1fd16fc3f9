# Two commands: `make run` starts the whole platform, `make test` runs every check.
# Both set everything up first (virtual environment, packages, tools); make only calls scripts.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV     := $(BIN)/uv
STAMP  := $(VENV)/.installed

# Every install comes from uv.lock, checked by hash; nothing resolves at install time
# (docs/dependencies.md). uv uses this machine's Python, never one it downloads.
export UV_PYTHON_DOWNLOADS := never

.PHONY: run test lint fmt typecheck unit integration e2e bench tools images clean help screenshots lock

help:
	@echo "make run    - set up and serve the platform at http://127.0.0.1:8080 (Ctrl-C stops it)"
	@echo "             REPLICAS=2: two replicas each behind the gateway; PROMETHEUS=1: and Prometheus"
	@echo "make test   - set up, then lint, types, import contracts and every test"
	@echo "make bench  - the load benchmark (see bench/README.md)"
	@echo "make images - build the platform's image (Docker, else Podman), its SBOM, print sizes"
	@echo "make lock   - re-resolve uv.lock from pyproject.toml (the only step that resolves)"

# uv at the locked version (by hash), then exactly the locked packages: runtime and dev,
# compiled to bytecode once here: a shell with PYTHONDONTWRITEBYTECODE=1 (this machine's)
# otherwise compiles every imported module again in every process it starts, 1.6 s of CPU
# per service process (bench/import_cost.py; docs/dependencies.md, "Bytecode").
$(STAMP): pyproject.toml uv.lock
	$(PYTHON) scripts/bootstrap-uv.py $(VENV)
	$(UV) sync --frozen --quiet --compile-bytecode
	touch $(STAMP)

# The project's own modules, compiled before each command that starts processes (compileall
# skips what is up to date; the installed packages are compiled by the install above).
COMPILE := $(BIN)/python -m compileall -q src bench

lock: $(STAMP)
	$(UV) lock

# `make run` serves everything through the Envoy gateway (port 8080, TLS 8443); `REPLICAS=2`
# puts two replicas of each service behind it; `PROMETHEUS=1` also starts Prometheus.
REPLICAS ?= 1
run: $(STAMP)
	$(COMPILE)
	$(BIN)/shop run --replicas $(REPLICAS) $(if $(PROMETHEUS),--prometheus)

tools: $(STAMP)
	bash scripts/install-tools.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) tools lint typecheck
	$(COMPILE)
	$(BIN)/pytest

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Docker where an engine runs, else Podman; no registry needed (scripts/images.py, docs/deploy.md).
images: $(STAMP) tools
	$(BIN)/python scripts/images.py

bench: $(STAMP) tools
	$(COMPILE)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .venv-tools .venv-checkov .shop .pytest_cache .mypy_cache .ruff_cache

# The storefront's pages as docs/storefront/*.png (the browser journeys, at a phone's size).
screenshots: $(STAMP)
	mkdir -p docs/storefront
	SHOP_SCREENSHOTS=docs/storefront $(BIN)/pytest tests/e2e/test_storefront_browser.py tests/e2e/test_storefront_search_browser.py -q -p no:randomly
