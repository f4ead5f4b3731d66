# Two commands matter: `make run` (the hub on the embedded default) and `make test` (the whole suite).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint install clean lock test-deploy

run: $(STAMP)
	$(BIN)/status-hub serve

# The bench's peers (Litestar's ChannelsPlugin, Django Channels) get venvs of their own, pinned in
# bench/peers/requirements-*.txt; installed once, and again only when those files change.
test: $(STAMP)
	$(BIN)/python -m bench venvs
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check hub persistence channels migrations tests bench
	$(BIN)/ruff format --check hub persistence channels migrations tests bench
	$(BIN)/mypy

install: $(STAMP)

# The venv is built from the lock file only; the project itself goes in without dependencies.
$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

# Re-pin after changing dependencies in pyproject.toml (needs pip-tools in the venv).
lock: $(STAMP)
	$(BIN)/pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --extra dev --strip-extras --no-emit-index-url --no-emit-find-links \
		--output-file requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# The container image (deploy/Dockerfile), built and run against this machine's Postgres and Redis,
# alone and as two replicas behind Caddy (deploy/tests). Needs a Docker daemon, so `make test` leaves
# it out. BASE_IMAGE defaults to a Python base made here from Debian's packages (deploy/build-base.sh),
# for a machine that cannot pull python:3.11-slim; PROXY_IMAGE to Debian's Caddy on that base, a
# stand-in for caddy:2. pip's index settings (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_TRUSTED_HOST)
# and proxy variables reach the build when set; with PIP_CERT set, the local base also trusts the
# authorities in that bundle, and pip in the build uses the base's bundle.
LOCAL_BASE := status-hub-base:bookworm
LOCAL_PROXY := status-hub-caddy:bookworm
BASE_IMAGE ?= $(LOCAL_BASE)
PROXY_IMAGE ?= $(LOCAL_PROXY)
DEPLOY_IMAGE ?= status-hub:deploy-test
# The build's context: what deploy/Dockerfile.dockerignore lets in (the classic builder reads no
# per-Dockerfile ignore file, and .venv alone is hundreds of MB).
DEPLOY_CONTEXT = deploy/Dockerfile $(shell sed -n 's/^!//p' deploy/Dockerfile.dockerignore)
DEPLOY_BUILD_ARGS = --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	$(foreach v,PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST HTTP_PROXY HTTPS_PROXY NO_PROXY,$(if $($(v)),--build-arg $(v))) \
	$(if $(PIP_CERT),--build-arg PIP_CERT=/etc/ssl/certs/ca-certificates.crt)

test-deploy: $(STAMP)
	@docker info >/dev/null 2>&1 || { echo "test-deploy: no Docker daemon answers (docker info failed)." >&2; exit 1; }
	@if [ "$(BASE_IMAGE)" = "$(LOCAL_BASE)" ]; then CA_BUNDLE="$(PIP_CERT)" deploy/build-base.sh $(LOCAL_BASE); fi
	tar -c --exclude=__pycache__ --exclude='*.pyc' $(DEPLOY_CONTEXT) \
		| docker build --force-rm --network host --file deploy/Dockerfile $(DEPLOY_BUILD_ARGS) --tag $(DEPLOY_IMAGE) -
	@if [ "$(PROXY_IMAGE)" = "$(LOCAL_PROXY)" ]; then \
		docker build --force-rm --network host --build-arg BASE_IMAGE=$(BASE_IMAGE) --tag $(LOCAL_PROXY) - < deploy/tests/caddy.Dockerfile; fi
	STATUS_HUB_DEPLOY_IMAGE=$(DEPLOY_IMAGE) STATUS_HUB_DEPLOY_PROXY=$(PROXY_IMAGE) \
		$(BIN)/python -m pytest deploy/tests --durations=5
