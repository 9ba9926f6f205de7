"""SGD, AdaGrad and row-wise AdaGrad in `jax.numpy`, for a sharded train step; state sharded like its weight.

The same update rules and state sizes as `membed.optim` and the planner's
`membed.plan.constants.OPTIMIZERS`, written functionally so one `jax.jit`
holds the whole step:

* `sgd`: no state;
* `adagrad`: one accumulator value per weight value (tables and dense weights);
* `rowwise_adagrad`: one float32 accumulator per table row (FBGEMM's), a full
  AdaGrad accumulator for dense weights.

A `Slot` says whether a state array follows its weight value for value
(sharded exactly like it) or row for row (shape `(rows,)`, split where the
weight's rows are split, else replicated), so the step can give every state
array its sharding.

Example:
    >>> [slot.kind for slot in OPTIMIZERS["rowwise_adagrad"].slots(table=True)]
    ['row']
"""

from __future__ import annotations

import dataclasses

EPSILON = 1e-8


@dataclasses.dataclass(frozen=True)
class Slot:
    """One state array of a weight: `value` (the weight's shape) or `row` (one value per row, float32)."""

    kind: str


@dataclasses.dataclass(frozen=True)
class JaxOptimizer:
    """An update rule: `slots(table)` says what state a weight has; `apply` takes one step."""

    name: str
    table_slots: tuple[Slot, ...]
    dense_slots: tuple[Slot, ...]

    def slots(self, table: bool) -> tuple[Slot, ...]:
        return self.table_slots if table else self.dense_slots

    def init(self, weight, table: bool) -> list:
        """Zero state for `weight` (a JAX array), on the default placement (the step shards it)."""
        import jax.numpy as jnp

        return [jnp.zeros(weight.shape, weight.dtype) if slot.kind == "value"
                else jnp.zeros(weight.shape[:1], "float32") for slot in self.slots(table)]

    def apply(self, weight, gradient, state: list, table: bool, learning_rate: float) -> tuple:
        """(new weight, new state) after one step on `gradient`."""
        import jax.numpy as jnp

        if not state:  # sgd
            return weight - learning_rate * gradient, []
        (accumulator,) = state
        if self.slots(table)[0].kind == "row":
            axes = tuple(range(1, gradient.ndim))
            accumulator = accumulator + (jnp.mean(jnp.square(gradient), axis=axes) if axes else jnp.square(gradient))
            scale = (jnp.sqrt(accumulator) + EPSILON).reshape(accumulator.shape + (1,) * (gradient.ndim - 1))
        else:
            accumulator = accumulator + jnp.square(gradient)
            scale = jnp.sqrt(accumulator) + EPSILON
        return weight - learning_rate * gradient / scale, [accumulator]


OPTIMIZERS: dict[str, JaxOptimizer] = {
    "sgd": JaxOptimizer("sgd", (), ()),
    "adagrad": JaxOptimizer("adagrad", (Slot("value"),), (Slot("value"),)),
    "rowwise_adagrad": JaxOptimizer("rowwise_adagrad", (Slot("row"),), (Slot("value"),)),
}


def get(name: str) -> JaxOptimizer:
    """The optimizer `name`; ValueError listing the valid names otherwise."""
    try:
        return OPTIMIZERS[name]
    except KeyError:
        raise ValueError(f"Unknown sharded optimizer {name!r}. Use one of: {', '.join(OPTIMIZERS)}.") from None
