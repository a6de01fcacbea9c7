# voffice: `make run` starts the stack with the seed example loaded, `make test` runs every test.
# Both install what is missing first (`make install`, idempotent). Debian 12, as root.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
APT_PACKAGES := redis-server python3-venv python3-dev fonts-dejavu-core kamailio kamailio-python3-modules rtpengine-daemon sip-tester sipsak sox espeak-ng libspandsp2 docker-compose sipvicious
APT_STAMP := .stamp-apt
VENV_STAMP := $(VENV)/.stamp-install

.PHONY: install run test lint unit soak clean

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
$(VENV_STAMP): pyproject.toml $(APT_STAMP)
	@test -x $(PY) || /usr/bin/python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

run: install
	$(VENV)/bin/voffice up --foreground

test: install lint
	$(PY) -m pytest -q tests

# Optional, not part of `make test`: a long run through the whole stack (default 30 min at
# 100 calls/s over 20,000 numbers): every route checked, worker memory sampled per quarter.
SOAK_CPS ?= 100
SOAK_CALLS ?= 180000
soak: install
	$(VENV)/bin/voffice bench scale --accounts 10000 --cps $(SOAK_CPS) --calls $(SOAK_CALLS) --cache 2000

lint: install
	$(VENV)/bin/ruff check routing media-server tests
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) $(APT_STAMP) .run
