"""Code that draws the book's figures, one module per chapter. Each module has
`make(out_dir)` that writes its figures (PNG) and returns their paths; the chapter calls the same
functions, so every figure can be rebuilt from the chapter or with `python tools/make_figures.py`."""
from ..paths import FIGURES_DIR  # noqa: F401  (the chapters import it from here)
