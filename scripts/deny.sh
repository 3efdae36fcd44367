#!/usr/bin/env bash
# `cargo deny check` (advisories, bans, licenses, sources; deny.toml). Installs cargo-deny into
# .tools/bin when missing. The RustSec advisory database is fetched when github.com is reachable;
# otherwise (CI here reaches only the package registries) the snapshot in .ci/advisory-db.tar.gz is used
# and its date printed: refresh it with scripts/deny.sh --update-snapshot on a machine with GitHub.
set -euo pipefail
cd "$(dirname "$0")/.."
DENY_VERSION=0.20.2
TOOLS=$PWD/.tools
DENY=$TOOLS/bin/cargo-deny
CARGO=${CARGO:-cargo}
# cargo-deny's folder for https://github.com/RustSec/advisory-db (the default db-urls entry).
DB=${CARGO_HOME:-$HOME/.cargo}/advisory-dbs/advisory-db-3157b0e258782691
SNAPSHOT=.ci/advisory-db.tar.gz
SNAPSHOT_COMMIT=.ci/advisory-db.commit

if ! { [ -x "$DENY" ] && "$DENY" --version | grep -qF "$DENY_VERSION"; }; then
  echo "installing cargo-deny $DENY_VERSION into $TOOLS"
  "$CARGO" install --quiet --locked cargo-deny --version "$DENY_VERSION" --root "$TOOLS"
fi

if [ "${1:-}" = "--update-snapshot" ]; then
  "$DENY" fetch db
  git -C "$DB" archive --format=tar HEAD crates README.md LICENSE.txt | gzip -9 > "$SNAPSHOT"
  git -C "$DB" log -1 --format='%H %cI' > "$SNAPSHOT_COMMIT"
  echo "snapshot updated: $(cat "$SNAPSHOT_COMMIT")"
  exit 0
fi

if "$DENY" fetch db >/dev/null 2>&1; then
  echo "advisory database: fetched ($(git -C "$DB" log -1 --format='%h %cs'))"
else
  read -r commit date < "$SNAPSHOT_COMMIT"
  age=$(( ( $(date +%s) - $(date -d "$date" +%s) ) / 86400 ))
  echo "advisory database: GitHub unreachable, using the committed snapshot $commit of $date ($age days old)"
  rm -rf "$DB" && mkdir -p "$DB"
  tar -xzf "$SNAPSHOT" -C "$DB"
  # cargo-deny reads the database's date from its git HEAD.
  git -C "$DB" init -q
  git -C "$DB" add -A
  GIT_AUTHOR_DATE=$date GIT_COMMITTER_DATE=$date git -C "$DB" -c user.name=snapshot \
    -c user.email=snapshot@localhost commit -qm "RustSec advisory-db $commit"
fi

"$CARGO" fetch --locked --quiet
"$DENY" --offline check --hide-inclusion-graph
