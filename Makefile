# One command each: `make test` (lint, types, the whole suite), `make check`
# (lint and types only), `make bench` and `make bench-server` (benchmarks,
# printed ratios), `make demo` (the reference year through a real server and agents).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: test check fmt demo bench bench-server bench-agent bench-agent-clocks clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

check: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: check
	$(BIN)/pytest

# The reference city's year through a real server and agents on this machine
# (docs/demo in README.md); DEMO_ARGS="--scale 0.1 --keep" for a smaller year, kept running.
demo: $(BIN)/.installed
	$(BIN)/esup demo $(DEMO_ARGS)

fmt: $(BIN)/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(BIN)/.installed
	$(BIN)/python bench/clock.py

# The server's benchmarks, on SQLite and on the PostgreSQL at 127.0.0.1:5432.
bench-server: $(BIN)/.installed
	$(BIN)/python bench/ingest.py --ingest-processes 2
	$(BIN)/python bench/ingest.py --postgres --ingest-processes 2
	$(BIN)/python bench/figures.py
	$(BIN)/python bench/figures.py --postgres
	$(BIN)/python bench/advance.py
	$(BIN)/python bench/advance.py --postgres
	$(BIN)/python bench/metrics_scrape.py
	$(BIN)/python bench/metrics_scrape.py --postgres

# The agent's benchmarks: drop-folder throughput, and file-to-server latency on a real server.
bench-agent: $(BIN)/.installed
	$(BIN)/python bench/agent_dropfolder.py
	$(BIN)/python bench/agent_latency.py

# The agent's live clocks: RSS and idle CPU with 100,000 open cases, beside
# Debian's prometheus-node-exporter.
bench-agent-clocks: $(BIN)/.installed
	$(BIN)/python bench/agent_memory.py
	$(BIN)/python bench/agent_idle_cpu.py
	$(BIN)/python bench/scores.py
	$(BIN)/python bench/scores.py --postgres

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
