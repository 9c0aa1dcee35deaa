# radiopal — two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install sysdeps lint docs bench bench-cohort bench-audit fuzz loadtest clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

install: $(STAMP) sysdeps

# Graphviz `dot` renders the reasoning graph to SVG; Chromium drives the HTML report's browser test; PostgreSQL's server
# binaries run the audit log's multi-node tests (the tests start their own server on 127.0.0.1).
# Installed with apt-get when we are root on Debian; otherwise we say how, and radiopal still writes DOT and JSON.
sysdeps:
	@missing=""; command -v dot >/dev/null 2>&1 || missing="$$missing graphviz"; \
	 command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	 { command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || missing="$$missing postgresql"; \
	 if [ -n "$$missing" ]; then \
	   if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	     echo "installing Debian packages:$$missing"; \
	     (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	       || echo "warning: could not install$$missing; the tests that need them will say so"; \
	   else \
	     echo "note: missing$$missing. Install with: sudo apt-get install$$missing (SVG needs graphviz's dot)"; \
	   fi; \
	 fi

demo: install
	$(BIN)/radiopal recommend examples/patient-mcrpc.yaml --format text --graph out/demo-graph.svg
	@echo "reasoning graph written to out/demo-graph.svg (and .dot/.json beside it)"

test: install
	$(BIN)/ruff check engine tests benchmarks
	$(BIN)/mypy
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/radiopal lint

docs: install
	$(BIN)/python -m radiopal.docgen docs/reference
	$(BIN)/mkdocs build --strict --site-dir site

# Both evaluation paths and CLIPS (clipspy, the benchmark-only `bench` extra) in one run; appends to benchmarks/results/.
bench: install
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/bench_engine.py

# A synthetic cohort of N patients on local Dask with 2 workers (compiled path, 1 in 500 re-checked on experta):
# wall time and peak memory by quarter of the run. `make bench-cohort N=1000000` is the issue-17 run.
N ?= 100000
bench-cohort: install
	$(BIN)/pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/bench_cohort.py --sizes $(N) --modes dask --workers 2

# Audit log appends per second, SQLite vs a throw-away PostgreSQL, 1 and 4 writer processes; appends to benchmarks/results/.
bench-audit: install
	$(BIN)/python benchmarks/bench_audit.py

fuzz: install
	RADIOPAL_FUZZ_EXAMPLES=5000 $(BIN)/python -m pytest -q tests/test_fuzz.py

loadtest: install
	$(BIN)/python benchmarks/loadtest_service.py
	$(BIN)/python benchmarks/loadtest_service.py --open-loop 5 10 20 --seconds 20 --workers 2

clean:
	rm -rf $(VENV) out site build dist
