import atexit
import os
import shutil
import tempfile

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
    _share_compilations()


def _share_compilations() -> None:
    """One XLA compilation cache for the session, this process and the `metax` commands it starts.

    Many tests compile the same programs (a run, its resume, the same run on one process and
    on two); a cache hit returns the very executable compiled before, so no number changes.
    A cache the caller set (``JAX_COMPILATION_CACHE_DIR``, empty to turn it off) is kept.
    """
    if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
        os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="metax-xla-cache-")
        atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"] or None)
    jax.config.update(
        "jax_persistent_cache_min_compile_time_secs",
        float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
    )


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
