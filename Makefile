# secretsync — build, test, lint, generate, demo.
CARGO ?= cargo

.PHONY: build test test-deps lint fmt crds demo e2e clean

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

## Regenerate crds/ from the Rust types.
crds:
	$(CARGO) run -q --bin secretsync -- crds --out crds

## The main job on an embedded default: no cloud account, no cluster.
demo: build
	./examples/demo.sh

clean:
	$(CARGO) clean
