"""Named (user, item) strategy pairs: the example's two models and compression presets.

The accuracy suite and `python -m membed reproduce` use these, so that the
example's table is reproduced in every run and every strategy is trained at
stated compressions.

Presets:
    baseline: `full` on users and items (the example's baseline).
    example: `example_qr` on users, `example_md` on items (the example's
        memory-efficient model).
    5x, 20x, 100x: the strategy on users and items, with the options its
        `options_for_compression` gives for about that many times fewer
        parameters than a full table of the same size.
"""

from __future__ import annotations

import dataclasses

from membed import strategies

COMPRESSIONS = (5, 20, 100)


@dataclasses.dataclass(frozen=True)
class Pair:
    """A rating model's embedding strategies; `error` says why it cannot be built."""

    preset: str
    user: str
    item: str
    user_options: dict = dataclasses.field(default_factory=dict)
    item_options: dict = dataclasses.field(default_factory=dict)
    error: str | None = None

    @property
    def strategy(self) -> str:
        return self.user if self.user == self.item else f"{self.user}+{self.item}"


BASELINE = Pair("baseline", "full", "full")
EXAMPLE = Pair("example", "example_qr", "example_md")


def compression_presets(strategy: str, num_users: int, num_items: int, dim: int = 64,
                        compressions=COMPRESSIONS) -> list[Pair]:
    """The strategy at each compression; unreachable ones carry the reason in `error`."""
    cls = strategies.get(strategy)
    pairs = []
    for compression in compressions:
        preset = f"{compression}x"
        try:
            user_options = cls.options_for_compression(num_users, dim, compression)
            item_options = cls.options_for_compression(num_items, dim, compression)
        except ValueError as error:
            pairs.append(Pair(preset, strategy, strategy, error=str(error)))
            continue
        pairs.append(Pair(preset, strategy, strategy, user_options, item_options))
    return pairs


def accuracy_pairs(strategy: str, num_users: int, num_items: int, dim: int = 64) -> list[Pair]:
    """The pairs the accuracy suite trains for one registered strategy."""
    if strategy == "full":
        return [BASELINE]
    if strategy in (EXAMPLE.user, EXAMPLE.item):
        return [EXAMPLE]
    return compression_presets(strategy, num_users, num_items, dim)
