"""Pipeline suite: one epoch of the example's memory-efficient model, the example's way and membed's.

Three fits on the same seeded split of a MovieLens variant, with the
example's recipe (batch 128, Adam 0.001, MSE):

* `example-pipeline`: the Keras example end to end
  (`membed.example_pipeline`): ratings written to CSV and re-parsed by
  `make_csv_dataset` every epoch, string ids through `StringLookup`, the
  masked MD layer.
* `example_qr+example_md`: the same layers' arithmetic on integer ids, fed
  from memory by `membed.train` (tf.data, `steps_per_execution`, the
  optimizer's slots built before the trace, `membed.optim.FusedAdam`).
* `qr+mixed_dim`: membed's layers configured like the example (users:
  `num_buckets = V // 50`; items: the example's blocks and dims, projections
  with bias), where each id is looked up in its own block only.

Each case fits `pipeline_rounds` times (a fresh, identically seeded model
each time) and records the median `fit_seconds`, the final validation
metrics, and against the example pipeline of the same session
`speedup_vs_example` (its median fit time over this one's) and
`val_mse_delta_vs_example`.
"""

from __future__ import annotations

from typing import Any, Mapping

from bench import axes, grid
from membed.data import MOVIELENS, random_split
from membed.example_pipeline import example_pipeline_fit
from membed.measure import FLOAT32_BYTES, compression
from membed.model import pair_model
from membed.strategies.example_md import example_boundaries, example_dims
from membed.train import set_seed, train_model

PIPELINES = ("example-pipeline", "example_qr+example_md", "qr+mixed_dim")
_EXAMPLE_RUNS: dict[str, object] = {}


def accuracy_movielens(selection: grid.Selection, case: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The MovieLens variants the accuracy suite trains on."""
    return [{"dataset": dataset} for dataset in selection.datasets_of("accuracy") if dataset in MOVIELENS]


def pipelines(selection: grid.Selection, case: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The three ways of fitting the example's model (see the module docstring)."""
    return [{"strategy": pipeline} for pipeline in PIPELINES]


PIPELINE = grid.Suite(
    "pipeline", "fit",
    axes=(accuracy_movielens, pipelines,
          axes.fixed(dim=grid.ACCURACY_DIM, batch_size=grid.ACCURACY_BATCH_SIZE, preset="1-epoch")),
)


def _membed_fit(pipeline: str, data, train_idx, val_idx, dim: int):
    if pipeline == "qr+mixed_dim":
        user, item = "qr", "mixed_dim"
        user_options = {"num_buckets": max(1, data.num_users // 50)}
        item_options = {"boundaries": example_boundaries(data.num_items), "dims": example_dims(dim),
                        "projection_bias": True}
    else:
        user, item, user_options, item_options = "example_qr", "example_md", {}, {}
    set_seed(grid.SEED)
    model = pair_model(data, user, item, dim, user_options, item_options)
    return train_model(model, data, train_idx, val_idx, epochs=1, batch_size=grid.ACCURACY_BATCH_SIZE,
                       learning_rate=grid.ACCURACY_LEARNING_RATE, seed=grid.SEED)


@PIPELINE.test
def test_pipeline(benchmark, case: grid.Case, harness, record: dict, tmp_path) -> None:
    data = harness.ratings(case.dataset)
    train_idx, val_idx = random_split(len(data), grid.TRAIN_FRACTION, grid.SEED)
    record.update(vocab_size=data.num_users + data.num_items, epochs=1)
    rounds = harness.profile.pipeline_rounds
    if case.strategy == "example-pipeline":
        def fit():
            set_seed(grid.SEED)
            return example_pipeline_fit(data, train_idx, val_idx, tmp_path, epochs=1,
                                        batch_size=grid.ACCURACY_BATCH_SIZE,
                                        learning_rate=grid.ACCURACY_LEARNING_RATE, dim=case.dim)
    else:
        def fit():
            return _membed_fit(case.strategy, data, train_idx, val_idx, case.dim)
    result = benchmark.pedantic(fit, rounds=rounds, iterations=1)
    median = float(benchmark.stats.stats.median)
    if case.strategy == "example-pipeline":
        _EXAMPLE_RUNS[case.dataset] = (median, result)
    record.update(
        params=result.params,
        # The pipeline models hold float32 weights only.
        compression=compression(record["vocab_size"], case.dim, FLOAT32_BYTES * result.params),
        val_mse=result.val_mse[-1], val_mae=result.val_mae[-1], val_rmse=result.val_rmse[-1],
        val_mse_per_epoch=result.val_mse, val_mae_per_epoch=result.val_mae,
        val_rmse_per_epoch=result.val_rmse, train_mse_per_epoch=result.train_mse,
        fit_seconds=median,
    )
    if case.dataset in _EXAMPLE_RUNS:
        example_median, example = _EXAMPLE_RUNS[case.dataset]
        record["speedup_vs_example"] = example_median / median
        record["val_mse_delta_vs_example"] = result.val_mse[-1] - example.val_mse[-1]
