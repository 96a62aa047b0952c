# The two commands of the README: `make lab` starts the lab, `make test` runs the tests.
# Both create ./.venv on first use. PyTorch comes first, pinned to the build you want:
# the default is the CPU build used in development and CI; on a GPU machine use e.g.
# `make TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu126" test`.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: test lab bench install clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[server,engine,test]"
	touch $@

lab: install
	$(BIN)/idlab serve

test: install
	$(BIN)/pytest

bench: install
	$(BIN)/python -m bench.engine

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
