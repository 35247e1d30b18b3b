#!/usr/bin/env bash
# Runs every test: the library's tests (equivalences, reference parity, bad input, training),
# every chapter through nbval against its stored outputs, then the book build and its browser check.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
export MPLBACKEND=Agg
# Running the tests must leave the repository as it was: compare tracked files before and after.
tracked_before=$(git status --porcelain --untracked-files=no 2>/dev/null || true)
echo "== library tests"
.venv/bin/python -m pytest -p no:cacheprovider -q tests --ignore=tests/browser
echo "== chapters (nbval)"
.venv/bin/python -m pytest -p no:cacheprovider -q --nbval book/ --nbval-sanitize-with nbval_sanitize.cfg
if [ -f tests/browser/test_book.py ]; then
  echo "== book build + browser check"
  if ! command -v chromium >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "== installing Debian's chromium for the browser check (about 30 s)"
    (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null
  fi
  .venv/bin/jupyter-book build --all -W --keep-going . >/dev/null
  .venv/bin/python -m pytest -p no:cacheprovider -q tests/browser
fi
tracked_after=$(git status --porcelain --untracked-files=no 2>/dev/null || true)
if [ "$tracked_before" != "$tracked_after" ]; then
  echo "error: running the tests changed tracked files:" >&2
  diff <(echo "$tracked_before") <(echo "$tracked_after") >&2 || true
  exit 1
fi
echo "== tracked files unchanged by the tests"
