# TMI — developer entry points. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed

# Debian packages, by the targets that need them (installed with apt-get only when missing).
APT_CORE := postgresql dcmtk orthanc orthanc-dicomweb orthanc-python ca-certificates
APT_BROWSER := chromium chromium-driver

.PHONY: help install apt-core apt-browser test test-unit lint typecheck bench bench-deid bench-copy bench-crosswalk \
        clean demo bench-pipeline bench-large bench-gateway tf-fmt localstack-install

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  \033[36m%-18s\033[0m %s\n",$$1,$$2}'

apt-core:
	@scripts/ensure-apt.sh $(APT_CORE)

apt-browser:
	@scripts/ensure-apt.sh $(APT_BROWSER)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@set -o pipefail; $(PIP) install -q --upgrade pip 2>&1 | { grep -v "is ignored" || true; }
	@set -o pipefail; $(PIP) install -q -e ".[dev]" 2>&1 | { grep -v "is ignored" || true; }
	@$(PY) -c "import tmi, pydicom, psycopg, boto3, moto, fastapi" || (echo "install failed" >&2; exit 1)
	@$(PY) scripts/compile_project.py >/dev/null  # the editable project's bytecode (see the script)
	@touch $(STAMP)

install: apt-core apt-browser $(STAMP) ## Create .venv with the project + dev deps; apt-get what is missing

test: install ## Run every test (unit, integration against real services, LocalStack lane)
	$(PY) -m pytest tests

test-unit: $(STAMP) ## Unit tests only (no services)
	$(PY) -m pytest tests/unit

tf-fmt: $(STAMP) ## Terraform: fmt -check -recursive (also part of make test) and validate the provider-free module
	$(VENV)/bin/terraform fmt -check -recursive -diff terraform
	cd terraform/modules/policies && TF_DATA_DIR=$$(mktemp -d) sh -c '$(CURDIR)/$(VENV)/bin/terraform init -backend=false -input=false >/dev/null && $(CURDIR)/$(VENV)/bin/terraform validate'

localstack-install: ## Install LocalStack's Python 3.13 venv under .run/localstack-venv (the tests do it on demand)
	localstack/run-host.sh install

lint: $(STAMP) ## Ruff
	$(VENV)/bin/ruff check tmi adapters functions gateway tests bench

typecheck: $(STAMP) ## Mypy (strict on the core)
	$(VENV)/bin/mypy

bench: install bench-deid bench-copy bench-crosswalk bench-pipeline bench-large bench-gateway ## Run the benchmarks; results in bench/results/

bench-deid: $(STAMP)
	$(PY) -m bench.deid

bench-copy: $(STAMP) ## Pixel-copy methods tried for tmi deid, on one 500 MB corpus file (after bench-deid)
	$(PY) -m bench.copy_paths

bench-crosswalk: $(STAMP)
	$(PY) -m bench.crosswalk

bench-pipeline: $(STAMP)
	$(PY) -m bench.pipeline

bench-large: $(STAMP) ## One ~500 MB tomosynthesis instance through the local stack: time and memory per process
	$(PY) -m bench.large_instance

bench-gateway: $(STAMP)
	$(PY) -m bench.gateway

demo: install ## Run the pipeline end to end on synthetic mammography (starts the local stack; see docs/pipeline.md)
	$(VENV)/bin/tmi demo

clean: ## Remove caches and generated corpora (keeps .venv and .run)
	rm -rf .pytest_cache .mypy_cache .ruff_cache bench/corpus
