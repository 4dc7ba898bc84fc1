"""What `pip install metax-learn` (no extras) gives: the library works, the command says what to add."""

import subprocess
import sys
import textwrap

HIDE_TRAIN_EXTRA = textwrap.dedent(
    """
    import importlib.abc, sys

    class HideTrainExtra(importlib.abc.MetaPathFinder):  # as if never installed
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"orbax", "matplotlib", "tqdm", "PIL"}:
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, HideTrainExtra())
    """
)


def run_without_extra(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", HIDE_TRAIN_EXTRA + textwrap.dedent(code)],
        capture_output=True,
        text=True,
    )


def test_the_core_runs_without_the_train_extra():
    result = run_without_extra(
        """
        import jax, jax.numpy as jnp, optax, metax
        loss = lambda w, b: jnp.mean((w - b) ** 2)
        learner = metax.maml(loss, inner_opt=optax.sgd(0.1), num_steps=1)
        task = metax.Task(support=jnp.ones(3), query=jnp.ones(3))
        print(float(jax.grad(lambda m: learner.loss(m, task)[0])(learner.init(0.0)).params))
        """
    )
    assert result.returncode == 0, result.stderr
    assert abs(float(result.stdout) + 1.28) < 1e-6  # (1 - 0.1 * 2) * 2 * (0.2 - 1)


def test_the_command_says_which_extra_to_install_before_any_work(tmp_path):
    result = run_without_extra(
        f"""
        from metax.cli import main
        main(["train", "sinusoid", "--steps", "5", "--out", {str(tmp_path / "run")!r}])
        """
    )
    assert result.returncode == 1
    assert "pip install 'metax-learn[train]'" in result.stderr, result.stderr
    assert "orbax.checkpoint, matplotlib, tqdm, PIL" in result.stderr
    assert not (tmp_path / "run").exists()
    imported = run_without_extra("import metax.train")
    assert "pip install 'metax-learn[train]'" in imported.stderr
