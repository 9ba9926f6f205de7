"""One registry of embedding strategies, keyed by name.

A strategy module registers its class with `@register`; `membed.strategies`
imports every module of the package, so a new strategy is one new file.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from membed.strategies.base import EmbeddingStrategy

STRATEGIES: dict[str, type[EmbeddingStrategy]] = {}


def register(cls: type[EmbeddingStrategy]) -> type[EmbeddingStrategy]:
    if not cls.strategy_name:
        raise TypeError(f"{cls.__name__} has no `strategy_name`.")
    if cls.strategy_name in STRATEGIES and STRATEGIES[cls.strategy_name] is not cls:
        raise ValueError(f"Strategy name {cls.strategy_name!r} is registered twice.")
    STRATEGIES[cls.strategy_name] = cls
    # Registered with Keras too, so that `.keras` files load without custom_objects.
    return keras.saving.register_keras_serializable(package="membed")(cls)


def names() -> list[str]:
    return sorted(STRATEGIES)


def get(name: str) -> type[EmbeddingStrategy]:
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"Unknown strategy {name!r}. Use one of: {', '.join(names())}.") from None


def resolve_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """Fills defaults and parses string values; rejects unknown option names.

    Defaults, parsers and names all come from the strategy's `config_class`;
    the values are not yet checked against a table (`StrategyConfig.resolve` does that).
    """
    config = get(name).config_class.from_options(options, owner=f"strategy {name!r}")
    return config.as_dict()


def cost(name: str, vocab_size: int, dim: int, counts: np.ndarray | None = None, **options):
    """Strategy `name`'s cost with these options (strings parsed, as `build` takes them)."""
    return get(name).cost(vocab_size, dim, counts=counts, **resolve_options(name, options))


def build(
    name: str,
    vocab_size: int,
    dim: int,
    counts: np.ndarray | None = None,
    layer_name: str | None = None,
    **options,
) -> EmbeddingStrategy:
    """Constructs and builds strategy `name`; `counts` (per-id counts) go to every strategy, used where needed."""
    cls = get(name)
    layer = cls(vocab_size=vocab_size, dim=dim, name=layer_name, counts=counts, **resolve_options(name, options))
    layer.build((None,))
    return layer


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Parses 'qr:num_buckets=50,combiner=add' into ('qr', {...}).

    A value may be a list: 'mixed_dim:boundaries=400,1700,dims=64,32,16'
    (a comma-separated piece without '=' continues the previous value).
    """
    name, _, rest = spec.partition(":")
    name = name.strip()
    get(name)
    options: dict[str, str] = {}
    key = None
    for piece in filter(None, (p.strip() for p in rest.split(","))):
        if "=" in piece:
            key, _, value = piece.partition("=")
            key = key.strip()
            options[key] = value.strip()
        elif key is None:
            raise ValueError(f"Malformed strategy spec {spec!r}: expected NAME:key=value,...")
        else:
            options[key] += "," + piece
    return name, options
