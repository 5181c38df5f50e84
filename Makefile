# Two entry points on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
export DOCENT_DATA_DIR ?= $(CURDIR)/.docent

.PHONY: install system-deps demo lint test test-multinode bench-ingest bench-retrieval bench-query clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first: the local CPU build; the project's `torch>=…` range is then already met.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==$(TORCH_VERSION)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/docent ingest docs
	$(BIN)/docent indexes
	$(BIN)/docent search "How does docent keep re-ingesting cheap when nothing changed?" -k 3
	BIN=$(BIN) scripts/demo-serve.sh

# redis-server and chromium: the tests run real ones (rate limits, cache; the widget in a browser).
system-deps:
	scripts/system-deps.sh

# The floor plan (docs/architecture.md) and the code style: a violation fails CI.
lint: install
	$(BIN)/lint-imports
	$(BIN)/ruff check .

test: install system-deps lint
	$(BIN)/python -m pytest -q

# A head and a second Ray node on this machine (`ray start`): ingest and Serve across both. Alone: it runs `ray stop`.
test-multinode: install
	$(BIN)/python -m pytest -q tests/multinode --override-ini addopts=

bench-ingest: install
	$(BIN)/python bench/ingest.py

bench-retrieval: install
	$(BIN)/python bench/retrieval.py

bench-query: install
	$(BIN)/python bench/query.py

clean:
	rm -rf $(VENV) .docent .pytest_cache
