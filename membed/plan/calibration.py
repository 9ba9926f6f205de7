"""The measured peaks the estimator is checked against, and the estimate's ratio to each.

Every case was measured in a fresh process by the memory suite's harness
(`bench.steps.memory_case` through `measure_memory`): TensorFlow 2.21 on
CPU with its BFC allocator (`TF_CPU_ALLOCATOR_USE_BFC=true`), Keras 3.15,
Zipf ids (exponent 1.05; a strategy that uses counts gets the expected
counts of the same stream, `DatasetIds.counts`), an MSE loss against a
(batch, dim) target, one eager step. The optimizer is
`membed.optim.get(name)` (`adam` is Keras's). Peaks are TensorFlow's
allocator peaks in bytes: `lookup` after the layer is built (weights and
index included), `train` over the first step (slots created in it); None
where the layer has no trainable weights.

The harness ran with two changes that make small peaks repeatable: the
allocator region is reserved for every case, not only for those estimated
above 256 MiB, and the ids and the target are copied by TensorFlow's
allocator rather than handed over as NumPy buffers. Without them a peak of a few MiB moves by up to 2 MiB
between runs of the same case: the BFC allocator hands a request a whole
free chunk when that chunk is less than twice the request (a 1 MiB target
counted 2 MiB in a fresh 2 MiB region; a (100000, 64) table 32 MiB), and
`tf.constant` aliases a NumPy buffer or copies it, by its alignment.

How the terms were read: `python -c` over one case, with TensorFlow's fast
path off (`pywrap_tfe.TFE_Py_FastPathExecute` raising
`_FallbackException`, so that every eager op goes through
`execute.quick_execute`) and the allocator's `current` and `peak` bytes
printed after each op: the per-op tensors of `estimator.forward_bytes` and
`constants.StepConstants` are what those traces show.

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
    MeasuredCase('dhe', 10**3, 64, {}, 'adam', 4096, 35133696, 37360640),
    MeasuredCase('dhe', 10**4, 64, {}, 'adam', 4096, 35129600, 37360640),
    MeasuredCase('dhe', 10**5, 64, {}, 'adagrad', 4096, 35131648, 37360640),
    MeasuredCase('dhe', 10**5, 32, {}, 'adam', 1024, 8958208, 9728768),
    MeasuredCase('dhe', 10**5, 64, {}, 'adam', 4096, 35129600, 37360384),
    MeasuredCase('dhe', 10**5, 64, {}, 'lazy_adam', 4096, 35131648, 37360640),
    MeasuredCase('dhe', 10**5, 64, {}, 'rowwise_adagrad', 4096, 35133696, 37360384),
    MeasuredCase('dhe', 10**5, 64, {}, 'sgd', 4096, 35129600, 37360384),
    MeasuredCase('dhe', 10**6, 64, {}, 'adam', 4096, 35133696, 37360640),
    MeasuredCase('dhe', 10**6, 64, {}, 'rowwise_adagrad', 4096, 35133696, 37360640),
    MeasuredCase('double_hash', 10**3, 64, {}, 'adam', 4096, 5209344, 9340416),
    MeasuredCase('double_hash', 10**4, 64, {}, 'adam', 4096, 4986368, 9216768),
    MeasuredCase('double_hash', 10**6, 64, {}, 'adam', 4096, 30809344, 117400832),
    MeasuredCase('double_hash', 10**6, 64, {}, 'rowwise_adagrad', 4096, 30809344, 34940928),
    MeasuredCase('double_hash', 10**7, 64, {}, 'rowwise_adagrad', 4096, 261340928, 265690368),
    MeasuredCase('example_md', 10**3, 64, {}, 'adam', 4096, 6459648, 18814976),
    MeasuredCase('example_md', 10**4, 64, {}, 'adam', 4096, 7469056, 19876096),
    MeasuredCase('example_md', 10**6, 64, {}, 'rowwise_adagrad', 4096, 118570752, 129889792),
    MeasuredCase('example_qr', 10**3, 64, {}, 'adam', 4096, 5277696, 9457152),
    MeasuredCase('example_qr', 10**4, 64, {}, 'adam', 4096, 5378048, 9556992),
    MeasuredCase('example_qr', 10**6, 64, {}, 'rowwise_adagrad', 4096, 15515648, 19679488),
    MeasuredCase('freq_hash', 10**3, 64, {}, 'adam', 4096, 5288448, 9486080),
    MeasuredCase('freq_hash', 10**4, 64, {}, 'adam', 4096, 5518848, 9718528),
    MeasuredCase('freq_hash', 10**6, 64, {}, 'adam', 4096, 31063040, 119616512),
    MeasuredCase('freq_hash', 10**6, 64, {}, 'rowwise_adagrad', 4096, 31063040, 35261184),
    MeasuredCase('full', 10**3, 64, {}, 'adam', 4096, 3401216, 7597056),
    MeasuredCase('full', 10**4, 64, {}, 'adam', 4096, 5705216, 20018432),
    MeasuredCase('full', 10**4, 64, {}, 'rowwise_adagrad', 4096, 5705216, 10825728),
    MeasuredCase('full', 50_000, 64, {}, 'sgd', 4096, 15945216, 20141056),
    MeasuredCase('full', 10**5, 64, {}, 'adagrad', 4096, 28745216, 54846976),
    MeasuredCase('full', 10**5, 64, {}, 'adam', 4096, 28745216, 156748544),
    MeasuredCase('full', 10**5, 64, {}, 'lazy_adam', 4096, 28745216, 82979584),
    MeasuredCase('full', 10**5, 64, {}, 'rowwise_adagrad', 4096, 28745216, 32941056),
    MeasuredCase('full', 10**5, 64, {}, 'sgd', 4096, 28745216, 32941056),
    MeasuredCase('full', 200_000, 64, {}, 'sgd', 4096, 54345216, 58541056),
    MeasuredCase('full', 300_000, 64, {}, 'adam', 4096, 79945216, 463948544),
    MeasuredCase('full', 300_000, 64, {}, 'sgd', 4096, 79945216, 84141056),
    MeasuredCase('full', 10**6, 64, {}, 'adagrad', 4096, 259145216, 515726848),
    MeasuredCase('full', 10**6, 64, {}, 'adam', 512, 256269824, 1536273152),
    MeasuredCase('full', 10**6, 64, {}, 'adam', 4096, 259145216, 1539148544),
    MeasuredCase('full', 10**6, 128, {}, 'adam', 4096, 516259328, 3165260032),
    MeasuredCase('full', 10**6, 32, {}, 'lazy_adam', 1024, 128278016, 384891136),
    MeasuredCase('full', 10**6, 64, {}, 'lazy_adam', 4096, 259145216, 774830592),
    MeasuredCase('full', 10**6, 64, {}, 'rowwise_adagrad', 512, 256269824, 260629248),
    MeasuredCase('full', 10**6, 64, {}, 'rowwise_adagrad', 4096, 259145216, 265227264),
    MeasuredCase('full', 10**6, 128, {}, 'rowwise_adagrad', 4096, 516259328, 525674752),
    MeasuredCase('full', 10**6, 64, {}, 'sgd', 4096, 259145216, 263340800),
    MeasuredCase('full', 3_000_000, 64, {}, 'adam', 4096, 771145216, 4610165248),
    MeasuredCase('full', 3_000_000, 64, {}, 'sgd', 4096, 771145216, 775340800),
    MeasuredCase('hash', 10**3, 64, {}, 'adam', 4096, 3113728, 7283968),
    MeasuredCase('hash', 10**4, 64, {}, 'adam', 4096, 2665984, 6830592),
    MeasuredCase('hash', 10**5, 64, {}, 'adam', 4096, 5705216, 17526784),
    MeasuredCase('hash', 10**6, 64, {}, 'adagrad', 4096, 28745216, 53959680),
    MeasuredCase('hash', 10**6, 64, {}, 'adam', 4096, 28745216, 155766784),
    MeasuredCase('hash', 10**6, 64, {}, 'lazy_adam', 4096, 28745216, 82948096),
    MeasuredCase('hash', 10**6, 64, {}, 'rowwise_adagrad', 4096, 28745216, 32778496),
    MeasuredCase('hash', 10**6, 64, {}, 'sgd', 4096, 28745216, 32778496),
    MeasuredCase('hash', 10**7, 64, {}, 'adam', 4096, 259145216, 1538167040),
    MeasuredCase('hash', 10**7, 64, {}, 'rowwise_adagrad', 4096, 259145216, 264072192),
    MeasuredCase('hash', 10**7, 64, {'num_rows': 100000}, 'sgd', 4096, 28745216, 32778496),
    MeasuredCase('hash', 10**8, 64, {}, 'adam', 4096, 271580672, 1612779776),
    MeasuredCase('mixed_dim', 10**3, 64, {}, 'adam', 4096, 3388160, 7734528),
    MeasuredCase('mixed_dim', 10**4, 64, {}, 'adam', 4096, 4358912, 8614400),
    MeasuredCase('mixed_dim', 10**4, 64, {}, 'rowwise_adagrad', 4096, 4358912, 8614656),
    MeasuredCase('mixed_dim', 10**5, 64, {}, 'adam', 4096, 9281792, 30382848),
    MeasuredCase('mixed_dim', 10**6, 64, {}, 'adagrad', 4096, 60543744, 109391360),
    MeasuredCase('mixed_dim', 10**6, 64, {}, 'adam', 4096, 60543744, 246078976),
    MeasuredCase('mixed_dim', 10**6, 64, {}, 'lazy_adam', 4096, 60543744, 160745728),
    MeasuredCase('mixed_dim', 10**6, 64, {}, 'rowwise_adagrad', 4096, 60543744, 64744960),
    MeasuredCase('mixed_dim', 10**6, 64, {}, 'sgd', 4096, 60543744, 64744960),
    MeasuredCase('mixed_dim', 10**7, 64, {}, 'adam', 4096, 499544064, 2230339584),
    MeasuredCase('mixed_dim', 10**7, 64, {}, 'rowwise_adagrad', 4096, 499544064, 539998720),
    MeasuredCase('qr', 10**3, 64, {}, 'adam', 4096, 5217536, 9413376),
    MeasuredCase('qr', 10**4, 64, {}, 'adam', 4096, 5217280, 9413376),
    MeasuredCase('qr', 10**4, 64, {}, 'rowwise_adagrad', 4096, 5217280, 9413376),
    MeasuredCase('qr', 10**5, 64, {}, 'adam', 4096, 5096448, 9277440),
    MeasuredCase('qr', 10**6, 64, {}, 'adagrad', 4096, 4787712, 8968704),
    MeasuredCase('qr', 10**6, 64, {}, 'adam', 4096, 4787712, 8968704),
    MeasuredCase('qr', 10**6, 64, {}, 'lazy_adam', 4096, 5770752, 9951744),
    MeasuredCase('qr', 10**6, 64, {}, 'rowwise_adagrad', 4096, 5770752, 9951744),
    MeasuredCase('qr', 10**6, 64, {}, 'sgd', 4096, 4787712, 8968704),
    MeasuredCase('qr', 10**7, 64, {}, 'adam', 4096, 6845184, 11360512),
    MeasuredCase('qr', 10**7, 64, {}, 'rowwise_adagrad', 4096, 7416064, 11597056),
    MeasuredCase('qr', 10**8, 64, {}, 'adam', 4096, 10345984, 28230400),
    MeasuredCase('quantized', 10**3, 64, {}, 'adam', 4096, 4278528, None),
    MeasuredCase('quantized', 10**4, 64, {}, 'adam', 4096, 4890624, None),
    MeasuredCase('quantized', 10**5, 64, {}, 'adam', 4096, 11010560, None),
    MeasuredCase('quantized', 10**6, 64, {'storage': 'bfloat16'}, 'adam', 4096, 131145216, 769642240),
    MeasuredCase('quantized', 10**6, 64, {}, 'adam', 4096, 72210432, None),
    MeasuredCase('quantized', 10**6, 64, {'storage': 'bfloat16'}, 'rowwise_adagrad', 4096, 131145216, 135700480),
    MeasuredCase('quantized', 10**6, 64, {'storage': 'bfloat16'}, 'sgd', 4096, 131145216, 135340800),
    MeasuredCase('quantized', 10**7, 64, {}, 'adam', 4096, 683948288, None),
    MeasuredCase('robe', 10**3, 64, {}, 'adam', 4096, 7399680, 9409280),
    MeasuredCase('robe', 10**4, 64, {}, 'adam', 4096, 7425280, 9380864),
    MeasuredCase('robe', 10**4, 64, {}, 'rowwise_adagrad', 4096, 8408320, 9497856),
    MeasuredCase('robe', 10**6, 64, {}, 'adam', 4096, 11775488, 22085632),
    MeasuredCase('robe', 10**6, 64, {}, 'sgd', 4096, 11775744, 12892416),
    MeasuredCase('robe', 10**7, 64, {}, 'adam', 4096, 33988352, 158913792),
    MeasuredCase('robe', 10**7, 64, {}, 'rowwise_adagrad', 4096, 33988352, 62062336),
    MeasuredCase('tt', 10**3, 64, {}, 'adam', 4096, 26176000, 42939392),
    MeasuredCase('tt', 10**4, 64, {}, 'adam', 4096, 26092288, 42856960),
    MeasuredCase('tt', 10**4, 64, {}, 'rowwise_adagrad', 4096, 26350336, 43115008),
    MeasuredCase('tt', 10**5, 64, {}, 'adam', 4096, 25900288, 43176960),
    MeasuredCase('tt', 10**6, 64, {}, 'adagrad', 4096, 26727936, 43484160),
    MeasuredCase('tt', 10**6, 64, {}, 'adam', 4096, 25744896, 45529600),
    MeasuredCase('tt', 10**6, 128, {}, 'adam', 4096, 33117696, 50753536),
    MeasuredCase('tt', 10**6, 64, {}, 'lazy_adam', 4096, 25744896, 42501120),
    MeasuredCase('tt', 10**6, 64, {}, 'rowwise_adagrad', 4096, 25744896, 42501120),
    MeasuredCase('tt', 10**6, 64, {}, 'sgd', 4096, 25738752, 42494464),
    MeasuredCase('tt', 10**7, 64, {}, 'adam', 4096, 27035136, 47646208),
    MeasuredCase('tt', 10**7, 64, {}, 'rowwise_adagrad', 4096, 27035136, 43784192),
    MeasuredCase('tt', 10**8, 64, {}, 'adam', 4096, 27927552, 51661056),
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
