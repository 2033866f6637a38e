# Two commands matter: `make run` and `make test`. Both create .venv and install on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
TORCH_VERSION := 2.13.0
# torch is installed first and pinned, so pip never resolves a (multi-GB CUDA) build itself.
# Elsewhere, point it at the CPU wheels: make run PIP_TORCH_ARGS="--index-url https://download.pytorch.org/whl/cpu"
PIP_TORCH_ARGS ?=

.PHONY: install install-llama install-postgres install-fonts prepare run doctor test wheel-check container-check lint bench clean

# Every long step runs through scripts/step.sh: it says what it does and about how long it
# takes, prints a progress line every 30 s, and keeps the full output in .venv/logs/.
STEP := bash scripts/step.sh
LOGS := $(VENV)/logs
RETRY := --hint "fix the cause shown above and run the make command again; finished installs are not downloaded again"

$(VENV)/.installed: pyproject.toml Makefile scripts/step.sh
	$(PYTHON) -m venv $(VENV)
	@$(STEP) $(RETRY) "Installing torch $(TORCH_VERSION) (CPU build)" "1-5 minutes when it is downloaded" \
	  $(LOGS)/torch-install.log -- $(BIN)/pip install "torch==$(TORCH_VERSION)" $(PIP_TORCH_ARGS)
	@$(STEP) $(RETRY) "Installing the bot and its dependencies (transformers, both model tiers' packages: ~1.6 GB, ...)" \
	  "2-6 minutes" $(LOGS)/deps-install.log -- $(BIN)/pip install -e '.[dev]'
	@$(BIN)/python -c "import torch, sys; sys.exit('torch is not a CPU build' if torch.version.cuda else 0)"
	touch $@

# `make install` also tries the llama.cpp backend once (BACKEND=auto prefers it). If that
# build fails, the bot still installs and runs on transformers; `make install-llama` retries.
install: $(VENV)/.installed
	@test -f $(VENV)/.llama -o -f $(VENV)/.llama-failed || $(MAKE) --no-print-directory install-llama \
	  || { touch $(VENV)/.llama-failed; echo "warning: the llama.cpp backend did not build (see above); BACKEND=auto uses transformers"; }
	@$(MAKE) --no-print-directory prepare

# The model MODEL names (the default tier unless .env says otherwise), ready for the backend
# that will run it: the GGUF joined and checked, and converted once if transformers runs it.
prepare: $(VENV)/.installed
	@$(STEP) $(RETRY) "Preparing the model (joining and checking the GGUF; converting it if transformers runs it)" \
	  "1-3 minutes the first time on a machine, seconds after" $(LOGS)/prepare.log -- $(BIN)/python -m bot prepare

# The optional llama.cpp backend (BACKEND=llama_cpp). PyPI has no Linux wheel, so
# scripts/llama-install.sh builds llama.cpp from source (~6-15 minutes on 2 cores) with this
# CPU's extensions and AMX off, once per machine: the wheel is cached under
# ~/.cache/all-in-one-bot/wheels/, keyed by the version and the build flags, and reused by
# the next clone (or after `make clean`) in seconds.
$(VENV)/.llama: $(VENV)/.installed scripts/llama-cmake-args.sh scripts/llama-install.sh scripts/llama-wheel-key.sh
	@sh scripts/llama-install.sh $(BIN)
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

# A CJK font (Debian's fonts-wqy-microhei, 5 MB, needs root), so that /mood report writes a
# Chinese user's PDF in Chinese (without one it is in English) and its Chinese test runs.
install-fonts:
	@fc-list :lang=zh 2>/dev/null | grep -q . || { apt-get update -qq \
	  && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-wqy-microhei; }

run: install
	$(BIN)/python -m bot

# One screen: the backend and model it would use, the database, the platforms, every problem.
doctor: install
	$(BIN)/python -m bot doctor

# Two workers (pytest-xdist); the tests of the session's shared models run on one of them
# (tests/conftest.py: xdist_group), and each model gets one core (tests/support.model_threads).
# Plain `pytest` runs everything in one process (docs/development.md).
test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup

# A plain `pip install` of the wheel, in a fresh venv outside the checkout: doctor, and two
# console messages on the packaged default model (the labels' package data must be shipped).
wheel-check: install
	bash scripts/wheel-check.sh

# The container image (Containerfile) and the compose stack (compose.yaml) built and run with
# podman: doctor and a console message in the image, then PostgreSQL keeping a message across
# the stack going down and up. Needs root (apt-installs podman & co.); docs/containers.md.
container-check:
	bash scripts/container-check.sh

# Lint: ruff's rules, ruff's formatting, and the type checker (settings in pyproject.toml).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info
