"""Redraw every figure of the book into figures/ from project code.

    python tools/make_figures.py            # all chapters
    python tools/make_figures.py rolling_cache sliding_window

Each chapter's module of src/mistral_np/figures/ has make(out_dir) -> list of written paths; the
chapters call the same functions, so a figure here and in the rendered book come from one piece of
code. Figure functions write their PNG only when MISTRAL_NP_WRITE_FIGURES=1, which this sets.
"""
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # as the chapters do: clean timing curves
os.environ["MISTRAL_NP_WRITE_FIGURES"] = "1"
import importlib  # noqa: E402
import pkgutil  # noqa: E402
import sys  # noqa: E402

import matplotlib

matplotlib.use("Agg")

from mistral_np import figures  # noqa: E402


def main(names):
    names = names or sorted(m.name for m in pkgutil.iter_modules(figures.__path__))
    for name in names:
        module = importlib.import_module(f"mistral_np.figures.{name}")
        if not hasattr(module, "make"):          # a helper module (output.py), no figures of its own
            continue
        for path in module.make(figures.FIGURES_DIR):
            print(f"{name}: {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
