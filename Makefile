# The README's two commands, `make demo` and `make test`, set everything up on a
# fresh machine: a virtual environment, the CPU build of PyTorch (first, or pip pulls
# several GB of CUDA wheels), the package with its native core and extras.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
TORCH  := torch==2.13.0
STAMP  := $(VENV)/.gencodec-installed
DEPS   := pyproject.toml CMakeLists.txt $(shell find native -type f)

.PHONY: demo test install clean

demo: install
	$(VENV)/bin/gencodec demo --out demo-out --force

test: install
	$(PY) -m pytest -q

install: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): $(PY) $(DEPS)
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet $(TORCH) -e ".[all]"
	touch $@

clean:
	rm -rf build demo-out .pytest_cache
