# Every target installs what it needs into a local venv first (./.venv), so both work on a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.edgekit-installed
# torch by exact version and from a CPU build, never a multi-GB CUDA one: this machine's wheel folder when there is
# one, else PyTorch's CPU index
TORCH_WHEELS := $(wildcard /opt/wheels)
TORCH_SOURCE := $(if $(TORCH_WHEELS),--find-links $(TORCH_WHEELS),--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)

.PHONY: demo test test-fast docs install clean system-packages system-packages-background

# uv installs no bytecode, and a shell with PYTHONDONTWRITEBYTECODE=1 (as CI here has) then compiles torch, executorch
# and transformers from source in every Python process: a stack import costs 16 s instead of 6, and the tests start
# dozens of such processes (workers, Dask, pools, CLIs). So demo and test let Python write its bytecode, into the venv
# (PYTHONPYCACHEPREFIX), never beside your sources: each module is compiled once, on first import.
RUN_ENV := PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX=$(abspath $(VENV))/pycache

# uv installs the stack in seconds where pip takes a minute and a half (it unpacks in parallel and compiles no
# bytecode up front); pip only installs uv itself.
$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv
	$(UV) pip install -q --python $(PY) $(TORCH_SOURCE) torch==2.13.0
	$(UV) pip install -q --python $(PY) $(TORCH_SOURCE) torch==2.13.0 -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(RUN_ENV) $(VENV)/bin/edgekit demo --out build/demo --force

# The device tests need a private sshd, the aarch64 cross compiler and qemu-user: installed here when root. `make test`
# installs them in the background while the venv is made and the other tests run (.system-packages.pid says so until
# it ends; the device tests wait for it): a fresh machine's apt-get costs no wall time.
SYSTEM_TOOLS := /usr/sbin/sshd /usr/bin/aarch64-linux-gnu-g++ /usr/bin/qemu-aarch64
SYSTEM_PACKAGES := openssh-server openssh-client g++-aarch64-linux-gnu qemu-user
APT := apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES)

system-packages:
	@missing=""; for t in $(SYSTEM_TOOLS); do [ -x $$t ] || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing (apt-get: $(SYSTEM_PACKAGES))"; $(APT) >/dev/null; \
	  else \
	    echo "missing$$missing: run as root, or: sudo apt-get install -y $(SYSTEM_PACKAGES) (the device tests fail without them)"; \
	  fi; \
	fi

system-packages-background:
	@missing=""; for t in $(SYSTEM_TOOLS); do [ -x $$t ] || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing$$missing in the background (apt-get: $(SYSTEM_PACKAGES); log in .system-packages.log)"; \
	  ( $(APT) ; rm -f .system-packages.pid ) > .system-packages.log 2>&1 & echo $$! > .system-packages.pid; \
	elif [ -n "$$missing" ]; then \
	  echo "missing$$missing: run as root, or: sudo apt-get install -y $(SYSTEM_PACKAGES) (the device tests fail without them)"; \
	fi

# Lint (ruff), then two test processes (one per core here), each file kept on one process so its module fixtures
# build once. `make test` is one session that hands out the fast tier's files first (tests/conftest.py orders them),
# then the rest, slowest first; `make test-fast` runs the fast tier alone, what a developer runs between edits.
# (Two sessions, fast then the rest, cost a fresh clone 10 s more: each starts its workers and imports the stack.)
PYTEST := $(RUN_ENV) $(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

test: $(STAMP)
	@$(MAKE) --no-print-directory system-packages-background
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check --quiet .
	$(PYTEST)

test-fast: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check --quiet .
	$(PYTEST) -m fast

# The documentation site (MkDocs, strict: a warning is an error), into build/site; tests/test_docs.py builds it too.
docs: $(STAMP)
	DISABLE_MKDOCS_2_WARNING=true $(RUN_ENV) $(VENV)/bin/mkdocs build --strict

clean:
	rm -rf build .edgekit $(VENV)
