# branchnode: every target installs what it needs first and can be run again safely.
#   make run    start a simulated branch node and show a call going through
#   make test   run the whole test suite
#   make bench  benchmarks: table on stdout, JSON in bench/results.json
#   make lint   ruff
# Debian's chromium is the agent console's test browser (Playwright drives it; nothing is downloaded)

PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-$(shell cat pyproject.toml setup.py drivers/dsp/_dtmf_build.py drivers/dsp/c/* 2>/dev/null | cksum | cut -d' ' -f1)
# the real MicroPython VM (WebAssembly port, from npm) that tests/firmware runs the card code on
NPM_STAMP := node_modules/.installed-$(shell cat package-lock.json 2>/dev/null | cksum | cut -d' ' -f1)
APT     := libspandsp2 libspeexdsp1 espeak-ng sox gcc python3-dev chromium iproute2
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-deps run test bench lint clean

setup: system-deps $(STAMP) $(NPM_STAMP)

# node and npm are checked by command: a NodeSource nodejs carries its own npm (and conflicts with
# the Debian npm package), so dpkg would wrongly call npm missing there
system-deps:
	@missing=""; for p in $(APT); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	$(PY) -c "import ensurepip, venv" 2>/dev/null || missing="$$missing python3-venv"; \
	command -v node >/dev/null || missing="$$missing nodejs"; \
	command -v npm >/dev/null || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi

$(STAMP): pyproject.toml setup.py drivers/dsp/_dtmf_build.py $(wildcard drivers/dsp/c/*)
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@rm -f $(VENV)/.installed-*; touch $@

$(NPM_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@rm -f node_modules/.installed-*; touch $@

run: setup
	$(BIN)/python scripts/demo.py

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python -m bench

lint: setup
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) node_modules build *.egg-info .pytest_cache .ruff_cache
