# Two commands set up everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: run test lint bench eval schemas lock clean

$(INSTALLED): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(INSTALLED)

run: $(INSTALLED)
	$(BIN)/research-arm up $(ARGS)

test: $(INSTALLED)
	$(BIN)/ruff check worker tasks schemas tests
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(INSTALLED)
	$(BIN)/ruff check worker tasks schemas tests
	$(BIN)/ruff format --check worker tasks schemas tests
	$(BIN)/mypy

bench: $(INSTALLED)
	$(BIN)/python -m tests.bench $(ARGS)

# Ranking quality on the graded relevance set (docs/evaluation.md); needs the
# shared arXiv records beside the repository or in EVAL_DATA_DIR.
eval: $(INSTALLED)
	$(BIN)/python -m tests.eval $(ARGS)

schemas: $(INSTALLED)
	$(BIN)/research-arm schemas

# Regenerates the hash-pinned locks from pyproject.toml (needs uv): the full
# one for development, and the image's runtime subset pinned to the same versions.
lock:
	uv pip compile pyproject.toml --extra dev --generate-hashes --python-version 3.11 -o requirements.lock
	uv pip compile pyproject.toml --generate-hashes --python-version 3.11 -c requirements.lock -o deploy/requirements.runtime.lock

clean:
	rm -rf $(VENV) .data .pytest_cache .mypy_cache .ruff_cache
