# Set-up is part of every target: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Extras: `make run` needs ocr (a default metric); the tests exercise clip, fid and api too.
EXTRAS ?= dev,clip,fid,ocr,api

.PHONY: run test bench lint clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	@touch $(STAMP)

run: $(STAMP)  ## the embedded default suite, offline, CPU: writes reports/<suite>/latest/
	$(VENV)/bin/harness run

test: $(STAMP)  ## the default test run (slow/gpu/api/browser tests are opt-in markers)
	$(PY) -m pytest -q

bench: $(STAMP)  ## benchmarks (CPU); each prints its headline figure last
	@for b in resume local_overhead fid_speed metrics_throughput; do \
		echo "== benchmarks/$$b.py"; $(PY) benchmarks/$$b.py || status=1; done; exit $${status:-0}

lint: $(STAMP)
	$(VENV)/bin/ruff check harness tests benchmarks

clean:
	rm -rf store reports .pytest_cache
