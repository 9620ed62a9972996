# The two commands a new integrator needs are `make run` and `make test`; the rest are parts of them.
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: setup run test unit lint typecheck proto proto-check bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/bootstrap.sh
	scripts/bootstrap.sh

## run: install what is needed, start a local redis-server with demo data, serve on :50051
run: setup
	$(BIN)/gatekeeper serve

## test: lint, types, generated-code drift, then the whole pytest suite
test: setup lint typecheck proto-check
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	$(BIN)/mypy

## proto: regenerate gatekeeper/ (the generated package) from proto/
proto: setup
	$(BIN)/python scripts/gen_proto.py

proto-check: setup
	$(BIN)/python scripts/gen_proto.py --check

## bench: the benchmark harness (slow; not part of test)
bench: setup
	$(BIN)/python -m loadtest.bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .gatekeeper
