#!/usr/bin/env bash
# Regenerates ffi-cpp/src/bindings.rs from ffi-cpp/shim/bnref.h with bindgen.
#   regen-bindings.sh          rewrite the committed bindings
#   regen-bindings.sh --check  fail if the committed bindings are out of date (for CI)
# Needs libclang (Debian/Ubuntu: apt-get install -y libclang-dev).
set -euo pipefail

crate_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
committed="$crate_dir/src/bindings.rs"

case "${1:-}" in
  "")
    cargo build --quiet --manifest-path "$crate_dir/Cargo.toml" --features regen-bindings
    echo "wrote $committed"
    ;;
  --check)
    fresh="$(mktemp)"
    trap 'rm -f "$fresh"' EXIT
    BNREF_BINDINGS_OUT="$fresh" \
      cargo build --quiet --manifest-path "$crate_dir/Cargo.toml" --features regen-bindings
    if ! diff -u "$committed" "$fresh"; then
      echo "error: $committed is out of date; run ffi-cpp/regen-bindings.sh" >&2
      exit 1
    fi
    echo "bindings are current"
    ;;
  *)
    echo "usage: $0 [--check]" >&2
    exit 2
    ;;
esac
