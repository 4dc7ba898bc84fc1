"""Every ```python block of the README runs and does what its text says; every
`metax train` command of its ```bash blocks is a run the command line accepts."""

import dataclasses
import re
import shlex
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

README = (Path(__file__).parents[1] / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)


def first_example(ns, out):
    before, after = map(float, re.findall(r"(\d+\.\d+)", out)[:2])
    assert after < 0.5 * before, out  # fine-tuning the meta-learned model helps


def per_step_batch_norm(ns, out):
    info, start = ns["info"], ns["learner"].init(ns["variables"]["params"])
    assert np.isfinite(info.loss)
    moved = jax.tree.map(lambda a, b: not np.array_equal(a, b), ns["meta_params"], start)
    assert all(jax.tree.leaves(moved))  # one meta-step moved every parameter and rate
    assert info.state["StepBatchNorm_0"]["mean"].shape == (2, 32)  # support statistics per step


def maml_pp_annealing(ns, out):
    rates = ns["meta_params"].hparams["w"]
    assert rates.shape == (5,) and not np.allclose(rates, 0.1)  # the rates were learned
    assert str(np.asarray(rates)[0])[:4] in out  # and printed


def nnx_interop(ns, out):
    task = ns["metax"].Task(
        support={"x": jnp.ones((4, 1)), "y": jnp.ones((4, 1))},
        query={"x": jnp.ones((4, 1)), "y": jnp.ones((4, 1))},
    )
    grads = jax.grad(lambda m: ns["learner"].loss(m, task)[0])(ns["meta_params"])
    norms = [float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads)]
    assert len(norms) == 4 and all(n > 0 for n in norms)  # NNX's State is a plain pytree here


CHECKS = [first_example, per_step_batch_norm, maml_pp_annealing, nnx_interop]


def test_every_block_has_a_check():
    assert len(BLOCKS) == len(CHECKS)


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block(index, capsys):
    namespace = {"__name__": "__readme__"}
    exec(compile(BLOCKS[index], f"README.md block {index}", "exec"), namespace)
    CHECKS[index](namespace, capsys.readouterr().out)


def train_commands() -> list[str]:
    """The README's complete `metax train` commands (not `--resume`: that needs a run)."""
    bash = "\n".join(re.findall(r"```bash\n(.*?)```", README, flags=re.S)).replace("\\\n", " ")
    lines = (line.partition(" #")[0] for line in bash.splitlines() if "metax train" in line)
    commands = ["train" + line.split("metax train", 1)[1].rstrip(" &") for line in lines]
    return [c for c in commands if "..." not in c and "--resume" not in c]


def test_every_train_command_of_the_readme_is_a_run_the_cli_accepts():
    """Each command's flags parse and build a config and its learners (as `metax train`
    does before it compiles): a README example with a meta-batch that does not divide
    over its devices, or a setting its algorithm refuses, fails here."""
    from metax import cli
    from metax.train.run import build

    commands = train_commands()
    assert len(commands) >= 6, commands
    parser = cli.build_parser()
    for command in commands:
        config = cli._config(parser.parse_args(shlex.split(command.replace("$i", "0"))), parser)
        build(dataclasses.replace(config, devices=1))  # the learners (this process has one device)
