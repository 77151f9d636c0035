#!/usr/bin/env bash
# Type-checks src/dist/nccl.rs against cudarc without the CUDA toolkit (which the `nccl`
# feature needs to build): a scratch crate includes the file beside a copy of the
# GradSync trait and `cargo check`s it with cudarc's dynamic-linking + fixed CUDA version
# features. A check only: nothing is linked or run. Usage: scripts/check-nccl.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src"
cat > "$tmp/Cargo.toml" <<TOML
[package]
name = "nccl_check"
version = "0.0.0"
edition = "2021"
[dependencies]
anyhow = "1"
cudarc = { version = "=0.19.10", default-features = false, features = ["std", "driver", "nccl", "cuda-12080", "dynamic-linking"] }
TOML
{
  echo 'pub mod dist {'
  echo '    use anyhow::Result;'
  # The trait, as src/dist/mod.rs declares it.
  sed -n '/^pub trait GradSync {/,/^}/p' "$root/src/dist/mod.rs"
  echo "    #[path = \"$root/src/dist/nccl.rs\"]"
  echo '    pub mod nccl;'
  echo '}'
} > "$tmp/src/lib.rs"
cargo check --quiet --manifest-path "$tmp/Cargo.toml" --target-dir "$root/target/nccl-check"
echo "src/dist/nccl.rs type-checks against cudarc 0.19.10"
