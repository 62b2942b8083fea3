# Finex worker fleet. Two commands on a fresh machine: `make dev` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV   := .venv
PY     := $(VENV)/bin/python
FINEX  := $(VENV)/bin/finex
PYTEST := $(VENV)/bin/pytest
# Where the Kubernetes control-plane binaries are cached (outside the repository).
K8S_CACHE ?= $(HOME)/.cache/finex/k8s
export K8S_CACHE

.PHONY: help bootstrap lock k8s-tools image dev test test-unit test-integration test-e2e test-node lint fmt \
        bench bench-hotpath bench-operator bench-autoscale bench-recovery chaos cluster-up cluster-down \
        kind-up kind-down clean chart-sync chart-lint chart-version

help: ## Show the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

bootstrap: ## Install Debian packages (redis, postgresql, prometheus) and the venv, when absent
	@hack/bootstrap.sh

lock: bootstrap ## Resolve pyproject's dependencies again into requirements*.lock, with hashes (needs PyPI)
	$(PY) hack/lock.py

k8s-tools: ## Build the pinned Kubernetes control plane, kubelet, etcd, kwok, kubectl and helm (cached)
	@hack/build-k8s-tools.sh

image: bootstrap ## Build the OCI images (finex-workers, pause) without Docker (cached by input hash)
	@hack/build-image.sh

dev: bootstrap ## Run the fleet locally: Redis + Postgres, migrate, seed, workers, full recompute
	@$(FINEX) dev

test: bootstrap k8s-tools image ## Run every test tier (unit, integration, e2e, promtool rules)
	$(PYTEST) tests

test-unit: bootstrap ## Pure-function tests only
	$(PYTEST) tests/unit

test-integration: bootstrap ## Tests against real Redis and PostgreSQL
	$(PYTEST) tests/unit tests/integration

chaos: bootstrap ## The chaos tier at full size: faults on a live fleet, the ledger after each
	FINEX_CHAOS_JOBS=$${FINEX_CHAOS_JOBS:-400} FINEX_CHAOS_PG_OUTAGE=$${FINEX_CHAOS_PG_OUTAGE:-60} \
	    $(PYTEST) tests/chaos
	FINEX_STATEFUL_EXAMPLES=$${FINEX_STATEFUL_EXAMPLES:-300} FINEX_STATEFUL_STEPS=$${FINEX_STATEFUL_STEPS:-50} \
	    $(PYTEST) tests/integration/test_stateful.py

test-e2e: bootstrap k8s-tools image ## Tests against the local kube-apiserver
	$(PYTEST) tests/e2e

test-node: bootstrap k8s-tools image ## The fleet on the real node: helm install, a pool, restart, faults
	$(PYTEST) tests/node

lint: bootstrap ## ruff, mypy (strict), the import contracts (docs/architecture.md), the locks, the chart version
	$(PY) hack/lock.py --check
	$(PY) hack/chart-version.py --check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	@$(PYTEST) --collect-only -q tests >/dev/null || { echo "lint: a test module does not import (run pytest --collect-only tests)" >&2; exit 1; }

fmt: bootstrap ## Apply ruff's formatting and fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: bootstrap ## Benchmarks: ratios against baselines measured in the same run
	$(PY) bench/run.py

bench-hotpath: bootstrap ## Worker hot path vs rq SimpleWorker, forking Worker, a Lua floor; profiles
	$(PY) bench/hotpath.py --profile

bench-recovery: bootstrap ## Dead time after crashes: retry lateness and abandoned-job recovery
	$(PY) bench/recovery.py

bench-operator: bootstrap k8s-tools ## Operator latency: pool change to Deployment, vs a plain Deployment
	$(PY) bench/operator_latency.py

bench-autoscale: bootstrap k8s-tools ## Autoscale reaction vs an HPA-like loop; scale-in storm vs kubectl scale
	$(PY) bench/autoscale.py

chart-sync: ## Copy crds/ and ops/prometheus-rules.yml into the chart (their single sources)
	$(PY) hack/sync-chart.py

chart-version: bootstrap ## Record the chart's version and hash after a bump (UNRELEASED=1: re-record an untagged one)
	$(PY) hack/chart-version.py --record $(if $(filter 1,$(UNRELEASED)),--unreleased)

chart-lint: bootstrap k8s-tools ## helm lint the chart, check its copies, hadolint the Dockerfile
	$(PY) hack/sync-chart.py --check
	$(K8S_CACHE)/$$(grep ^KUBERNETES_VERSION= hack/k8s-versions.env | cut -d= -f2)/bin/helm lint --strict \
	    --kube-version $$(grep ^KUBERNETES_VERSION= hack/k8s-versions.env | cut -d= -f2) charts/finex-workers
	$(VENV)/bin/hadolint Dockerfile

cluster-up: bootstrap k8s-tools image ## Local control plane on loopback; REAL_NODE=1 adds containerd + kubelet
	$(PY) -m tests.support.cluster up $(if $(filter 1,$(REAL_NODE)),--real-node)

cluster-down: ## Stop the local control plane started by cluster-up
	$(PY) -m tests.support.cluster down

# The node tier's install, on a workstation's kind cluster (Docker needed; this machine has none,
# so CI never runs it). KIND_REDIS_URL and KIND_DATABASE_URL must be reachable from the Pods.
kind-up: image ## Workstations with Docker: kind cluster, the image loaded, Secrets, the chart
	@test -n "$(KIND_REDIS_URL)" -a -n "$(KIND_DATABASE_URL)" || { echo "kind-up: set KIND_REDIS_URL and KIND_DATABASE_URL (reachable from Pods), e.g. redis://host.docker.internal:6379/0" >&2; exit 2; }
	kind get clusters | grep -qx finex || kind create cluster --name finex --config hack/kind-config.yaml
	kind load image-archive --name finex $(K8S_CACHE)/images/finex-workers.tar
	kubectl create namespace finex --dry-run=client -o yaml | kubectl apply -f -
	kubectl label --overwrite namespace finex pod-security.kubernetes.io/enforce=restricted
	kubectl -n finex create secret generic finex-redis --from-literal=url='$(KIND_REDIS_URL)' \
	    --dry-run=client -o yaml | kubectl apply -f -
	kubectl -n finex create secret generic finex-postgres --from-literal=url='$(KIND_DATABASE_URL)' \
	    --dry-run=client -o yaml | kubectl apply -f -
	helm upgrade --install finex charts/finex-workers --namespace finex --wait \
	    --set image.pullPolicy=Never --set migrations.enabled=true

kind-down: ## Delete the kind cluster
	kind delete cluster --name finex

clean: ## Remove local data (.data) and caches; keeps the k8s binary cache
	rm -rf .data .pytest_cache .mypy_cache .ruff_cache
