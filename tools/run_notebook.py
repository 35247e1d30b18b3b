"""Execute chapter notebooks in place (fresh kernel, working directory book/), storing outputs.

    python tools/run_notebook.py book/05_sliding_window.ipynb [more.ipynb ...]

Run it after editing a chapter, then commit the notebook with its outputs: nbval compares them.
It sets MISTRAL_NP_WRITE_FIGURES=1, so the chapters also write their figures under figures/ (the
tests leave it unset and write nothing).
"""
import os
from pathlib import Path
import sys
import time

import nbformat
from nbclient import NotebookClient


def merge_streams(nb):
    """One stdout (and one stderr) output per run of prints: text printed piece by piece while
    streaming would otherwise be stored, and rendered, one piece per line."""
    for cell in nb.cells:
        merged = []
        for out in cell.get("outputs", []):
            if (out.output_type == "stream" and merged and merged[-1].output_type == "stream"
                    and merged[-1].name == out.name):
                merged[-1].text = "".join(merged[-1].text) + "".join(out.text)
            else:
                merged.append(out)
        if "outputs" in cell:
            cell.outputs = merged
    return nb


def run(path, timeout=900):
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    t0 = time.perf_counter()
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    nbformat.write(merge_streams(nb), path)
    print(f"{path}: executed in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    os.environ["MISTRAL_NP_WRITE_FIGURES"] = "1"     # the kernel inherits it
    for p in sys.argv[1:]:
        run(p)
