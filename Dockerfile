# syntax=docker/dockerfile:1@sha256:ecfaec9ed6d810b56388c508f4121597bfbba70d41a6dfeee4d8cad5f295fc32
# secretsync controller image for a Docker engine with BuildKit: a static (glibc, crt-static) binary on
# distroless/static, user 65532, linux/amd64 and linux/arm64.
#
#   docker buildx build --platform linux/amd64,linux/arm64 -t IMAGE .      # compiles in the build stage
#   docker build -t IMAGE .                                                # the engine's own platform
#
# The build stage runs on the build machine's platform ($BUILDPLATFORM) and cross-compiles to the target's
# ($TARGETARCH): no emulation, which would make a Rust build many times slower.
#
# BINARY=prebuilt skips the compile and takes dist/linux-$TARGETARCH/secretsync from the build context
# instead (the release workflow builds the binaries on native runners first). Without a Docker engine
# (this project's CI), `make image` builds the same layout from Containerfile.scratch with podman or
# buildah and a binary built on the host.
#
# Base images are pinned by the digest of their multi-platform index. The digests were not pulled here
# (no registry access); each was checked to be the one other public projects build and pull for both
# amd64 and arm64 (see docs/image.md). Dependabot (.github/dependabot.yml) proposes updates.
ARG BINARY=source

# ---- build: compile on the build platform, for the target platform --------------------------------
FROM --platform=$BUILDPLATFORM rust:1.95-bookworm@sha256:6258907abe69656e41cd992e0b705cdcfabcbbe3db374f92ed2d47121282d4a1 AS build
ARG TARGETARCH
ARG BUILDARCH
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# Debian's cross toolchain when the target's architecture differs from the build machine's: `ring` and
# jemalloc have C parts, and crt-static links the target's libc.a. (Not pinned to package versions: the
# digest-pinned base image fixes the Debian release, whose security updates we want.)
# hadolint ignore=DL3008
RUN case "$TARGETARCH" in \
      amd64) arch=x86_64; deb=amd64 ;; \
      arm64) arch=aarch64; deb=arm64 ;; \
      *) echo "unsupported TARGETARCH: $TARGETARCH (amd64, arm64)" >&2; exit 1 ;; \
    esac \
 && echo "$arch-unknown-linux-gnu" > /rust-target \
 && rustup target add "$arch-unknown-linux-gnu" \
 && if [ "$TARGETARCH" != "$BUILDARCH" ]; then \
      apt-get update \
      && apt-get install -y --no-install-recommends "gcc-${arch//_/-}-linux-gnu" "libc6-dev-$deb-cross" \
      && rm -rf /var/lib/apt/lists/* \
      && { echo "export CARGO_TARGET_${arch^^}_UNKNOWN_LINUX_GNU_LINKER=$arch-linux-gnu-gcc"; \
           echo "export CC_${arch}_unknown_linux_gnu=$arch-linux-gnu-gcc"; \
           echo "export AR_${arch}_unknown_linux_gnu=$arch-linux-gnu-ar"; } > /cross-env; \
    else : > /cross-env; fi
WORKDIR /src
COPY . .
# RUSTFLAGS apply to the target only (not to build scripts) because --target is given.
RUN --mount=type=cache,id=cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=secretsync-target-$TARGETARCH,target=/src/target \
    source /cross-env \
 && target=$(cat /rust-target) \
 && RUSTFLAGS='-C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"' \
    cargo build --release --locked --target "$target" -p secretsync --bin secretsync \
 && install -D -m 0755 "target/$target/release/secretsync" /out/secretsync

FROM scratch AS binary-source
COPY --from=build /out/secretsync /secretsync

# ---- or: a binary built before (release workflow), dist/linux-amd64/secretsync, dist/linux-arm64/secretsync
FROM scratch AS binary-prebuilt
ARG TARGETARCH
COPY dist/linux-${TARGETARCH}/secretsync /secretsync

# hadolint ignore=DL3006
FROM binary-${BINARY} AS binary

# ---- runtime: the binary, CA certificates, /etc/passwd with nonroot (65532), nothing else (no shell)
FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
ARG VERSION=dev
ARG REVISION=unknown
ARG SOURCE=https://github.com/secretsync/secretsync
LABEL org.opencontainers.image.title="secretsync" \
      org.opencontainers.image.description="Keeps Kubernetes Secrets in sync with external secret stores" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.url="${SOURCE}" \
      org.opencontainers.image.documentation="${SOURCE}/blob/main/docs/image.md" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=binary --chmod=0755 /secretsync /secretsync
# nonroot; the controller needs no writable filesystem (the chart mounts an emptyDir for the audit file).
USER 65532:65532
# /metrics, then /livez and /readyz.
EXPOSE 8080 8081
ENTRYPOINT ["/secretsync", "controller"]
