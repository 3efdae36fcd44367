# syntax=docker/dockerfile:1
# secretsync controller image: a static (musl) binary on distroless/static, non-root.
#   make image                      # docker build -t ghcr.io/secretsync/secretsync:dev .
#   make image IMAGE=registry.example.com/secretsync:0.1.0

FROM rust:1.95 AS build
ARG RUST_TARGET=x86_64-unknown-linux-musl
# musl-tools: musl-gcc, for the C parts of `ring` (TLS).
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add "$RUST_TARGET"
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --target "$RUST_TARGET" -p secretsync --bin secretsync \
 && install -D -m 0755 "target/$RUST_TARGET/release/secretsync" /out/secretsync

FROM gcr.io/distroless/static:nonroot
LABEL org.opencontainers.image.title="secretsync" \
      org.opencontainers.image.description="Keeps Kubernetes Secrets in sync with external secret stores" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/secretsync /secretsync
# nonroot (65532); the controller needs no writable filesystem.
USER 65532:65532
# /metrics, then /livez and /readyz.
EXPOSE 8080 8081
ENTRYPOINT ["/secretsync", "controller"]
