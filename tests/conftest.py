import jax
import pytest


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory):
    """Resized datasets are cached once per test session, never in the user's home."""
    mp = pytest.MonkeyPatch()
    mp.setenv("METAX_CACHE", str(tmp_path_factory.mktemp("metax-cache")))
    yield
    mp.undo()


@pytest.fixture
def x64():
    """Runs a test in float64 (finite differences and 1e-6 closed-form checks need it)."""
    with jax.enable_x64(True):
        yield
