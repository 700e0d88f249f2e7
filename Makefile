# Set-up is part of every target: a fresh clone needs only `make run` or `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Extras: `make run` needs ocr (a default metric); the tests exercise clip, fid and api too.
EXTRAS ?= dev,clip,fid,ocr,api,app,ray,slurm

.PHONY: run test bench bench-selftest lint clean system-deps

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	@touch $(STAMP)

run: $(STAMP)  ## the embedded default suite, offline, CPU: writes reports/<suite>/latest/
	$(VENV)/bin/harness run

test: $(STAMP) system-deps  ## the default test run (slow/gpu/api tests are opt-in markers)
	$(PY) -m pytest -q --durations=25

# Debian packages some tests drive: Chromium (the rating app in a real browser) and tesseract (the
# second OCR engine). Installed here when we may (root with apt-get), else those tests skip.
SYSTEM_PACKAGES := chromium:chromium tesseract:tesseract-ocr
system-deps:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
		command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing Debian's$$missing for the tests"; \
			apt-get install -y -qq $$missing >/dev/null 2>&1 || \
			(apt-get update -qq && apt-get install -y -qq $$missing >/dev/null); \
		else echo "note: missing$$missing (apt-get install$$missing); the tests that need them will be skipped"; fi; \
	fi

bench: $(STAMP)  ## benchmarks (CPU); each prints its headline figure last
	@for b in resume local_overhead fid_speed metrics_throughput preference_speed api_throughput ray_scaling zoo_quality rating_load; do \
		echo "== benchmarks/$$b.py"; $(PY) benchmarks/$$b.py || status=1; done; exit $${status:-0}

# Every benchmark's --self-test: each injects known faults (skipped images, half the steps, double
# pay, a wrong Elo scale, dropped votes...) that must print FAIL; exit non-zero if one is missed.
# Every benchmarks/*.py that offers --self-test is run, so a new benchmark joins by offering one.
bench-selftest: $(STAMP)  ## every benchmark's injected faults must print FAIL (~10 min on 2 cores)
	@log=$$(mktemp); for b in $$(grep -l -e '--self-test' benchmarks/*.py); do \
		echo "== $$b --self-test"; $(PY) $$b --self-test > $$log 2>&1; rc=$$?; \
		grep -E '^self-test |self-test: ' $$log; [ $$rc = 0 ] || { status=1; echo "   exit $$rc:"; tail -15 $$log; }; \
	done; rm -f $$log; exit $${status:-0}

lint: $(STAMP)  ## ruff, and the layer contracts of pyproject.toml (also checked by make test)
	$(VENV)/bin/ruff check harness tests benchmarks
	$(VENV)/bin/lint-imports

clean:
	rm -rf store reports .pytest_cache
