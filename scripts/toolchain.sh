#!/usr/bin/env bash
# Makes sure the toolchain of rust-toolchain.toml (or the one given, e.g. the MSRV) is installed.
# rustup installs it when static.rust-lang.org is reachable. On a machine that cannot download
# toolchains but whose `stable` is that very version, `stable` is registered under the version's name.
# Exits 1 when neither works.
set -euo pipefail
cd "$(dirname "$0")/.."
want=${1:-$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)}
if rustup run "$want" rustc --version >/dev/null 2>&1; then exit 0; fi
if rustup toolchain install "$want" --profile minimal --component rustfmt --component clippy >/dev/null 2>&1; then
  echo "installed toolchain $want"; exit 0
fi
stable=$(RUSTUP_TOOLCHAIN=stable rustc --version 2>/dev/null | awk '{print $2}')
if [ "$stable" = "$want" ]; then
  home=$(rustup show home)
  host=$(RUSTUP_TOOLCHAIN=stable rustc -vV | sed -n 's/^host: //p')
  ln -sfn "$home/toolchains/stable-$host" "$home/toolchains/$want-$host"
  echo "toolchain $want: the installed stable ($stable), registered under its version"
  exit 0
fi
echo "toolchain $want is not installed and cannot be downloaded here (stable is ${stable:-absent})" >&2
exit 1
