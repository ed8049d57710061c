# Two commands do all the set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-tools lint clean

$(STAMP): pyproject.toml instrument/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[all,test]' -e ./instrument
	touch $(STAMP)

## run: the whole loop on the embedded ClickHouse (simulated fleet, detections, alerts, Git commits)
run: $(STAMP)
	$(BIN)/obsloop demo

## test: lint, then run the whole test suite
test: $(STAMP) lint test-tools
	$(BIN)/python -m pytest

## test-tools: the real Alertmanager and promtool the suite checks against (Debian packages, apt-get when missing)
test-tools: $(STAMP)
	$(BIN)/python tests/debian_tools.py

## lint: ruff, then mypy over both distributions (tests/typecheck.py maps package-dir for it)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python tests/typecheck.py

clean:
	rm -rf $(VENV) .obsloop
