"""The measured peaks the estimator's constants are fitted to, and the estimate's ratio to each.

Every case was measured in a fresh process by the memory suite's harness
(`membed.measure.measure_peaks` at commit 51bf107, the step of today's
`bench.steps.memory_case`; the `adagrad` rows again with `bench.steps.memory_case` once its
accumulators were filled in place, which removed one table-sized copy): TensorFlow 2.21 on CPU with its BFC allocator
(`TF_CPU_ALLOCATOR_USE_BFC=true`), Keras 3.15, Zipf ids (exponent 1.05; a
strategy that uses counts got their expected counts over 10 draws per id),
an MSE loss against a (batch, dim) target, one eager step. The optimizer
is `membed.optim.get(name)` in place of the harness's Adam (`adam` is
Keras's). Peaks are TensorFlow's allocator peaks in bytes: `lookup` after
the layer is built (weights and index included), `train` over the first
step (slots created in it); None where the layer has no trainable weights.

What the model does not catch (see `ratios()`): the BFC allocator hands a
request a whole free chunk when it is less than twice the request, and
counts the chunk: a (100000, 64) table measures about 8 MiB more than its
25.6 MB (full at 1e5, hash at 1e6), a (50000, 64) one about 3 MiB. ROBE's
and TT's lookups allocate intermediates of their own (index arithmetic,
the product of the gathered cores) that the constants only average.

Example:
    >>> found = ratios()
    >>> sum(0.8 <= r.ratio <= 1.25 for r in found) / len(found) >= 0.95
    True
"""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class MeasuredCase:
    """One measured case: what ran, and its allocator peaks in bytes."""

    strategy: str
    vocab_size: int
    dim: int
    options: dict
    optimizer: str
    batch_size: int
    peak_alloc_bytes_lookup: int
    peak_alloc_bytes_train: int | None


@dataclasses.dataclass(frozen=True)
class Ratio:
    """Measured / estimated for one phase of one case."""

    case: MeasuredCase
    phase: str
    measured_bytes: int
    estimated_bytes: int

    @property
    def ratio(self) -> float:
        return self.measured_bytes / self.estimated_bytes

    def __repr__(self) -> str:
        c = self.case
        return (f"{c.strategy}:{c.vocab_size}:{c.dim}:{c.optimizer}:{self.phase} "
                f"{self.measured_bytes / 2**20:.1f}/{self.estimated_bytes / 2**20:.1f} MiB = {self.ratio:.2f}")


# strategy, vocab_size, dim, options, optimizer, batch_size, peak_alloc_bytes_lookup, peak_alloc_bytes_train
CASES: tuple[MeasuredCase, ...] = (
    MeasuredCase('dhe', 10**3, 64, {}, 'adam', 4096, 35489024, 37521408),
    MeasuredCase('dhe', 10**4, 64, {}, 'adam', 4096, 34212352, 36473088),
    MeasuredCase('dhe', 10**5, 64, {}, 'adagrad', 4096, 34212352, 36473088),
    MeasuredCase('dhe', 10**5, 32, {}, 'adam', 1024, 9080832, 9224448),
    MeasuredCase('dhe', 10**5, 64, {}, 'adam', 4096, 35489024, 37521408),
    MeasuredCase('dhe', 10**5, 64, {}, 'lazy_adam', 4096, 36276736, 39618560),
    MeasuredCase('dhe', 10**5, 64, {}, 'rowwise_adagrad', 4096, 35489024, 37521408),
    MeasuredCase('dhe', 10**5, 64, {}, 'sgd', 4096, 35489024, 37521664),
    MeasuredCase('dhe', 10**6, 64, {}, 'adam', 4096, 35489024, 37521408),
    MeasuredCase('dhe', 10**6, 64, {}, 'rowwise_adagrad', 4096, 34179584, 36472832),
    MeasuredCase('double_hash', 10**3, 64, {}, 'adam', 4096, 6245120, 10392064),
    MeasuredCase('double_hash', 10**4, 64, {}, 'adam', 4096, 6179072, 10357760),
    MeasuredCase('double_hash', 10**6, 64, {}, 'adam', 4096, 37715200, 130061312),
    MeasuredCase('double_hash', 10**6, 64, {}, 'rowwise_adagrad', 4096, 39812352, 43925248),
    MeasuredCase('double_hash', 10**7, 64, {}, 'rowwise_adagrad', 4096, 261326336, 265720576),
    MeasuredCase('example_md', 10**3, 64, {}, 'adam', 4096, 5452544, 18796800),
    MeasuredCase('example_md', 10**4, 64, {}, 'adam', 4096, 7476224, 20651776),
    MeasuredCase('example_md', 10**6, 64, {}, 'rowwise_adagrad', 4096, 118597120, 129916160),
    MeasuredCase('example_qr', 10**3, 64, {}, 'adam', 4096, 4140288, 9352192),
    MeasuredCase('example_qr', 10**4, 64, {}, 'adam', 4096, 4349184, 8525824),
    MeasuredCase('example_qr', 10**6, 64, {}, 'rowwise_adagrad', 4096, 19761920, 24849920),
    MeasuredCase('freq_hash', 10**3, 64, {}, 'adam', 4096, 4258048, 8470528),
    MeasuredCase('freq_hash', 10**4, 64, {}, 'adam', 4096, 4490240, 8702464),
    MeasuredCase('freq_hash', 10**6, 64, {}, 'adam', 4096, 37735680, 132375040),
    MeasuredCase('freq_hash', 10**6, 64, {}, 'rowwise_adagrad', 4096, 37987072, 42199296),
    MeasuredCase('full', 10**3, 64, {}, 'adam', 4096, 1600512, 5796608),
    MeasuredCase('full', 10**4, 64, {}, 'adam', 4096, 4656640, 18217984),
    MeasuredCase('full', 10**4, 64, {}, 'rowwise_adagrad', 4096, 4656640, 9315328),
    MeasuredCase('full', 50_000, 64, {}, 'sgd', 4096, 18873856, 23069696),
    MeasuredCase('full', 10**5, 64, {}, 'adagrad', 4096, 36717568, 71802112),
    MeasuredCase('full', 10**5, 64, {}, 'adam', 4096, 35668992, 183341056),
    MeasuredCase('full', 10**5, 64, {}, 'lazy_adam', 4096, 36717568, 99936256),
    MeasuredCase('full', 10**5, 64, {}, 'rowwise_adagrad', 4096, 36717568, 41944064),
    MeasuredCase('full', 10**5, 64, {}, 'sgd', 4096, 36717568, 41943808),
    MeasuredCase('full', 200_000, 64, {}, 'sgd', 4096, 53296640, 57492480),
    MeasuredCase('full', 300_000, 64, {}, 'adam', 4096, 78914560, 462917888),
    MeasuredCase('full', 300_000, 64, {}, 'sgd', 4096, 78896640, 83092480),
    MeasuredCase('full', 10**6, 64, {}, 'adagrad', 4096, 259163136, 515747072),
    MeasuredCase('full', 10**6, 64, {}, 'adam', 512, 256269312, 1536272640),
    MeasuredCase('full', 10**6, 64, {}, 'adam', 4096, 258114560, 1538117888),
    MeasuredCase('full', 10**6, 128, {}, 'adam', 4096, 516211712, 3167291136),
    MeasuredCase('full', 10**6, 32, {}, 'lazy_adam', 1024, 128267264, 384880896),
    MeasuredCase('full', 10**6, 64, {}, 'lazy_adam', 4096, 259163136, 774849024),
    MeasuredCase('full', 10**6, 64, {}, 'rowwise_adagrad', 512, 256265216, 264267008),
    MeasuredCase('full', 10**6, 64, {}, 'rowwise_adagrad', 4096, 258114560, 266116096),
    MeasuredCase('full', 10**6, 128, {}, 'rowwise_adagrad', 4096, 516211712, 526504704),
    MeasuredCase('full', 10**6, 64, {}, 'sgd', 4096, 259163136, 263358976),
    MeasuredCase('full', 3_000_000, 64, {}, 'adam', 4096, 770114560, 4610117888),
    MeasuredCase('full', 3_000_000, 64, {}, 'sgd', 4096, 771163136, 775358976),
    MeasuredCase('hash', 10**3, 64, {}, 'adam', 4096, 3221248, 8272640),
    MeasuredCase('hash', 10**4, 64, {}, 'adam', 4096, 3451648, 7909888),
    MeasuredCase('hash', 10**5, 64, {}, 'adam', 4096, 4707072, 19128064),
    MeasuredCase('hash', 10**6, 64, {}, 'adagrad', 4096, 36750336, 71742208),
    MeasuredCase('hash', 10**6, 64, {}, 'adam', 4096, 35701760, 183357440),
    MeasuredCase('hash', 10**6, 64, {}, 'lazy_adam', 4096, 36750336, 100512000),
    MeasuredCase('hash', 10**6, 64, {}, 'rowwise_adagrad', 4096, 35651072, 39698944),
    MeasuredCase('hash', 10**6, 64, {}, 'sgd', 4096, 36750336, 41795840),
    MeasuredCase('hash', 10**7, 64, {}, 'adam', 4096, 259195904, 1539182848),
    MeasuredCase('hash', 10**7, 64, {}, 'rowwise_adagrad', 4096, 259195904, 267181056),
    MeasuredCase('hash', 10**7, 64, {'num_rows': 100000}, 'sgd', 4096, 35701760, 39881472),
    MeasuredCase('hash', 10**8, 64, {}, 'adam', 4096, 271631360, 1613795584),
    MeasuredCase('mixed_dim', 10**3, 64, {}, 'adam', 4096, 4409856, 9338112),
    MeasuredCase('mixed_dim', 10**4, 64, {}, 'adam', 4096, 5107968, 10386176),
    MeasuredCase('mixed_dim', 10**4, 64, {}, 'rowwise_adagrad', 4096, 5107968, 10385664),
    MeasuredCase('mixed_dim', 10**5, 64, {}, 'adam', 4096, 8752384, 29964544),
    MeasuredCase('mixed_dim', 10**6, 64, {}, 'adagrad', 4096, 57559296, 106367232),
    MeasuredCase('mixed_dim', 10**6, 64, {}, 'adam', 4096, 57123840, 266292224),
    MeasuredCase('mixed_dim', 10**6, 64, {}, 'lazy_adam', 4096, 57123840, 178498304),
    MeasuredCase('mixed_dim', 10**6, 64, {}, 'rowwise_adagrad', 4096, 58058752, 66563072),
    MeasuredCase('mixed_dim', 10**6, 64, {}, 'sgd', 4096, 58058752, 62381056),
    MeasuredCase('mixed_dim', 10**7, 64, {}, 'adam', 4096, 498492928, 2242257920),
    MeasuredCase('mixed_dim', 10**7, 64, {}, 'rowwise_adagrad', 4096, 500557312, 589890816),
    MeasuredCase('qr', 10**3, 64, {}, 'adam', 4096, 6266112, 10461952),
    MeasuredCase('qr', 10**4, 64, {}, 'adam', 4096, 6274560, 10461184),
    MeasuredCase('qr', 10**4, 64, {}, 'rowwise_adagrad', 4096, 6274560, 10461184),
    MeasuredCase('qr', 10**5, 64, {}, 'adam', 4096, 4390144, 8585984),
    MeasuredCase('qr', 10**6, 64, {}, 'adagrad', 4096, 6067456, 10263552),
    MeasuredCase('qr', 10**6, 64, {}, 'adam', 4096, 4741120, 8936960),
    MeasuredCase('qr', 10**6, 64, {}, 'lazy_adam', 4096, 6067456, 10263296),
    MeasuredCase('qr', 10**6, 64, {}, 'rowwise_adagrad', 4096, 6067456, 10263552),
    MeasuredCase('qr', 10**6, 64, {}, 'sgd', 4096, 4741120, 8937216),
    MeasuredCase('qr', 10**7, 64, {}, 'adam', 4096, 6274560, 10804480),
    MeasuredCase('qr', 10**7, 64, {}, 'rowwise_adagrad', 4096, 7467008, 11663104),
    MeasuredCase('qr', 10**8, 64, {}, 'adam', 4096, 10810112, 30323200),
    MeasuredCase('quantized', 10**3, 64, {}, 'adam', 4096, 3510016, None),
    MeasuredCase('quantized', 10**4, 64, {}, 'adam', 4096, 3040768, None),
    MeasuredCase('quantized', 10**5, 64, {}, 'adam', 4096, 11496192, None),
    MeasuredCase('quantized', 10**6, 64, {'storage': 'bfloat16'}, 'adam', 4096, 130059008, 768545792),
    MeasuredCase('quantized', 10**6, 64, {}, 'adam', 4096, 71446016, None),
    MeasuredCase('quantized', 10**6, 64, {'storage': 'bfloat16'}, 'rowwise_adagrad', 4096, 131686656, 138639616),
    MeasuredCase('quantized', 10**6, 64, {'storage': 'bfloat16'}, 'sgd', 4096, 131686656, 135882496),
    MeasuredCase('quantized', 10**7, 64, {}, 'adam', 4096, 683107584, None),
    MeasuredCase('robe', 10**3, 64, {}, 'adam', 4096, 10414336, 10481408),
    MeasuredCase('robe', 10**4, 64, {}, 'adam', 4096, 7383040, 8416768),
    MeasuredCase('robe', 10**4, 64, {}, 'rowwise_adagrad', 4096, 10384640, 10435328),
    MeasuredCase('robe', 10**6, 64, {}, 'adam', 4096, 11551744, 19681024),
    MeasuredCase('robe', 10**6, 64, {}, 'sgd', 4096, 14614272, 14664704),
    MeasuredCase('robe', 10**7, 64, {}, 'adam', 4096, 43974400, 186470656),
    MeasuredCase('robe', 10**7, 64, {}, 'rowwise_adagrad', 4096, 39896320, 89598464),
    MeasuredCase('tt', 10**3, 64, {}, 'adam', 4096, 27257344, 44023296),
    MeasuredCase('tt', 10**4, 64, {}, 'adam', 4096, 27152128, 43916800),
    MeasuredCase('tt', 10**4, 64, {}, 'rowwise_adagrad', 4096, 25330944, 42095616),
    MeasuredCase('tt', 10**5, 64, {}, 'adam', 4096, 25454336, 42210560),
    MeasuredCase('tt', 10**6, 64, {}, 'adagrad', 4096, 27545088, 44300800),
    MeasuredCase('tt', 10**6, 64, {}, 'adam', 4096, 26344960, 43100416),
    MeasuredCase('tt', 10**6, 128, {}, 'adam', 4096, 40460800, 49886464),
    MeasuredCase('tt', 10**6, 64, {}, 'lazy_adam', 4096, 27545088, 44300544),
    MeasuredCase('tt', 10**6, 64, {}, 'rowwise_adagrad', 4096, 27545088, 44300800),
    MeasuredCase('tt', 10**6, 64, {}, 'sgd', 4096, 27545088, 44300800),
    MeasuredCase('tt', 10**7, 64, {}, 'adam', 4096, 28218368, 44982272),
    MeasuredCase('tt', 10**7, 64, {}, 'rowwise_adagrad', 4096, 28218368, 44982272),
    MeasuredCase('tt', 10**8, 64, {}, 'adam', 4096, 29665792, 58296064),
)


def _counts(case: MeasuredCase) -> Any:
    from membed import strategies
    from membed.data import DatasetIds

    if not strategies.get(case.strategy).needs_counts:
        return None
    # The memory suite's counts of the same ids (expected counts of the Zipf stream).
    return DatasetIds("synthetic-zipf", case.vocab_size).counts()


def ratios(cases: tuple[MeasuredCase, ...] = CASES) -> list[Ratio]:
    """Measured / estimated (`constants.ALLOCATOR` reservation) for each phase of each case."""
    from membed.plan.estimator import estimate_layout
    from membed.plan.layout import Layout

    found = []
    for case in cases:
        layout = Layout.of(case.strategy, case.vocab_size, case.dim, case.options, counts=_counts(case))
        estimate = estimate_layout(layout, case.optimizer, case.batch_size)
        found.append(Ratio(case, "lookup", case.peak_alloc_bytes_lookup, estimate.lookup_peak_bytes))
        if case.peak_alloc_bytes_train is not None:
            found.append(Ratio(case, "train", case.peak_alloc_bytes_train, estimate.train_peak_bytes()))
    return found
