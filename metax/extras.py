"""Which optional packages each part of metax needs, checked before any work."""

from __future__ import annotations

import importlib.util

# extra -> modules it installs (see pyproject.toml's optional-dependencies)
EXTRAS = {
    "train": ("orbax.checkpoint", "matplotlib", "tqdm", "PIL"),
    "tfds": ("tensorflow_datasets",),
}


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    missing = []
    for module in EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a parent package missing, or hidden
            found = False
        if not found:
            missing.append(module)
    return missing


def require_extra(extra: str) -> None:
    """Raises an ImportError saying what to install if ``extra``'s modules are missing."""
    missing = missing_modules(extra)
    if missing:
        raise ImportError(
            f"this needs the '{extra}' extra of metax (missing: {', '.join(missing)}); "
            f"install it with: pip install 'metax-learn[{extra}]'"
        )
