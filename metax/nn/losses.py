"""Classification losses of the backbones, in any of the learners' loss forms."""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax.numpy as jnp
import optax


def classification_loss(
    model: nn.Module, *, train: bool, stateful: bool = False, takes_step: bool = False
) -> Callable:
    """Mean cross-entropy of ``model``'s logits with accuracy as aux, for the learners.

    ``model`` is a :class:`metax.nn.Backbone` (``apply(variables, x, step=, train=)``);
    batches are ``{"x": images, "y": int labels}``. The loss has the form the learners'
    options ``has_aux=True, stateful=..., takes_step=...`` describe. With ``stateful``
    the state is the model's ``batch_stats``, updated when ``train`` (support
    statistics) and used as they are otherwise (the query normalised with the
    support's statistics).

    Example:
      >>> import jax, jax.numpy as jnp, metax
      >>> model = metax.nn.Conv4(num_classes=3, features=4)
      >>> params = model.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))["params"]
      >>> loss = metax.nn.classification_loss(model, train=True)
      >>> value, aux = loss(params, {"x": jnp.zeros((6, 28, 28, 1)), "y": jnp.arange(6) % 3})
      >>> sorted(aux)
      ['accuracy']
    """

    def loss(params, *args):
        state = args[0] if stateful else None
        batch = args[1] if stateful else args[0]
        step = args[-1] if takes_step else 0
        variables = {"params": params, **({"batch_stats": state} if stateful else {})}
        if stateful and train:
            logits, updates = model.apply(
                variables, batch["x"], step=step, train=True, mutable=["batch_stats"]
            )
            state = updates["batch_stats"]
        else:
            logits = model.apply(variables, batch["x"], step=step, train=train)
        value = optax.softmax_cross_entropy_with_integer_labels(logits, batch["y"]).mean()
        aux = {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["y"])}
        return (value, (state, aux)) if stateful else (value, aux)

    return loss
