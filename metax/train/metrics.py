"""Metrics as JSON lines, and confidence intervals."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def mean_and_ci95(values: Any) -> tuple[float, float]:
    """Mean and half-width of its 95% normal confidence interval (1.96 standard errors).

    Non-finite values (a diverged task) make the interval NaN, and the mean inf or NaN.

    Example:
      >>> mean, half = mean_and_ci95([1.0, 2.0, 3.0])
      >>> mean, round(half, 4)
      (2.0, 1.1316)
    """
    values = np.asarray(values, np.float64).ravel()
    if values.size < 2:
        raise ValueError(f"a confidence interval needs at least 2 values, got {values.size}.")
    if not np.all(np.isfinite(values)):  # e.g. fine-tuning diverged on some task
        return float(np.mean(values)) if not np.any(np.isnan(values)) else math.nan, math.nan
    half = 1.96 * values.std(ddof=1) / math.sqrt(values.size)
    return float(values.mean()), float(half)


class MetricsLog:
    """Appends one JSON object per line to ``path``.

    On resume, :meth:`truncate_after` drops records past the restored step, so the
    log of a resumed run reads as if it had never stopped. With ``read_only`` (every
    process of a multi-process run but the first) writes are skipped.
    """

    def __init__(self, path: str | Path, *, read_only: bool = False):
        self.path, self.read_only = Path(path), read_only

    def write(self, record: dict[str, Any]) -> None:
        """Appends ``record`` and flushes it to disk."""
        if self.read_only:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict[str, Any]]:
        """All records (an incomplete last line, from a crash mid-write, is skipped)."""
        if not self.path.exists():
            return []
        records = []
        for line in self.path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def truncate_after(self, step: int) -> None:
        """Keeps only records with ``record["step"] <= step``."""
        if self.read_only:
            return
        kept = [r for r in self.read() if r.get("step", 0) <= step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
