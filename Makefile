# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/python examples/demo.py

# worksteal: the few long end-to-end tests would otherwise queue up on one worker. Six
# workers on two cores: most tests wait (on moto, on the AWS provider's own waits of up to a
# minute, on agents polling); four left the cores a third idle.
# compileall first: gridctl is installed editable, and where PYTHONDONTWRITEBYTECODE is set
# (these machines set it) every gridctl, agent and test process compiled its sources anew.
test: install lint
	$(BIN)/python -m compileall -q cli agent infra
	$(BIN)/python -m pytest -n 6 --dist worksteal -q --durations=25

# mypy needs the import layout (gridctl.cli in cli/, ...): pyproject's package-dir, as links.
lint: install
	$(BIN)/ruff check cli agent infra tests bench examples
	$(BIN)/ruff format --check cli agent infra tests bench examples
	rm -rf .mypy-src && mkdir -p .mypy-src/gridctl
	ln -s ../../cli ../../agent ../../infra .mypy-src/gridctl/
	$(BIN)/mypy -p gridctl.cli -p gridctl.agent -p gridctl.infra

bench: install
	$(BIN)/python -m compileall -q cli agent infra
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy-src .mypy_cache
