# Two commands do everything: `make book` builds the site, `make test` runs the tests.
# Both create .venv and install the pinned requirements on first use.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# MNIST: $NNLAB_DATA if set, else ../shared/data when present, else ~/.cache/nnlab (downloads).
NNLAB_DATA ?= $(if $(wildcard ../shared/data/MNIST/raw),$(abspath ../shared/data),)
export NNLAB_DATA
export PYTHONHASHSEED := 0
export MPLBACKEND := Agg

.PHONY: book pdf test install bench train clean-book lint

install: $(STAMP)

$(STAMP): requirements.txt constraints.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt -c constraints.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

book: $(STAMP)
	$(BIN)/python -m nnlab.book prepare
	$(BIN)/jupyter-book build --all -W -n --keep-going .
	@echo "Open _build/html/index.html"

# The PDF, _build/latex/book.pdf (needs TeX: latexmk, texlive-latex-extra,
# texlive-fonts-recommended, texlive-xetex, fonts-freefont-otf and xindy from Debian); the
# site is built again after it, with a link to it on the first page.
pdf: $(STAMP)
	$(BIN)/python -m nnlab.book prepare
	$(BIN)/jupyter-book build --builder pdflatex .
	$(MAKE) book
	@echo "PDF: _build/latex/book.pdf (also _build/html/book.pdf)"

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/train_speed.py
	$(BIN)/python benchmarks/classic_example.py
	$(BIN)/python benchmarks/book_build.py
	$(BIN)/python benchmarks/book_build.py --chapters

train: $(STAMP)
	$(BIN)/nnlab train --all

lint: $(STAMP)
	$(BIN)/ruff check .

clean-book:
	rm -rf _build
