"""How a figure function hands its figure over: shown by the notebook cell that drew it, and
written to figures/ only when asked.

The drawing functions of chapters 1-5, 7, 9 and the appendix build a `Figure` (matplotlib's own
class, object API: no pyplot, no backend switch) and end with `finish(fig, path)`, which returns
the figure. A notebook cell that ends with it shows it as a PNG, so a figure of measured numbers is
the one of the run whose numbers the cell prints. The PNG file is written only when the
environment variable MISTRAL_NP_WRITE_FIGURES is 1: tools/run_notebook.py and tools/make_figures.py
set it, the tests (nbval re-executes every chapter) do not, so running the tests leaves the
repository as it was.
"""
import io
import os
from pathlib import Path

import matplotlib.figure

WRITE_ENV = "MISTRAL_NP_WRITE_FIGURES"


def writing():
    """True when figure files should be written (MISTRAL_NP_WRITE_FIGURES=1)."""
    return os.environ.get(WRITE_ENV) == "1"


class Figure(matplotlib.figure.Figure):
    """A matplotlib Figure that a notebook shows as a PNG, drawn as `finish` would write it."""

    savefig_kw = {"dpi": 110}

    def _repr_png_(self):
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", **self.savefig_kw)
        return buffer.getvalue()


def finish(fig, path, **savefig_kw):
    """Remember how `fig` is saved, write it to `path` if writing(), and return it."""
    fig.savefig_kw = savefig_kw or Figure.savefig_kw
    if writing():
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, **fig.savefig_kw)
    return fig
