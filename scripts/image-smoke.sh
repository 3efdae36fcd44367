#!/usr/bin/env bash
# Exports the root filesystem of the controller image into a new temporary directory and prints that
# directory (the only line on stdout), for a smoke run of the image's own binary where containers
# cannot run (`podman run` fails in some sandboxes): e.g.
#   dir=$(./scripts/image-smoke.sh) && chroot "$dir" /secretsync --version; rm -rf "$dir"
# A static glibc binary in the chroot resolves names through the chroot's /etc/hosts.
#
# Checks the layout on the way: /secretsync is an executable static binary, the CA bundle and the
# nonroot user (65532) are there, and the image's config runs /secretsync controller as 65532.
#
# Environment: IMAGE (default ghcr.io/secretsync/secretsync:dev), TOOL = podman | buildah | docker
# (default: the first present; docker only when its engine answers), SMOKE_DIR (extract here instead of
# a new mktemp directory; must be empty or absent). The caller removes the directory.
set -euo pipefail
IMAGE=${IMAGE:-ghcr.io/secretsync/secretsync:dev}
log() { printf 'image-smoke: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

if [ -z "${TOOL:-}" ]; then
  if command -v podman >/dev/null 2>&1; then TOOL=podman
  elif command -v buildah >/dev/null 2>&1; then TOOL=buildah
  elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then TOOL=docker
  else die "needs podman, buildah or a Docker engine"
  fi
fi

if [ -n "${SMOKE_DIR:-}" ]; then
  mkdir -p "$SMOKE_DIR"
  [ -z "$(ls -A "$SMOKE_DIR")" ] || die "SMOKE_DIR=$SMOKE_DIR is not empty"
  DIR=$SMOKE_DIR
else
  DIR=$(mktemp -d "${TMPDIR:-/tmp}/secretsync-rootfs.XXXXXX")
fi

log "exporting $IMAGE with $TOOL into $DIR"
case "$TOOL" in
  podman | docker)
    cid=$("$TOOL" create "$IMAGE")
    trap '"$TOOL" rm -f "$cid" >/dev/null 2>&1 || true' EXIT
    "$TOOL" export "$cid" | tar -x -C "$DIR" -f -
    entrypoint=$("$TOOL" image inspect --format '{{json .Config.Entrypoint}} {{.Config.User}}' "$IMAGE")
    ;;
  buildah)
    ctr=$(buildah from --pull=never "$IMAGE")
    trap 'buildah umount "$ctr" >/dev/null 2>&1 || true; buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
    mnt=$(buildah mount "$ctr")
    cp -a "$mnt"/. "$DIR"/
    # (buildah's --format has no json function: Go's list format, normalised below)
    entrypoint=$(buildah inspect --type image --format '{{.OCIv1.Config.Entrypoint}} {{.OCIv1.Config.User}}' "$IMAGE")
    ;;
  *) die "TOOL must be podman, buildah or docker (got $TOOL)" ;;
esac

# The layout the chart and the docs rely on.
[ -x "$DIR/secretsync" ] || die "/secretsync is missing or not executable"
if command -v readelf >/dev/null 2>&1 && readelf -l "$DIR/secretsync" 2>/dev/null | grep -q 'program interpreter'; then
  die "/secretsync is dynamically linked: it cannot run in a scratch or distroless/static image"
fi
grep -q -- '-----BEGIN CERTIFICATE-----' "$DIR/etc/ssl/certs/ca-certificates.crt" 2>/dev/null \
  || die "/etc/ssl/certs/ca-certificates.crt is missing or empty"
grep -q '^nonroot:x:65532:65532:' "$DIR/etc/passwd" 2>/dev/null || die "/etc/passwd lacks nonroot (65532)"
case "$entrypoint" in
  '["/secretsync","controller"] 65532'* | '[/secretsync controller] 65532'*) ;;
  *) die "image config is '$entrypoint', want entrypoint [\"/secretsync\",\"controller\"] and user 65532" ;;
esac
log "ok: /secretsync ($(awk -v b="$(stat -c %s "$DIR/secretsync")" 'BEGIN { printf "%.1f", b / 1048576 }') MiB), CA bundle, nonroot user, entrypoint"
echo "$DIR"
