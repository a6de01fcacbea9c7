# voffice: `make run` starts the stack with the seed example loaded, `make test` runs every test.
# Both install what is missing first (`make install`, idempotent). Debian 12, as root.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := redis-server python3-venv python3-dev fonts-dejavu-core kamailio kamailio-python3-modules kamailio-tls-modules openssl rtpengine-daemon sip-tester sipsak sox espeak-ng libspandsp2 docker-compose sipvicious baresip postgresql lame docker.io debootstrap iptables chromium chromium-driver
APT_STAMP := .stamp-apt
VENV_STAMP := $(VENV)/.stamp-install
LOCK := requirements.lock
# The lock is made by uv's `uv pip compile` (uv pinned here), today's newest versions within pyproject's ranges.
UV_VERSION := 0.13.9

.PHONY: install lock run test lint unit soak clean base-image wheelhouse images screenshots

install: $(APT_STAMP) $(VENV_STAMP)

$(APT_STAMP): Makefile
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages: $$missing"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	fi
	@touch $@

# Debian's own python3, so Kamailio's embedded interpreter and our tools share one venv.
# Everything comes from $(LOCK), exact versions and hashes: the locked pip first, then the rest
# (setuptools included, so the editable install builds without fetching anything unpinned).
$(VENV_STAMP): $(LOCK) pyproject.toml $(APT_STAMP)
	@test -x $(PY) || /usr/bin/python3 -m venv $(VENV)
	@awk '/^pip==/ {p = 1; print; next} p && /^ / {print; next} {p = 0}' $(LOCK) > $(VENV)/pip.lock
	$(PY) -m pip install -q --require-hashes --no-deps -r $(VENV)/pip.lock
	$(PY) -m pip install -q --require-hashes --no-deps -r $(LOCK)
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	@touch $@

# Refreshes $(LOCK) from pyproject.toml: [project] dependencies, the dev extra, [build-system].requires
# and pip, for CPython 3.11 on x86_64 Debian 12 (glibc 2.36), wheels only, every file's sha256.
# `make lock` takes the newest versions in range; `make lock LOCK_UPGRADE=` keeps the pins that still fit.
LOCK_UPGRADE ?= --upgrade
lock: $(APT_STAMP)
	@test -x $(PY) || /usr/bin/python3 -m venv $(VENV)
	$(PY) -m pip install -q uv==$(UV_VERSION)
	{ $(PY) -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], sep="\n")'; \
	  echo pip; } | $(VENV)/bin/uv pip compile -q pyproject.toml - --extra dev $(LOCK_UPGRADE) \
	  --generate-hashes --only-binary :all: --emit-build-options \
	  --python-version 3.11 --python-platform x86_64-manylinux_2_36 \
	  --custom-compile-command 'make lock' -o $(LOCK)

run: install
	$(VENV)/bin/voffice up --foreground

# The suite in two streams at once (2 cores; the SIP stack tests mostly wait on their timers):
# the SIP stack tests (marker callpath) in one; the container tests, then everything else,
# niced so the stacks' processes come first, in the other. The images are built first (as
# root: dockerd and debootstrap need it), so no build competes with the stacks. Each stream
# has its own temporary folder; the stack stream's output is printed after the other's.
TEST_TMP := /tmp/voffice-tests
test: install lint
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory images; fi
	@rm -rf $(TEST_TMP) && mkdir -p $(TEST_TMP); \
	$(PY) -m pytest -q -p no:cacheprovider --basetemp=$(TEST_TMP)/stack -m "callpath and not docker" tests \
	  > $(TEST_TMP)/stack.log 2>&1 & stack=$$!; \
	$(PY) -m pytest -q -p no:cacheprovider --basetemp=$(TEST_TMP)/docker -m docker tests; docker=$$?; \
	nice -n 15 $(PY) -m pytest -q -p no:cacheprovider --basetemp=$(TEST_TMP)/rest -m "not docker and not callpath" tests; rest=$$?; \
	wait $$stack; stack=$$?; \
	echo "--- the SIP stack tests (marker callpath), run alongside:"; cat $(TEST_TMP)/stack.log; \
	echo "make test: containers exit $$docker, the rest exit $$rest, SIP stack exit $$stack"; \
	exit $$(( docker || rest || stack ))

# The console's screenshots in docs/screenshots, taken by its browser tests (which otherwise
# keep them in a temporary folder).
screenshots: install
	VOFFICE_SCREENSHOTS=$(CURDIR)/docs/screenshots $(PY) -m pytest -q tests/test_console_browser.py tests/test_console_inbox_browser.py

# Optional, not part of `make test`: a long run through the whole stack (default 30 min at
# 100 calls/s over 20,000 numbers): every route checked, worker memory sampled per quarter.
SOAK_CPS ?= 100
SOAK_CALLS ?= 180000
soak: install
	$(VENV)/bin/voffice bench scale --accounts 10000 --cps $(SOAK_CPS) --calls $(SOAK_CALLS) --cache 2000

lint: install
	$(VENV)/bin/ruff check routing media-server bench tests
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

# --- container images (docker/, docs/deployment.md) ---------------------------------------
# base-image: Debian 12 made here with debootstrap and `docker import`ed (no image registry
# needed); skipped when it exists. wheelhouse: the wheels of the lock's runtime part, downloaded on the host
# (containers have no CA bundle for PyPI), what the Python images install from. images: every
# image of docker/compose.yaml; Docker's layer cache makes a rebuild after a code change cheap.
DOCKER_IMAGES := redis postgres rtpengine media-server kamailio web
WHEELHOUSE := .wheelhouse
WHEELHOUSE_STAMP := $(WHEELHOUSE)/.stamp
# The classic builder: Debian's docker.io has no buildx plugin.
DOCKER_BUILD := DOCKER_BUILDKIT=0 docker build -q

base-image: $(APT_STAMP)
	@docker/ensure-dockerd.sh
	docker/base-image.sh voffice/debian:bookworm

wheelhouse: $(WHEELHOUSE_STAMP)

# Only what the images need: docker/runtime-lock.py keeps the lock's entries for the runtime
# dependencies, setuptools and pip (no dev extra), exact versions and hashes as they are.
$(WHEELHOUSE_STAMP): $(LOCK) pyproject.toml docker/runtime-lock.py $(VENV_STAMP)
	rm -rf $(WHEELHOUSE) && mkdir -p $(WHEELHOUSE)
	$(PY) docker/runtime-lock.py > $(WHEELHOUSE)/runtime.lock
	$(PY) -m pip download -q --require-hashes --no-deps --only-binary :all: -r $(WHEELHOUSE)/runtime.lock -d $(WHEELHOUSE)
	@touch $@

images: base-image wheelhouse
	@set -e; for image in $(DOCKER_IMAGES); do \
	  echo "docker build -f docker/$$image.Dockerfile -t voffice/$$image ."; \
	  $(DOCKER_BUILD) -f docker/$$image.Dockerfile -t voffice/$$image . >/dev/null; \
	done

clean:
	rm -rf $(VENV) $(APT_STAMP) .run $(WHEELHOUSE)
