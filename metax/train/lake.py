"""Lake et al.'s original one-shot protocol (20 runs of 20-way 1-shot) on a saved run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np

from metax.data.lake import read_runs, run_ways
from metax.train.config import load_config
from metax.train.run import FAMILIES, load


def evaluate_lake(
    runs_dir: str | Path, checkpoint: str | Path, *, per_image: bool = False
) -> dict[str, Any]:
    """Error rate per run and overall of the Omniglot model in the run directory ``checkpoint``.

    Each run is one episode: fine-tune on its training images as the model's test
    episodes are fine-tuned, then classify its test images, all at once (transductive
    with batch statistics) and, with ``per_image``, also each image alone (see
    ``Omniglot.episode_logits``). The model must have been meta-trained as
    ``len(training images)``-way 1-shot. Restoring it needs no training data.
    """
    ways = run_ways(runs_dir)  # the runs first: they are the argument most often wrong
    config = load_config(FAMILIES, Path(checkpoint) / "config.json")
    if config.family != "omniglot":
        raise ValueError(
            f"{checkpoint} is a {config.family} run; Lake's runs need an Omniglot model."
        )
    if config.ways != ways or config.shots != 1:
        raise ValueError(
            f"the runs are {ways}-way 1-shot but the checkpoint was meta-trained {config.ways}-way "
            f"{config.shots}-shot; train with --ways {ways} --shots 1."
        )
    episodes = read_runs(runs_dir, size=config.image_size)
    run, state = load(checkpoint)
    results: dict[str, Any] = {"checkpoint": str(checkpoint)}
    for scoring in ("transductive", "per_image")[: 1 + per_image]:
        logits = jax.jit(
            lambda task, p=scoring == "per_image": run.family.episode_logits(
                run.learner, state.meta_params, state.model_state, task, per_image=p
            )
        )
        errors = {
            n: float(np.mean(np.argmax(logits(t), -1) != t.query["y"])) for n, t in episodes.items()
        }
        results[scoring] = {"runs": errors, "error_rate": float(np.mean(list(errors.values())))}
    return results
