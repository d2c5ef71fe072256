# One obvious way to run things. Every target creates .venv on first use.
#
# Installs are hash-locked: requirements.lock pins every package (and the build backend) with sha256 hashes.
# Regenerate it after changing dependencies in pyproject.toml with `make lock` (needs uv: pip install uv).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
STAMP  := $(VENV)/.installed

.PHONY: venv smoke test test-llama bench lock clean

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --require-hashes -r requirements.lock
	$(PIP) install --no-deps --no-build-isolation -e .
	touch $(STAMP)

smoke: $(STAMP)          ## the main job on its embedded default: llm/litellm@1, local adapter, smoke mode
	$(VENV)/bin/theory-modal run

test: $(STAMP)           ## the whole hermetic test suite
	$(PY) -m pytest -q

test-llama: $(STAMP)     ## the real-model test: LLAMA_SERVER=... SMOLLM2_GGUF=... (README, Development)
	$(PY) -m pytest -q -m llama tests/llama

bench: $(STAMP)          ## benchmarks (bench/README.md); `make bench ARGS=--quick` for the CI-sized run
	$(PY) -m bench $(ARGS)

lock:
	uv pip compile pyproject.toml requirements/build.in --extra litellm --extra testing --extra otel --extra test --generate-hashes \
		--python-version 3.11 --python-platform x86_64-manylinux_2_28 -o requirements.lock
	python3 requirements/image_lock.py   # the images' subsets (requirements/litellm-image.lock, mock-image.lock)

clean:
	rm -rf $(VENV) .pytest_cache
