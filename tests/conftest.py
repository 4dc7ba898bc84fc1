import jax
import pytest


@pytest.fixture
def x64():
    """Runs a test in float64 (finite differences and 1e-6 closed-form checks need it)."""
    with jax.enable_x64(True):
        yield
