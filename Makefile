# Two commands do all the set-up on a fresh machine:
#   make train   create .venv, install trpo-ng, train the default task (CartPole-v1)
#   make test    create/reuse .venv and run the test suite
# TORCH pins the wheel installed first (a CPU build on the dev/CI machines); override freely,
# e.g. `make test TORCH=torch` to let pip pick.

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
EXTRAS ?= dev,mujoco,ray
BIN    := $(VENV)/bin

.PHONY: install train test lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

train: install
	$(BIN)/trpo-ng train $(ARGS)

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
