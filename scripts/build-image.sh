#!/usr/bin/env bash
# `make image`: the controller image without a Docker engine and without pulling a base image.
#   1. builds the static release binary on the host (glibc, crt-static: no shared libraries needed);
#   2. stages a build context in target/image-context: the binary, the host's CA bundle, and minimal
#      /etc/passwd, /etc/group, /etc/nsswitch.conf with the nonroot user 65532;
#   3. builds Containerfile.scratch (FROM scratch) with docker (if its engine answers), podman or buildah.
#
# Environment:
#   IMAGE              tag of the image (default ghcr.io/secretsync/secretsync:dev)
#   BUILDER            docker | podman | buildah (default: the first that works, in that order)
#   SECRETSYNC_BINARY  use this already built static binary instead of step 1 (e.g. a CI artifact)
#   RUST_TARGET        default: <host arch>-unknown-linux-gnu (x86_64 or aarch64)
#   CA_BUNDLE          PEM bundle to ship (default: the host's, /etc/ssl/certs/ca-certificates.crt or
#                      /etc/pki/tls/certs/ca-bundle.crt)
#   CARGO              default cargo
# Prints the image reference and its size at the end. A cold release build takes about 10 minutes on
# 2 cores (fat LTO).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-ghcr.io/secretsync/secretsync:dev}
CARGO=${CARGO:-cargo}
CTX=target/image-context
log() { printf 'build-image: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

case "$(uname -m)" in
  x86_64 | amd64) host_arch=x86_64 ;;
  aarch64 | arm64) host_arch=aarch64 ;;
  *) host_arch=$(uname -m) ;;
esac
RUST_TARGET=${RUST_TARGET:-$host_arch-unknown-linux-gnu}

# ---- 1. the binary
if [ -n "${SECRETSYNC_BINARY:-}" ]; then
  BIN=$SECRETSYNC_BINARY
  [ -f "$BIN" ] || die "SECRETSYNC_BINARY=$BIN does not exist"
  log "using the prebuilt binary $BIN"
else
  log "building the static release binary for $RUST_TARGET (cold: about 10 minutes on 2 cores)"
  # getrandom_backend: randomness from the getrandom system call. A static glibc binary cannot look up
  # libc's getrandom() with dlsym, so getrandom would fall back to /dev/urandom, and the binary would
  # panic wherever /dev is missing (found by tests/image_chroot.rs).
  RUSTFLAGS='-C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"' \
    "$CARGO" build --release --target "$RUST_TARGET" -p secretsync --bin secretsync
  BIN=target/$RUST_TARGET/release/secretsync
fi
# A scratch image has no dynamic loader and no libc: the binary must be static.
if command -v readelf >/dev/null 2>&1; then
  if readelf -l "$BIN" 2>/dev/null | grep -q 'Requesting program interpreter'; then
    die "$BIN is dynamically linked (it names a program interpreter); build it with -C target-feature=+crt-static"
  fi
elif ldd "$BIN" >/dev/null 2>&1; then
  die "$BIN is dynamically linked; build it with -C target-feature=+crt-static"
fi

# ---- 2. the build context
if [ -z "${CA_BUNDLE:-}" ]; then
  for f in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
    if [ -s "$f" ]; then CA_BUNDLE=$f; break; fi
  done
fi
[ -n "${CA_BUNDLE:-}" ] && [ -s "$CA_BUNDLE" ] \
  || die "no CA bundle found (install ca-certificates, or set CA_BUNDLE=path/to/bundle.pem)"
grep -q -- '-----BEGIN CERTIFICATE-----' "$CA_BUNDLE" || die "$CA_BUNDLE holds no PEM certificate"

rm -rf "$CTX"
mkdir -p "$CTX/etc"
install -m 0755 "$BIN" "$CTX/secretsync"
install -m 0644 "$CA_BUNDLE" "$CTX/ca-certificates.crt"
cat >"$CTX/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$CTX/etc/group" <<'EOF'
root:x:0:
nonroot:x:65532:
EOF
# Names from /etc/hosts first, then DNS (glibc's built-in files and dns services; no NSS modules needed).
echo 'hosts: files dns' >"$CTX/etc/nsswitch.conf"
chmod 0644 "$CTX"/etc/*
cp Containerfile.scratch "$CTX/Containerfile"

VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$REVISION" != unknown ] && ! git diff --quiet HEAD -- 2>/dev/null; then REVISION="$REVISION-dirty"; fi
args=(--build-arg "VERSION=${VERSION:-dev}" --build-arg "REVISION=$REVISION" -t "$IMAGE" -f "$CTX/Containerfile")

# ---- 3. the image
if [ -z "${BUILDER:-}" ]; then
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then BUILDER=docker
  elif command -v podman >/dev/null 2>&1; then BUILDER=podman
  elif command -v buildah >/dev/null 2>&1; then BUILDER=buildah
  else
    die "no image builder: needs a Docker engine, podman or buildah (apt-get install podman buildah)"
  fi
fi
log "building $IMAGE with $BUILDER"
case "$BUILDER" in
  docker) docker build "${args[@]}" "$CTX" >&2 ;;
  podman) podman build --format oci "${args[@]}" "$CTX" >&2 ;;
  buildah) buildah build --format oci "${args[@]}" "$CTX" >&2 ;;
  *) die "BUILDER must be docker, podman or buildah (got $BUILDER)" ;;
esac
case "$BUILDER" in
  docker) size=$(docker image inspect --format '{{.Size}}' "$IMAGE") ;;
  podman) size=$(podman image inspect --format '{{.Size}}' "$IMAGE") ;;
  buildah) size=$(buildah inspect --type image --format '{{.Size}}' "$IMAGE" 2>/dev/null || echo "?") ;;
esac
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
if [[ $size =~ ^[0-9]+$ ]]; then
  log "$IMAGE: $(mib "$size") (binary $(mib "$(stat -c %s "$CTX/secretsync")"))"
fi
echo "$IMAGE"
