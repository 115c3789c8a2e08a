# The README's commands. `make run` and `make test` each do all their own set-up.
VENV ?= .venv
BIN := $(VENV)/bin
# pytest-xdist workers for `make test` (`auto`: one per core). Tests that start real
# servers are one xdist group (tests/conftest.py), run one at a time by one worker
# while the others take the unit tests.
TEST_WORKERS ?= auto

.PHONY: run test deps system-deps lint bench settings-table mixin chart-files report-screenshot clean

run: $(VENV)/.installed  ## the whole loop: serve :8000, monitor :8001, worker :8002, Prometheus :9090, Alertmanager :9093
	VENV=$(VENV) scripts/run-platform

test: $(VENV)/.installed system-deps  ## lint, then the whole test suite against real services
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup

deps: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/install-python-deps
	VENV=$(VENV) scripts/install-python-deps

system-deps:
	scripts/install-system-deps

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(VENV)/.installed  ## serving and monitor benchmarks (print figures; not tests)
	$(BIN)/python bench/serving_bench.py
	$(BIN)/python bench/monitor_bench.py

settings-table: $(VENV)/.installed  ## the README's configuration table
	$(BIN)/watchkeeper settings --markdown

mixin: $(VENV)/.installed  ## regenerate alert and recording rules, Alertmanager config and dashboards from the settings, and the chart's copies
	$(BIN)/watchkeeper mixin build
	VENV=$(VENV) scripts/sync-chart-files

chart-files: $(VENV)/.installed  ## copy dashboards, rules and the values schema into helm/watchkeeper
	VENV=$(VENV) scripts/sync-chart-files

report-screenshot: $(VENV)/.installed system-deps  ## the README's picture of `watchkeeper report`, from a live replay
	REPORT_SCREENSHOT=docs/images/report.png $(BIN)/pytest -q -p no:cacheprovider \
		tests/monitoring/report/test_browser.py

clean:
	rm -rf $(VENV) var .pytest_cache
