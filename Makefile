# The two commands of the README:
#   make demo   set up, start the local stack, run the main job (register a sample fleet)
#   make test   set up and run the whole test suite (what CI runs, through .ci/run)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.gatehouse-installed

.PHONY: setup demo test lint unit down bench clean checkov browser

# checkov lives in its own venv inside .venv: its pins would fight requirements/lock.txt
CHECKOV_VERSION ?= 3.3.30
CHECKOV := $(VENV)/checkov/bin/checkov

$(CHECKOV):
	$(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/python -m pip install --quiet checkov==$(CHECKOV_VERSION)

$(STAMP): pyproject.toml requirements/lock.txt tools/node/package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/lock.txt -e '.[dev]'
	npm ci --prefix tools/node --no-audit --no-fund --loglevel=error
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(BIN)/gatehouse demo

down:
	$(BIN)/gatehouse local down

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: setup
	$(BIN)/pytest -q -m "not stack"

checkov: $(CHECKOV)
	$(CHECKOV) --directory deploy/terraform --framework terraform --skip-download --quiet --compact

# The inventory page's browser test drives Debian's chromium; installed where apt-get may run (root
# on Debian/Ubuntu), otherwise the test skips and says why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "no chromium: tests/test_inventory_browser.py will skip (apt-get install -y chromium)"; fi

# the whole suite, as three pytest runs side by side (tools/pytest_groups.py says why)
test: lint $(CHECKOV) browser
	CHECKOV=$(CHECKOV) $(BIN)/python tools/pytest_groups.py

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) tools/node/node_modules .gatehouse .pytest_cache .mypy_cache .ruff_cache
