# Set-up and everyday commands. `make run` and `make test` work on a fresh
# Debian machine with Python 3.11+ (python3 and its venv module).
PYTHON ?= python3
# Two venvs, so that neither install undoes the other: $(VENV) has the test extras (make
# test, lint, typecheck, bench, soak...), $(RUN_VENV) only what the daemon needs (make
# run), as a server has it, so the demo reports the daemon's modules, not the tools'.
VENV ?= .venv
RUN_VENV ?= .venv-run
BIN := $(VENV)/bin
RUN_BIN := $(RUN_VENV)/bin
CONFIG ?= config.yaml
STAMP := $(VENV)/.installed
RUN_STAMP := $(RUN_VENV)/.installed

.PHONY: run test lint typecheck generated pytest pytest-other-pythons monitoring bench soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The runtime dependencies only (pip install -e .): venv's own pip is new enough for that.
$(RUN_STAMP): pyproject.toml
	$(PYTHON) -m venv $(RUN_VENV)
	$(RUN_BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $(RUN_STAMP)

run: $(RUN_STAMP)
	COMMIT=$${COMMIT:-$$(git rev-parse --short HEAD 2>/dev/null)} \
		$(RUN_BIN)/status-exporter --config.file $(CONFIG) $(ARGS)

test: lint typecheck generated pytest pytest-other-pythons

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy exporter monitoring

# The committed rules, PrometheusRule and dashboards must be what monitoring/ generates.
generated: $(STAMP)
	$(BIN)/python -m monitoring --check

# Rules and dashboards for your own selector: make monitoring SELECTOR='job="myapp"' OUT=dir
# With neither, rewrites the committed defaults.
monitoring: $(STAMP)
	$(BIN)/python -m monitoring $(if $(SELECTOR),--selector '$(SELECTOR)') $(if $(OUT),--out '$(OUT)')

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

# The whole suite again on the other Pythons people run, each in a container made from
# Debian's packages (needs Docker and debootstrap; skipped without them unless
# STATUS_EXPORTER_REQUIRE_TOOLS=1). trixie: Python 3.13; testing: 3.14 (as of 2026-11).
OTHER_PYTHONS ?= trixie testing
pytest-other-pythons:
	@tests/other-pythons.sh $(OTHER_PYTHONS)

# Ratios against baselines run side by side (needs wrk for real figures:
# apt-get install wrk prometheus-node-exporter). BENCH_ARGS='--distributions 10000'.
# The security rows (advisories, SBOM) build a 20,000-advisory OSV zip from
# ../shared/data; SECURITY_BENCH_ARGS='--osv-source DIR' points elsewhere. The targets rows
# (50 environments x 300 distributions): TARGETS_BENCH_ARGS='--environments 5'.
bench: $(STAMP)
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/security.py $(SECURITY_BENCH_ARGS)
	$(BIN)/python bench/targets.py $(TARGETS_BENCH_ARGS)
	$(BIN)/python bench/discovery.py $(DISCOVERY_BENCH_ARGS)

# 40 daemons x 25 targets x 300 distributions (300,000 module series) scraped by a real
# Prometheus with the generated rules; rule groups <= 1 s, dashboard queries <= 2 s (needs
# prometheus and promtool). FLEET_BENCH_ARGS='--daemons 5 --targets 5 --distributions 100'.
.PHONY: fleet-bench
fleet-bench: $(STAMP)
	$(BIN)/python bench/fleet.py $(FLEET_BENCH_ARGS)

# A million requests while refreshes run back to back and the environment
# changes; fails on any error, RSS growth of 5% or more, or leaked descriptors.
# SOAK_ARGS='--requests 100000' for a shorter run.
soak: $(STAMP)
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) $(RUN_VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
