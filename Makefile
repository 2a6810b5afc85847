# Linli — `make run` for the whole dev stack, `make test` for the whole suite.
# Both create .venv on first use and reinstall only when pyproject.toml changes.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test bench clean distclean install system-deps

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

install: $(STAMP)

# `linli run` points its children at its own simulator (WECOM_API_BASE) unless told otherwise;
# the seed runs before the simulator is up, so it skips the member sync, which `linli run`
# repeats once the simulator answers. RUN_ARGS: e.g. "--port 5100 --sim-port 5101".
run: $(STAMP)
	$(BIN)/linli db upgrade
	WECOM_API_BASE=$${WECOM_API_BASE:-http://127.0.0.1:5001/cgi-bin/} $(BIN)/linli seed-demo
	$(BIN)/linli run $(RUN_ARGS)

# Browser and poster tests need Debian's chromium and CJK fonts; install them only when
# missing (and only as root: elsewhere, say what is missing and carry on).
system-deps:
	@missing=""; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	dpkg -s fonts-noto-cjk >/dev/null 2>&1 || missing="$$missing fonts-noto-cjk"; \
	dpkg -s libzbar0 >/dev/null 2>&1 || missing="$$missing libzbar0"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			echo "installing$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
		else \
			echo "warning: missing$$missing (run as root or: sudo apt-get install$$missing)"; \
		fi; \
	fi

test: $(STAMP) system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# BENCH_DATABASE_URL / BENCH_REDIS_URL: run on that database (its tables are dropped!) and Redis.
bench: $(STAMP)
	$(BIN)/python bench/callback_bench.py $${BENCH_DATABASE_URL:+--database-url "$$BENCH_DATABASE_URL"} \
		$${BENCH_REDIS_URL:+--redis-url "$$BENCH_REDIS_URL"}
	$(BIN)/python bench/redemption_bench.py
	$(BIN)/python bench/dashboard_bench.py
	$(BIN)/python bench/welcome_bench.py --adds 200 --rate 20

clean:
	rm -rf .pytest_cache build *.egg-info bench/results
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print | xargs rm -rf

# Also forget the virtualenv and local state (database, embedded Redis, simulator).
distclean: clean
	rm -rf $(VENV) instance
