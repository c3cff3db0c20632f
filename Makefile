# The README's two set-up commands are `make demo` and `make test`; both work on a
# fresh machine (they create .venv and install into it) and offline.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PYTEST_ARGS ?=
FMNIST  := /usr/share/datasets/fashion-mnist

.PHONY: install install-test data demo check test test-all bench baseline clean

# lncli and what it needs to run (the demo); the tests' and linters' extras only for `make test`/`check`.
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

install-test: $(VENV)/.installed-test

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[test]'
	touch $@

# Real Fashion-MNIST from Debian's dataset-fashion-mnist package, when we may install it.
data:
	@if [ ! -d $(FMNIST) ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist) || echo "could not install dataset-fashion-mnist"; \
	  else echo "note: $(FMNIST) missing; run 'sudo apt-get install dataset-fashion-mnist' for real data"; fi; \
	fi

# Main job: evaluate the shipped BN and LocalNorm checkpoints under noise.
# Without Fashion-MNIST anywhere lncli looks (docs/evaluate.md), it falls back, loudly, to the
# synthetic-gray set: same shape, so it runs, but the accuracies then mean nothing.
# DEMO_LIMIT: a first look evaluates the first 1,000 of the 10,000 test images (the model
# passes are most of the time, in proportion to the images); `make demo DEMO_LIMIT=` runs them all.
# DEMO_ARGS: more lncli evaluate options, e.g. DEMO_ARGS="--mode running,batch,single".
DEMO_LIMIT ?= 1000
DEMO_ARGS ?=
demo: install data
	@if $(PY) -c "from lncli.data import load_dataset; load_dataset('fashion-mnist', 'test', limit=1)" 2>/dev/null; then \
	  data=""; \
	else \
	  echo "NOTE: Fashion-MNIST not found (apt-get install dataset-fashion-mnist, or set LNCLI_DATA)."; \
	  echo "NOTE: falling back to --data synthetic-gray: a smoke run only, accuracies are NOT meaningful."; \
	  data="--data synthetic-gray"; \
	fi; \
	$(VENV)/bin/lncli evaluate examples/checkpoints/*.pt --noise gaussian,shot,impulse $$data \
	  $(if $(DEMO_LIMIT),--limit $(DEMO_LIMIT)) $(DEMO_ARGS) \
	  --csv demo_out/results.csv --json demo_out/results.json --plot demo_out/accuracy.png

# Format, lint and types (configured in pyproject.toml); CI runs this before the tests.
check: install-test
	$(VENV)/bin/ruff format --check lncli tests benchmarks
	$(VENV)/bin/ruff check lncli tests benchmarks
	$(VENV)/bin/mypy

test: install-test data
	$(PY) -m pytest -q $(PYTEST_ARGS)

test-all: install-test data
	$(PY) -m pytest -q -m "" $(PYTEST_ARGS)

bench: install
	$(PY) benchmarks/bench_norm.py
	$(PY) benchmarks/bench_corrupt.py
	$(PY) benchmarks/bench_evaluate.py

# Regenerate the CI example's baseline (examples/ci/baseline.json) from sample_configs/ci_robustness.yaml.
baseline: install data
	$(PY) examples/ci/make_baseline.py

clean:
	rm -rf $(VENV) demo_out build *.egg-info
