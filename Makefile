# The Orchestrator: `make run` serves it, `make test` proves it.
PYTHON ?= $(shell command -v python3.12 2>/dev/null || echo python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
MODEL ?=
# The suite runs on this many processes (pytest-xdist); most of its time is spent waiting on
# real servers, browsers and subprocesses. 0 runs it in this process alone.
TEST_WORKERS ?= 2
STAMP := $(VENV)/.installed

ifeq ($(MODEL),demo)
export ORCHESTRATOR_MODEL := demo/scripted
endif

.PHONY: run install migrate user browser llama-server test screenshots lint format typecheck check \
	db-stop clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

migrate: install
	$(BIN)/python manage.py migrate --noinput

# Ctrl-C stops the server, then the embedded database it started (unless DATABASE_URL is set).
# The shell only notes the signal (a trap, not an ignore, so the server still gets it).
run: migrate
	@trap 'true' INT TERM; $(BIN)/python manage.py serve --port $(PORT); status=$$?; \
	  if [ -z "$$DATABASE_URL" ]; then $(MAKE) --no-print-directory db-stop; fi; exit $$status

# Your login for the browser.
user: migrate
	$(BIN)/python manage.py createsuperuser

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

# Screenshots the browser tests take go to build/screenshots (untracked); `make screenshots`
# refreshes the README's in docs/screenshots.
test: install browser llama-server
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

screenshots: install browser
	ORCHESTRATOR_SCREENSHOTS=docs/screenshots $(BIN)/python -m pytest tests/browser/test_screenshots.py $(PYTEST_ARGS)

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
	@$(BIN)/python -m orchestrator_site.embedded_db stop 2>/dev/null || true

clean:
	rm -rf $(VENV) var build .mypy_cache .ruff_cache .pytest_cache
