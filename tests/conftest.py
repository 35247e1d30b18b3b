"""Shared fixtures for the library's tests: the reference tensors and tiny models.

Hypothesis runs derandomized (the same examples every run) and without its example database,
so the suite is deterministic and writes nothing into the repository.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from helpers import FIXTURES, TINY_HF, small_args

settings.register_profile("book", max_examples=40, deadline=None, derandomize=True, database=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("book")


@pytest.fixture(scope="session")
def ref():
    """The transformers reference tensors, as plain in-memory arrays."""
    from mistral_np.safetensors import load_file
    return {k: np.array(v) for k, v in load_file(FIXTURES / "reference.safetensors").items()}


@pytest.fixture(scope="session")
def tiny_model():
    """The float32 fixture model (vocab 96, 2 layers, 4 heads / 2 kv heads, W = 6)."""
    import mistral_np
    return mistral_np.load(TINY_HF)


@pytest.fixture(scope="session")
def small_model():
    """A random model of small_args() (dim 16, 2 layers, 4 heads / 2 kv heads, W = 4)."""
    from mistral_np import random_model
    return random_model(small_args(), seed=0)
