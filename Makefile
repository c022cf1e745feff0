# Two commands do everything: `make book` builds the website, `make test` runs every test.
# Both create the virtual environment .venv and install into it when needed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JB_FLAGS := -W -n --keep-going

.PHONY: book pdf test test-fast lint lint-workflows bench gpu-check serve clean install

$(STAMP): requirements.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt -c constraints.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

install: $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . $(JB_FLAGS)
	@echo "Website built: open _build/html/index.html (or run 'make serve')"

pdf: $(STAMP)
	rm -rf _build/latex
	$(BIN)/jupyter-book build . --builder pdflatex $(JB_FLAGS)
	@echo "PDF built: _build/latex/book.pdf"

lint: $(STAMP)
	$(BIN)/ruff check gdla tests book/_ext tools/freshness.py
	$(BIN)/ruff format --check gdla tests book/_ext tools/freshness.py
	$(BIN)/mypy
	$(MAKE) --no-print-directory lint-workflows

# actionlint checks the workflows (with shellcheck on every `run:` script). An action
# pinned to a commit SHA hides its release from it, so each workflow is linted a second
# time with every `@<sha> # vX.Y.Z` pin read as `@vX`: the inputs we give an action and
# the runtime it needs are then checked against that release too.
WORKFLOWS := $(wildcard .github/workflows/*.yml)
ACTIONLINT := $(BIN)/actionlint -no-color -shellcheck=$(BIN)/shellcheck -pyflakes=
PINS_AS_TAGS := _build/actionlint

lint-workflows: $(STAMP)
	$(ACTIONLINT) $(WORKFLOWS)
	rm -rf $(PINS_AS_TAGS) && mkdir -p $(PINS_AS_TAGS)
	for workflow in $(WORKFLOWS); do \
	  sed -E 's/@[0-9a-f]{40} # (v[0-9]+)[^ ]*/@\1/' $$workflow > $(PINS_AS_TAGS)/$$(basename $$workflow); \
	done
	$(ACTIONLINT) $(PINS_AS_TAGS)/*.yml

# Two passes: the tests that neither build the book nor drive a browser run in two
# pytest-xdist workers of one thread each (they are many and small: 64 against 95 s
# here); then, in one process, the slow tests, which share the session's book build and
# kernel executions, and the bad-input tests, whose table the summary prints.
test: lint
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -m "not slow and not serial" -n 2
	$(BIN)/python -m pytest -m "slow or serial"

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

bench: $(STAMP)
	$(BIN)/python -m gdla.bench

# On a machine with CUDA: the device tests (cpu and cuda) and the full table on the GPU,
# recorded with its provenance for the benchmarks chapter. Without one: the device tests
# on the CPU only, and nothing recorded. GPU_BENCH_FLAGS=--quick makes the table small.
GPU_RECORD ?= book/data/gpu-bench.json
GPU_BENCH_FLAGS ?=

gpu-check: $(STAMP)
	$(BIN)/python -m pytest tests/test_devices.py -q -p no:cacheprovider
	@if $(BIN)/python -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then \
	  echo "GPU: $$($(BIN)/python -c 'import torch; print(torch.cuda.get_device_name())')"; \
	  $(BIN)/python -m gdla.bench --device cuda --record $(GPU_RECORD) $(GPU_BENCH_FLAGS); \
	else \
	  echo "No GPU present (torch.cuda.is_available() is False): the device tests ran on the CPU only; no GPU record written."; \
	fi

serve: book
	$(BIN)/python -m http.server --directory _build/html 8000

clean:
	rm -rf _build
