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
    worker = "PYTEST_XDIST_WORKER" in os.environ  # the controller made the folders
    _session_folder("METAX_CACHE", "metax-data-cache-", keep=worker)  # never the user's cache
    _session_folder("JAX_COMPILATION_CACHE_DIR", "metax-xla-cache-", keep=True)
    _share_compilations()


def _session_folder(variable: str, prefix: str, *, keep: bool) -> None:
    """A temporary folder in ``variable`` for the session, removed at its end.

    Set in the environment, so that pytest-xdist's workers (started after this) and the
    `metax` commands that tests start all share it; with ``keep``, a value already set stays.
    """
    if not (keep and variable in os.environ):
        os.environ[variable] = tempfile.mkdtemp(prefix=prefix)
        atexit.register(shutil.rmtree, os.environ[variable], True)


def _share_compilations() -> None:
    """One XLA compilation cache for the session's processes and the commands they start.

    Many tests compile the same programs (a run, its resume, the same run on one process and
    on two); a cache hit returns the very executable compiled before, so no number changes.
    ``JAX_COMPILATION_CACHE_DIR=`` (empty) turns it off.
    """
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
    jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"] or None)
    jax.config.update(
        "jax_persistent_cache_min_compile_time_secs",
        float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]),
    )


@pytest.fixture
def x64():
    """Runs a test in float64 (finite differences and 1e-6 closed-form checks need it)."""
    with jax.enable_x64(True):
        yield
