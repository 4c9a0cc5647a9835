# The two commands of the README: `make demo` and `make test`. Each bootstraps .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
N ?= 200
DEALS ?= 20
WAITING ?= 10000
CRM ?= salesforce

.PHONY: demo test lint typecheck unit bench bench-waiting chaos clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/qtc demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

unit: $(STAMP)
	$(BIN)/pytest tests/unit -q

bench: $(STAMP)
	$(BIN)/python -m bench.latency_throughput --deals $(N) --crm $(CRM)

bench-waiting: $(STAMP)
	$(BIN)/python -m bench.waiting_deals --deals $(WAITING)

chaos: $(STAMP)
	$(BIN)/python -m bench.chaos --deals $(DEALS) --crm $(CRM)

clean:
	rm -rf $(VENV) .qtc .mypy_cache .ruff_cache .pytest_cache
