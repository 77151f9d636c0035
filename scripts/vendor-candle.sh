#!/usr/bin/env bash
# Regenerates vendor/candle-core from the published crate plus vendor/candle-core.patch,
# or with --check verifies that the committed vendor/ tree is exactly that (CI runs it).
# Usage: scripts/vendor-candle.sh [--check]
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.11.1
sha256=d11c8be87cfbaef9ebb62fb3f850d1fc8e00cc1d11d393fdbe55a4d5c2cdb325
url="https://static.crates.io/crates/candle-core/candle-core-$version.crate"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
crate="$work/candle-core.crate"
# The registry cache of an earlier build holds the same file; else download it.
cached=$(ls ~/.cargo/registry/cache/*/candle-core-$version.crate 2>/dev/null | head -n 1 || true)
if [ -n "$cached" ]; then cp "$cached" "$crate"; else curl -fsSL -m 60 -o "$crate" "$url"; fi
echo "$sha256  $crate" | sha256sum -c --quiet
tar xzf "$crate" -C "$work"
up="$work/candle-core-$version"
tree="$work/tree"
mkdir -p "$tree"
# What the vendored copy keeps: the library sources, licence and readme (examples,
# tests and benches are dropped; the patched Cargo.toml no longer names them).
cp -r "$up/src" "$up/Cargo.toml" "$up/LICENSE" "$up/README.md" "$tree/"
(cd "$tree" && patch -s -p1 < "$OLDPWD/vendor/candle-core.patch")
cp vendor/candle-core/ONEREC-PATCH.md "$tree/"
if [ "${1:-}" = "--check" ]; then
  if diff -r "$tree" vendor/candle-core > "$work/diff"; then
    echo "vendor/candle-core == candle-core $version + vendor/candle-core.patch"
  else
    head -n 40 "$work/diff"
    echo "vendor/candle-core differs from candle-core $version + vendor/candle-core.patch; run scripts/vendor-candle.sh" >&2
    exit 1
  fi
else
  rm -rf vendor/candle-core
  cp -r "$tree" vendor/candle-core
  echo "regenerated vendor/candle-core from candle-core $version + vendor/candle-core.patch"
fi
