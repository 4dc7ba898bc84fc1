import jax
import optax
import pytest


def pytest_addoption(parser):
    parser.addoption(
        "--zero-outer-optimizer",
        action="store_true",
        help="replace optax.adam (every training path's outer optimizer) by optax.set_to_zero(), "
        "so that nothing meta-learns: every test marked `learning` must then fail",
    )


def pytest_configure(config):
    if config.getoption("--zero-outer-optimizer"):
        optax.adam = lambda *args, **kwargs: optax.set_to_zero()


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
