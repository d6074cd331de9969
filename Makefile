# Every target installs what it needs into a local venv first (./.venv), so both work on a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.edgekit-installed

.PHONY: demo test install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first and by exact version, so pip takes the CPU build and never a multi-GB CUDA one.
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgekit demo --out build/demo --force

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf build .edgekit $(VENV)
