# Every target installs what it needs into a local venv first (./.venv), so both work on a fresh clone.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.edgekit-installed

.PHONY: demo test install clean system-packages

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first and by exact version, so pip takes the CPU build and never a multi-GB CUDA one.
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/edgekit demo --out build/demo --force

# The device tests need a private sshd, the aarch64 cross compiler and qemu-user: installed here when root.
SYSTEM_TOOLS := /usr/sbin/sshd /usr/bin/aarch64-linux-gnu-g++ /usr/bin/qemu-aarch64
SYSTEM_PACKAGES := openssh-server openssh-client g++-aarch64-linux-gnu qemu-user

system-packages:
	@missing=""; for t in $(SYSTEM_TOOLS); do [ -x $$t ] || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing (apt-get: $(SYSTEM_PACKAGES))"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	  else \
	    echo "missing$$missing: run as root, or: sudo apt-get install -y $(SYSTEM_PACKAGES) (the device tests fail without them)"; \
	  fi; \
	fi

# Two test processes (one per core here), each file kept on one process so its module fixtures build once.
test: $(STAMP) system-packages
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check --quiet .
	$(PY) -m pytest -q -n 2 --dist loadfile

clean:
	rm -rf build .edgekit $(VENV)
