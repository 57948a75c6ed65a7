# `make` or `make help` lists the targets; each one's line is its `## ` comment below.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# One stamp per requirements file: `make run` needs only requirements.txt, the developer
# targets add requirements-dev.txt.
RUN_STAMP := $(VENV)/.installed-run
STAMP := $(VENV)/.installed-dev

LOAD_ARGS ?= --headless --users 200 --spawn-rate 100 --run-time 2m

.DEFAULT_GOAL := help
.PHONY: help run stop reset demo test test-fast bench load lint migrate clean vendor

help: ## list the targets (this)
	@awk 'BEGIN {FS = ":[^#]*## "} /^[a-z-]+:[^#]*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): requirements.txt | $(VENV)/bin/python
	@echo "installing what the services need (requirements.txt) into $(VENV)"
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install -r requirements.txt
	touch $@

$(STAMP): requirements-dev.txt $(RUN_STAMP)
	@echo "installing the development tools (requirements-dev.txt: pytest, ruff, locust, schemathesis, playwright, ...) into $(VENV)"
	$(PY) -m pip install -r requirements-dev.txt
	touch $@

migrate: $(RUN_STAMP) ## create the databases and tables only
	$(PY) -m devtools.local migrate

# A failed start prints one line that names the cause. GNU make follows any failed recipe with a
# `make: *** [...] Error 1` line of its own, and cannot exit non-zero without it; so with --make
# and a terminal (stderr a tty) a failed start exits 0 after its line, while scripts and CI (no
# terminal) get the non-zero status. Without --make it always exits non-zero after a failure.
# A plain command, which make runs itself (no shell between): make's signals reach it.
run: $(RUN_STAMP) ## set up .venv, databases and tables, then run the three services (Ctrl-C or `make stop` stops them)
	@$(PY) -m devtools.local run --make

stop: $(RUN_STAMP) ## stop the `make run` of this checkout (from another shell)
	$(PY) -m devtools.local stop

reset: $(RUN_STAMP) ## drop this prefix's databases after a confirmation (FORCE=1: without asking)
	FORCE=$(FORCE) $(PY) -m devtools.local reset

demo: $(RUN_STAMP) ## register, log in, create an activity, buy, list orders: against `make run`
	$(PY) -m devtools.demo

vendor: $(RUN_STAMP) ## fetch the shop's ALTCHA widget and the tests' axe-core from npm again (pinned; needs npm)
	$(PY) -m devtools.vendor

# The Swagger UI test drives Debian's Chromium (never a browser download of Playwright's own).
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	@echo "installing Debian's chromium for the Swagger UI browser test (needs root and apt)"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

# The monitoring tests run Debian's Prometheus and promtool (docs/metrics.md: a real scrape of a
# sale, the alert rules' own tests). Only the binaries are used; the tests start their own.
PROMETHEUS := /usr/bin/prometheus

$(PROMETHEUS):
	@echo "installing Debian's prometheus for the monitoring tests (needs root and apt)"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null

# The benchmark drives wrk, from Debian's package.
WRK := /usr/bin/wrk

$(WRK):
	@echo "installing Debian's wrk for the benchmark (needs root and apt)"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null

# Four pytest workers (pytest-xdist), a test file each at a time: most of the time of the layers
# without service processes is waiting (rate-limit windows, deadlines, expiries), which overlaps
# even on two cores.
PARALLEL := -n 4 --dist loadfile

# The whole suite in two runs: the layers without service processes four at a time (as test-fast),
# then the end-to-end layer alone, whose storms, kill -9 runs and load tests want the cores to
# themselves. With PYTEST_ARGS, one pytest run of exactly what they name.
test: $(STAMP) $(CHROMIUM) $(PROMETHEUS) ## the development tools too, then the whole test suite (PYTEST_ARGS: one run of what they name)
ifeq ($(strip $(PYTEST_ARGS)),)
	$(PY) -m pytest tests/unit tests/app tests/integration $(PARALLEL)
	$(PY) -m pytest tests/e2e
else
	$(PY) -m pytest $(PYTEST_ARGS)
endif

test-fast: $(STAMP) ## unit and in-process app tests only, four at a time (real MySQL, no service processes; PYTEST_ARGS)
	$(PY) -m pytest tests/unit tests/app $(PARALLEL) $(PYTEST_ARGS)

bench: $(STAMP) $(WRK) ## the seckill benchmark (prints figures; asserts nothing about speed)
	$(PY) -m bench.bench $(BENCH_ARGS)

load: $(STAMP) ## a Locust flash sale against `make run` (LOAD_ARGS; LOAD_ARGS= opens the web UI)
	$(PY) -m devtools.local load $(LOAD_ARGS)

lint: $(STAMP) ## ruff check and ruff format --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean: ## remove .venv and caches (keeps the databases: see `make reset`)
	rm -rf $(VENV) .pytest_cache
