"""How a figure function hands its figure over: shown by the notebook cell that drew it, and
written to figures/ only when asked, all at one resolution.

Every drawing function builds a `Figure` (matplotlib's own class, object API: no pyplot, no backend
switch) and ends with `finish(fig, path)`, which returns the figure. A notebook cell that ends with
it shows it as a PNG, so a figure of measured numbers is the one of the run whose numbers the cell
prints. The PNG file is written only when the environment variable MISTRAL_NP_WRITE_FIGURES is 1:
tools/run_notebook.py and tools/make_figures.py set it, the tests (nbval re-executes every chapter)
do not, so running the tests leaves the repository as it was.
"""
import io
import os
from pathlib import Path

import matplotlib.figure

WRITE_ENV = "MISTRAL_NP_WRITE_FIGURES"


def writing():
    """True when figure files should be written (MISTRAL_NP_WRITE_FIGURES=1)."""
    return os.environ.get(WRITE_ENV) == "1"


SAVE = {"dpi": 130, "bbox_inches": "tight", "metadata": {"Software": None}}   # the same bytes on every run


class Figure(matplotlib.figure.Figure):
    """A matplotlib Figure that a notebook shows as a PNG, drawn as `finish` writes it."""

    def _repr_png_(self):
        return png_bytes(self)


def png_bytes(fig):
    """The figure as PNG bytes, as `finish` writes it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **SAVE)
    return buffer.getvalue()


def finish(fig, path):
    """Write `fig` to `path` if writing(), atomically, and return it."""
    if writing():
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(png_bytes(fig))
        os.replace(partial, path)
    return fig
