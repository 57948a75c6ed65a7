# make run   - set up .venv, databases and tables, then run the three services (Ctrl-C stops them)
# make test  - the same set-up, then the whole test suite
# make test-fast - unit and in-process app tests only (real MySQL, no service processes)
# make bench - the seckill benchmark (prints figures; asserts nothing about speed)
# make load  - a Locust flash sale against `make run` (LOAD_ARGS; LOAD_ARGS= opens the web UI)

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

LOAD_ARGS ?= --headless --users 200 --spawn-rate 100 --run-time 2m

.PHONY: run test test-fast bench load lint migrate clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

migrate: $(STAMP)
	$(PY) -m deployment.local migrate

run: $(STAMP)
	$(PY) -m deployment.local run

# The Swagger UI test drives Debian's Chromium (never a browser download of Playwright's own).
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	@echo "installing Debian's chromium for the Swagger UI browser test (needs root and apt)"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

test: $(STAMP) $(CHROMIUM)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest tests/unit tests/app $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) -m deployment.bench $(BENCH_ARGS)

load: $(STAMP)
	$(PY) -m deployment.local load $(LOAD_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache
