"""membed: memory-efficient embedding tables for recommender models, measured.

Strategies live in `membed.strategies` (one registry), data in `membed.data`,
the example's rating model in `membed.model` and its training loop in
`membed.train`.
"""

__version__ = "0.1.0"
