# One obvious way to run things. Every target creates .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv smoke test bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

smoke: $(STAMP)          ## the main job on its embedded default: local adapter, smoke mode
	$(VENV)/bin/theory-modal run

test: $(STAMP)           ## the whole hermetic test suite
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .pytest_cache
