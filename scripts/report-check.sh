#!/usr/bin/env bash
# Opens an `onerec report` HTML file in a real headless browser (Debian's chromium,
# installed if missing): takes a screenshot, and fails if the page logs anything to
# the console (script errors, resources that fail to load) or if the rendered DOM
# lacks a section or a chart.
#
#   scripts/report-check.sh runs/quickstart/report.html [screenshot.png]
#
# Exit status 0 = opened, screenshot written, no console messages, every section and
# chart present. The page has no scripts and no external resources, so any console
# line at all is an error.
set -euo pipefail

report=${1:?usage: scripts/report-check.sh REPORT.html [SCREENSHOT.png]}
[ -f "$report" ] || { echo "error: $report does not exist" >&2; exit 2; }
report=$(realpath "$report")
shot=${2:-${report%.html}.png}

if ! command -v chromium >/dev/null 2>&1; then
  echo "chromium not found: installing the Debian package" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y chromium >/dev/null || { apt-get update >/dev/null && apt-get install -y chromium >/dev/null; }
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run_chromium() {
  # A fresh profile per run; no network services, no sandbox (root in a container).
  local profile
  profile=$(mktemp -d "$work/profile.XXXX")
  timeout 180 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" "$@"
}

# 1. Screenshot of the page (tall window: the whole report).
rm -f "$shot"
run_chromium --hide-scrollbars --window-size=1400,4400 --screenshot="$shot" "file://$report" \
  >"$work/shot.out" 2>"$work/shot.err" || true
if [ ! -s "$shot" ] || [ "$(head -c 8 "$shot" | od -An -tx1 | tr -d ' \n')" != "89504e470d0a1a0a" ]; then
  echo "error: no PNG screenshot written to $shot; chromium said:" >&2
  tail -20 "$work/shot.err" >&2
  exit 1
fi

# 2. The page's console (chromium logs each message as `...:INFO:CONSOLE:line] "text"`;
#    older builds `CONSOLE(line)`),
#    and the DOM after rendering.
run_chromium --enable-logging=stderr --v=0 --dump-dom "file://$report" >"$work/dom.html" 2>"$work/console.err" || true
status=0
if grep -E ':CONSOLE[:(]|Uncaught|Failed to load resource' "$work/console.err" >"$work/errors.txt"; then
  echo "error: the page logged to the console:" >&2
  cat "$work/errors.txt" >&2
  status=1
fi
if [ ! -s "$work/dom.html" ]; then
  echo "error: chromium dumped no DOM; it said:" >&2
  tail -20 "$work/console.err" >&2
  exit 1
fi
for id in loss ranking lr moe alignment tokenizer; do
  grep -q "<section id=\"$id\"" "$work/dom.html" || { echo "error: section #$id missing from the rendered page" >&2; status=1; }
done
want=$(grep -o '<svg' "$report" | wc -l)
got=$(grep -o '<svg' "$work/dom.html" | wc -l)
if [ "$want" -eq 0 ] || [ "$got" -ne "$want" ]; then
  echo "error: $want charts in the file, $got in the rendered page" >&2
  status=1
fi
empty=$(grep -c 'class="note">skipped' "$report" || true)
echo "report-check: $report: $got charts rendered, $empty sections skipped, console $([ $status -eq 0 ] && echo clean || echo NOT clean); screenshot $shot ($(wc -c <"$shot") bytes)"
exit $status
