#!/usr/bin/env bash
# Sets everything up and builds the rendered book (Jupyter Book 1.x) from the executed chapters.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
echo "== building the book"
.venv/bin/jupyter-book build --all -W --keep-going . 
echo
echo "The book is built. Open it in a browser:"
echo "  file://$(pwd)/_build/html/book/intro.html"
echo "or run the chapters yourself in Jupyter: .venv/bin/jupyter lab book/"
