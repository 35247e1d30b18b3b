"""The chapters' one shared helper: a function's source, shown where the text describes it."""
import inspect


def show(obj):
    """Print the source of a function or class of the library (the chapters show, never copy)."""
    print(inspect.getsource(obj))
