# Two commands do everything: `make book` builds the website, `make test` runs every test.
# Both create the virtual environment .venv and install into it when needed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
JB_FLAGS := -W -n --keep-going

.PHONY: book pdf test test-fast lint bench serve clean install

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
	$(BIN)/ruff check gdla tests book/_ext
	$(BIN)/ruff format --check gdla tests book/_ext
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

bench: $(STAMP)
	$(BIN)/python -m gdla.bench

serve: book
	$(BIN)/python -m http.server --directory _build/html 8000

clean:
	rm -rf _build
