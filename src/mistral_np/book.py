"""Two helpers the chapters share: a function's source, shown where the text describes it, and
paths printed relative to the repository."""
import inspect
from pathlib import Path

from .paths import REPO_ROOT


def show(obj):
    """Print the source of a function or class of the library (the chapters show, never copy)."""
    print(inspect.getsource(obj))


def rel(path):
    """A path inside the repository, relative to its root."""
    return Path(path).relative_to(REPO_ROOT)
