# The two commands a new user runs are `make demo` and `make test`; each sets up what it needs.
.PHONY: setup test typecheck wheel-smoke demo cluster-demo bench lint docs docs-site clean

VENV := .venv
PY   := $(VENV)/bin/python

setup:
	@scripts/setup.sh

test: setup typecheck
	@echo "[test] ruff"
	@$(PY) -m ruff check octopus tests bench scripts examples
	@echo "[test] pytest"
	@$(PY) -m pytest
	@echo "[test] docs site"
	@$(PY) -m mkdocs build --strict --quiet
	@echo "[test] wheel-smoke"
	@scripts/wheel-smoke.sh

# mypy --strict over octopus/ (pyproject.toml [tool.mypy]; stubs for the untyped libraries
# in typings/). Its cache is .mypy_cache/: a fresh clone checks everything (~30 s).
typecheck: setup
	@echo "[typecheck] mypy --strict octopus"
	@$(PY) -m mypy

# Build the wheel, install it into a fresh venv outside the checkout, run it from there.
wheel-smoke: setup
	@scripts/wheel-smoke.sh

demo: setup
	@$(PY) -m octopus demo

# A 3-member etcd cluster and 3 octopus servers on loopback: replication, a lock surviving
# SIGKILL of its holder's node, client fail-over, quorum loss; all torn down at the end.
cluster-demo: setup
	@$(PY) -m octopus.cluster.demo

bench: setup
	@$(PY) bench/run_all.py

docs: setup
	@$(PY) scripts/api_reference.py

# The docs site in site/ (mkdocs.yml): --strict fails on a broken link or anchor and on a
# page of docs/ missing from the nav. docs/api.md must be current (`make docs`).
docs-site: setup
	@$(PY) scripts/api_reference.py --check
	@$(PY) -m mkdocs build --strict --quiet
	@echo "[docs-site] built site/index.html"

lint: setup
	@$(PY) -m ruff check octopus tests bench scripts examples
	@$(PY) -m ruff format --check octopus tests bench

clean:
	rm -rf $(VENV) build site *.egg-info .pytest_cache .hypothesis .mypy_cache
