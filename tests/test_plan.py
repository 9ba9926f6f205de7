"""membed.plan: the estimator's parts, row-wise placement, the command line, and the calibrated cases."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time

import pytest

from membed import strategies
from membed.plan import (
    ALLOCATOR,
    HOST,
    OPTIMIZER_NAMES,
    STEP,
    Bytes,
    Layout,
    Reservation,
    Weight,
    estimate,
    estimate_layer,
    estimate_layout,
    row_wise_hosts,
)
from membed.plan import calibration, cli
from membed.plan.constants import CAST_TENSORS, TABLE_READS
from membed.plan.estimator import forward_bytes
from membed.plan.sharding import per_host_bytes

V, DIM = 10_000, 16


# ----- components ------------------------------------------------------------------
@pytest.mark.parametrize(
    "optimizer, state",
    [("adam", 8 * V * DIM), ("lazy_adam", 8 * V * DIM), ("adagrad", 4 * V * DIM), ("rowwise_adagrad", 4 * V),
     ("sgd", 0)],
)
def test_full_table_parts(optimizer, state):
    e = estimate("full", V, DIM, optimizer=optimizer)
    assert e.weights.by_dtype == {"float32": 4 * V * DIM}
    assert e.optimizer_state.total == state
    assert e.index == 0
    assert e.state_bytes == 4 * V * DIM + state


def test_int8_table_has_no_optimizer_state():
    for optimizer in OPTIMIZER_NAMES:
        e = estimate("quantized", V, DIM, {"storage": "int8"}, optimizer=optimizer)
        assert e.weights.by_dtype == {"int8": V * DIM, "float32": 4 * V}  # values + a scale per row
        assert e.optimizer_state.total == 0
        assert e.step == 0 and not e.trains
        assert e.as_dict()["estimated_peak_bytes_train"] is None
    layout = Layout.of("quantized", V, DIM, {"storage": "int8"})
    assert not any(w.trainable for w in layout.weights)


def test_bfloat16_state_follows_the_dtype():
    adam = estimate("quantized", V, DIM, {"storage": "bfloat16"}, optimizer="adam")
    assert adam.weights.by_dtype == {"bfloat16": 2 * V * DIM}
    assert adam.optimizer_state.by_dtype == {"bfloat16": 2 * 2 * V * DIM}  # two moments, 2 bytes each
    adagrad = estimate("quantized", V, DIM, {"storage": "bfloat16"}, optimizer="adagrad")
    assert adagrad.optimizer_state.by_dtype == {"bfloat16": 2 * V * DIM}
    rowwise = estimate("quantized", V, DIM, {"storage": "bfloat16"}, optimizer="rowwise_adagrad")
    assert rowwise.optimizer_state.by_dtype == {"float32": 4 * V}  # the row accumulator stays float32


def test_dense_weights_get_a_full_slot_and_tables_one_per_row():
    layout = Layout.from_cost(strategies.Cost.float32(100 * 8 + 8 * 4, tables=[(100, 8)]), 100, 4)
    table, dense = layout.weights
    assert (table.table, dense.table, dense.shape) == (True, False, (32,))
    e = estimate_layout(layout, "rowwise_adagrad")
    assert e.optimizer_state.total == 4 * 100 + 4 * 32


def test_storage_argument_converts_the_tables():
    stored = estimate("hash", V, DIM, {"num_rows": 100}, storage="int8", optimizer="adam")
    assert stored.weights.by_dtype == {"int8": 100 * DIM, "float32": 4 * 100}
    assert stored.optimizer_state.total == 0


@pytest.mark.parametrize("name", strategies.names())
def test_layout_of_every_strategy_adds_up_to_its_cost(name):
    cost = strategies.cost(name, V, DIM)
    layout = Layout.of(name, V, DIM)
    assert layout.weight_bytes.total == cost.param_bytes
    assert layout.index_bytes == cost.index_bytes
    assert sum(w.values for w in layout.tables) == sum(math.prod(s) for s in cost.tables)


@pytest.mark.parametrize("name", ["full", "qr", "mixed_dim", "dhe", "tt", "quantized", "robe"])
def test_layout_from_a_built_layer_matches_the_formula(name):
    layer = strategies.build(name, 2_000, 8)
    built, formula = Layout.from_layer(layer), Layout.of(name, 2_000, 8)
    assert built.weight_bytes == formula.weight_bytes
    assert sorted(w.shape for w in built.tables) == sorted(w.shape for w in formula.tables)
    assert estimate_layer(layer, "rowwise_adagrad").optimizer_state == estimate(
        name, 2_000, 8, optimizer="rowwise_adagrad").optimizer_state


def test_layout_of_builds_nothing_for_a_huge_table():
    # 1e9 x 128 float32 is 512 GB: only the formula can size it.
    e = estimate("full", 10**9, 128, optimizer="rowwise_adagrad")
    assert e.weights.total == 4 * 10**9 * 128
    assert e.optimizer_state.total == 4 * 10**9


def test_dense_shapes_are_read_without_allocating():
    import keras
    from keras.src.backend.common import global_state

    layout = Layout.of("dhe", 10**9, 64)
    assert all(not w.table for w in layout.weights)
    assert len(layout.weights) > 1 and all(w.values < 10**7 for w in layout.weights)
    # A 20x DHE at 1e9 ids has GBs of kernels: read as shapes, and left nowhere to be initialized later.
    options = strategies.get("dhe").accuracy_presets(10**9, 64)["20x"]
    big = Layout.of("dhe", 10**9, 64, options)
    assert sum(w.bytes for w in big.weights) > 2**30
    assert not global_state.get_global_attribute("uninitialized_variables", [])
    with keras.StatelessScope():  # its exit initializes pending variables
        pass


# ----- the step model ----------------------------------------------------------------
def test_dense_adam_densifies_and_sparse_optimizers_do_not():
    e = estimate("full", 10**6, 64, optimizer="adam")
    table = 4 * 10**6 * 64
    # The densified gradient and the moments' temporaries: copies of the table.
    assert STEP.densified_copies * table <= e.step < STEP.densified_copies * table + 0.05 * table
    assert 5.5 * table < e.train_peak_bytes() < 6.5 * table  # measured: 1,466.9 MiB for a 244 MiB table
    for optimizer in ("sgd", "rowwise_adagrad", "lazy_adam"):
        sparse = e.with_optimizer(optimizer)
        assert sparse.step < 0.05 * table  # batch-sized: the rows a batch read
        assert sparse.train_peak_bytes() - sparse.state_bytes < 0.1 * table


def test_train_peak_of_another_optimizer():
    e = estimate("full", V, DIM, optimizer="sgd")
    assert e.train_peak_bytes("adam") == estimate("full", V, DIM, optimizer="adam").train_peak_bytes()
    assert e.train_peak_bytes("adam") > e.train_peak_bytes("rowwise_adagrad") > 0


def test_train_peak_is_the_larger_of_backward_and_update():
    e = estimate("full", 10**6, 64, optimizer="adam")
    held = e.weights.total + e.index
    assert e.modelled_train_bytes == held + max(e.activations, e.optimizer_state.total + e.step)
    small = estimate("qr", 10**6, 64, optimizer="adam")  # tiny tables: the backward pass peaks
    assert small.modelled_train_bytes == small.weights.total + small.activations


def test_temporaries_are_those_of_the_largest_variable():
    def layout(tables):
        return Layout.from_cost(strategies.Cost.float32(len(tables) * 100 * 8, tables=tables), 100, 8)

    one = estimate_layout(layout([(100, 8)]), "adam", batch_size=16)
    two = estimate_layout(layout([(100, 8), (100, 8)]), "adam", batch_size=16)
    table = 4 * 100 * 8
    assert two.step >= STEP.densified_copies * table
    # The second table adds batch-sized tensors (its 16 gathered rows), not three more copies of itself.
    assert 0 < two.step - one.step < table


def test_lookup_peak_counts_weights_index_and_the_batch():
    e = estimate("full", V, DIM, batch_size=128)
    slack = ALLOCATOR.fixed_bytes + round(ALLOCATOR.batch_tensors * 128 * DIM * 4)
    assert e.lookup_peak_bytes == e.modelled_lookup_bytes + slack
    assert e.modelled_lookup_bytes > e.weights.total + 128 * DIM * 4
    assert estimate("full", V, DIM, batch_size=4096).lookup_peak_bytes > e.lookup_peak_bytes


# ----- the forward pass, term by term ------------------------------------------------
B = 256  # ids per batch in the formula tests
OUT = B * DIM * 4  # one (batch, dim) float32 tensor
INPUTS = B * 8 + STEP.target_tensors * OUT  # the int64 ids and the caller's target


def table(*shape, dtype="float32", trainable=True):
    return Weight(tuple(shape), dtype, trainable, True)


def dense(*shape):
    return Weight(tuple(shape), "float32", True, False)


def test_a_plain_table_gathers_the_output_itself():
    e = estimate_layout(Layout(V, DIM, (table(V, DIM),)), "sgd", B)
    assert e.lookup_activations == INPUTS + OUT
    # The backward keeps the gathered rows and adds the loss's four tensors.
    assert e.activations == INPUTS + OUT + STEP.loss_tensors * OUT


def test_several_tables_are_combined_into_the_output():
    layout = Layout(V, DIM, (table(100, DIM), table(100, DIM)))  # qr's two blocks
    f = forward_bytes(layout, B)
    assert f.lookup == f.kept == 2 * OUT + OUT  # two gathered blocks and their product
    assert f.widest == OUT


def test_tt_cores_are_chained_by_batched_products():
    cores = (table(10, 1, 4 * 4), table(10, 4, 4 * 4), table(10, 4, 1))  # rank 4, dim 16 = 4 x 4 x 1
    f = forward_bytes(Layout(1000, DIM, cores), B)
    gathered = B * 4 * (16 + 64 + 4)
    # (n, 4, 4) @ (n, 4, 16) -> (n, 4, 16): 64 values; then @ (n, 4, 1) -> (n, 16): the output.
    products = B * 4 * (64 + 16)
    assert f.lookup == f.kept == gathered + products
    assert f.widest == B * 4 * 64  # the middle core, whose gradient outgrows the loss's tensors
    e = estimate_layout(Layout(1000, DIM, cores), "sgd", B)
    assert e.activations == INPUTS + f.kept + max(STEP.loss_tensors * OUT, f.widest)


def test_a_1d_table_counts_its_index_arithmetic():
    e = estimate_layout(Layout(V, DIM, (table(5000),)), "sgd", B)  # ROBE's array
    index = B * DIM * 8  # an int64 per value read
    assert e.lookup_activations == INPUTS + max(STEP.index_alive * index, OUT + STEP.index_kept * index)
    assert e.activations == INPUTS + OUT + STEP.index_kept * index + STEP.loss_tensors * OUT


def test_stored_tables_are_cast_to_float32():
    for dtype, item in (("bfloat16", 2), ("int8", 1)):
        layout = Layout(V, DIM, (table(V, DIM, dtype=dtype, trainable=dtype != "int8"),))
        f = forward_bytes(layout, B)
        assert f.lookup == B * DIM * item + CAST_TENSORS[dtype] * OUT
    assert CAST_TENSORS["int8"] == 2  # cast, then the row's scale


def test_masked_blocks_keep_their_projections_and_masks():
    narrow = 8
    weights = (table(100, DIM), table(400, narrow), dense(narrow, DIM), dense(DIM,))
    layout = Layout(500, DIM, weights, index_bytes=2000, reads="masked")
    assert layout.projections == (dense(narrow, DIM),) and layout.biases == (dense(DIM,),)
    f = forward_bytes(layout, B)
    first = OUT + STEP.mask_tensors * OUT  # its rows, the masked rows and the running sum
    second = B * narrow * 4 + 2 * OUT + STEP.mask_tensors * OUT  # + matmul and bias
    assert f.kept == first + second
    assert f.lookup == OUT + max(OUT + OUT, B * narrow * 4 + 2 * OUT + OUT)  # one block at a time


def test_partitioned_blocks_read_one_row_per_id():
    weights = (table(100, DIM), table(400, DIM // 2), dense(DIM // 2, DIM))
    layout = Layout(500, DIM, weights, index_bytes=2000, reads="one")
    f = forward_bytes(layout, B)
    rows = (OUT + B * (DIM // 2) * 4) // 2  # the tables' mean width per id
    assert f.lookup == f.kept == int(rows + 0.5 * OUT + OUT)  # + half the ids projected, + the stitched output


def test_table_reads_come_from_the_strategy():
    assert TABLE_READS == {"mixed_dim": "one", "example_md": "masked"}
    assert Layout.of("mixed_dim", V, DIM).reads == "one"
    assert Layout.of("example_md", V, DIM).reads == "masked"
    assert Layout.of("qr", V, DIM).reads == "every"
    assert Layout.from_layer(strategies.build("mixed_dim", 2_000, 8)).reads == "one"
    with pytest.raises(ValueError, match="Layout: invalid `reads`: 'some'. Use one of: every, one, masked"):
        Layout(V, DIM, (), reads="some")


def test_projections_are_inferred_from_narrow_tables():
    # mixed_dim and example_md have an index, so their dense weights are not built to be read.
    mixed = Layout.of("mixed_dim", 10**6, 64)
    widths = sorted(w.row_values for w in mixed.tables if w.row_values < 64)
    assert sorted(w.shape for w in mixed.projections) == sorted((w, 64) for w in widths)
    assert mixed.biases == ()
    example = Layout.of("example_md", 10**6, 64)
    assert len(example.projections) == len(example.biases) == 2


def test_row_sparse_update_counts_unique_and_the_rows():
    e = estimate_layout(Layout(V, DIM, (table(5000),)), "sgd", B)  # a 1-D table: an index per value
    indices = B * DIM
    gradient = indices * (4 + 8)
    unique = indices * (8 + 4)  # distinct rows (int64) and each index's position (int32)
    assert e.step == INPUTS + gradient + unique + STEP.row_update_copies * indices * 4


def test_reservation_adds_slack_per_batch_tensor():
    e = estimate("full", V, DIM, optimizer="sgd", batch_size=B)
    assert e.batch_tensor_bytes == OUT
    assert e.reserved_bytes(10**6) == ALLOCATOR.fixed_bytes + round(ALLOCATOR.batch_tensors * OUT)
    with pytest.raises(ValueError, match="batch_tensors"):
        Reservation("bad", 0.0, 0, batch_tensors=-1)


def test_reservation_is_its_own_part():
    base = estimate("full", V, DIM, optimizer="sgd", reservation=Reservation("none", 0.0, 0))
    host = estimate("full", V, DIM, optimizer="sgd", reservation=HOST)
    assert base.train_peak_bytes() == base.modelled_train_bytes
    assert host.train_peak_bytes() == round(base.modelled_train_bytes * (1 + HOST.share)) + HOST.fixed_bytes
    with pytest.raises(ValueError, match="must be >= 0"):
        Reservation("bad", -0.1, 0)


def test_bytes_add_by_dtype():
    total = Bytes({"float32": 4}) + Bytes({"int8": 1, "float32": 4})
    assert total.by_dtype == {"float32": 8, "int8": 1} and total.total == 9


def test_as_dict_has_the_fields_a_record_carries():
    record = estimate("qr", V, DIM, optimizer="rowwise_adagrad").as_dict()
    assert record["estimated_peak_bytes_train"] > record["estimated_peak_bytes_lookup"] > 0
    assert record["optimizer"] == "rowwise_adagrad"
    # Bytes are ints (the schema's type), whatever float counts the terms use.
    assert all(type(v) is int for k, v in record.items() if k.endswith("_bytes") or k.startswith("estimated_"))
    json.dumps(record)


def test_errors_name_what_is_valid():
    with pytest.raises(ValueError, match="Unknown optimizer 'adamw'. Use one of: adam, lazy_adam"):
        estimate("full", V, DIM, optimizer="adamw")
    with pytest.raises(ValueError, match="Unknown strategy 'nope'"):
        estimate("nope", V, DIM)
    with pytest.raises(ValueError, match="batch_size"):
        estimate("full", V, DIM, batch_size=0)


def test_state_per_row_agrees_with_membed_optim():
    optim = pytest.importorskip("membed.optim")
    if not hasattr(optim, "state_bytes_per_row"):
        pytest.skip("membed.optim has no state_bytes_per_row")
    assert set(OPTIMIZER_NAMES) == set(optim.NAMES)
    for name in OPTIMIZER_NAMES:
        for dtype in ("float32", "bfloat16"):
            layout = Layout(1, 64, (Weight((1, 64), dtype, True, True),))
            assert estimate_layout(layout, name).optimizer_state.total == optim.state_bytes_per_row(name, 64, dtype)


# ----- calibration -------------------------------------------------------------------
def test_estimates_land_near_the_measured_peaks():
    ratios = calibration.ratios()
    inside = [r for r in ratios if 0.8 <= r.ratio <= 1.25]
    assert len(ratios) >= 200
    # The target: 95% of the cases inside [0.8, 1.25] (all 219 today).
    assert len(inside) >= 0.95 * len(ratios), [r for r in ratios if r not in inside]
    # Where the tables dominate, every case lands.
    big = [r for r in ratios if r.measured_bytes > 100 * 2**20]
    assert len(big) >= 40 and all(0.8 <= r.ratio <= 1.25 for r in big), big
    adam_full = next(r for r in ratios if (r.case.strategy, r.case.vocab_size, r.case.dim, r.case.optimizer, r.phase)
                     == ("full", 10**6, 64, "adam", "train"))
    assert abs(adam_full.ratio - 1) < 0.02  # the 6x-the-table step of Keras's Adam


# ----- row-wise placement ---------------------------------------------------------------
def test_sharded_layout_splits_tables_and_replicates_dense_weights():
    layout = Layout.from_cost(strategies.Cost.float32(10 * 4 + 6, tables=[(10, 4)], index_bytes=90), 10, 4)
    part = layout.sharded(3)
    assert part.weights[0].shape == (4, 4)  # ceil(10 / 3) rows
    assert part.weights[1] == layout.weights[1]  # dense: replicated
    assert part.index_bytes == 30
    with pytest.raises(ValueError, match="hosts"):
        layout.sharded(0)


def test_row_wise_hosts_is_the_fewest_that_fit():
    layout = Layout.of("full", 10**9, 128)
    memory = 24 * 2**30
    placement = row_wise_hosts(layout, "rowwise_adagrad", 4096, memory)
    assert not placement.fits_one_host
    hosts = placement.hosts
    assert per_host_bytes(layout, hosts, "rowwise_adagrad", 4096) <= memory
    assert per_host_bytes(layout, hosts - 1, "rowwise_adagrad", 4096) > memory
    # 512 GB of table and 4 GB of accumulators over 24 GiB hosts.
    assert 4 * 10**9 * 128 / memory < hosts < 1.2 * 4 * 10**9 * 129 / memory + 2


def test_row_wise_hosts_fits_one_or_never():
    small = row_wise_hosts(Layout.of("full", 1000, 8), "adam", 128, 2**30)
    assert (small.hosts, small.fits_one_host) == (1, True)
    dense = Layout(1, 8, (Weight((4 * 2**20,), "float32", True, False),))  # 16 MiB dense, replicated
    never = row_wise_hosts(dense, "adam", 128, 8 * 2**20 + HOST.fixed_bytes)
    assert never.hosts is None and not never.fits_one_host


# ----- the command line -----------------------------------------------------------------
@pytest.mark.parametrize("text, expected", [("24GiB", 24 * 2**30), ("512MB", 512 * 10**6), ("1e9", 10**9),
                                            ("4096", 4096), ("1.5 KiB", 1536), ("2tb", 2 * 10**12)])
def test_parse_size(text, expected):
    assert cli.parse_size(text) == expected


@pytest.mark.parametrize("text", ["24XB", "GiB", "-1GiB", "", "1e9e9", "0"])
def test_parse_size_rejects_malformed_values(text):
    with pytest.raises(cli.PlanError) as error:
        cli.parse_size(text, "--host-memory")
    message = str(error.value)
    assert "--host-memory" in message and "\n" not in message


def run_main(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


ARGS = ("--vocab-size", "1e6", "--dim", "64", "--host-memory", "1GiB")


def test_cli_json(capsys):
    code, out, err = run_main(capsys, *ARGS, "--optimizer", "rowwise_adagrad", "--strategies", "full,hash",
                              "--json")
    assert code == 0, err
    result = json.loads(out)
    assert (result["vocab_size"], result["dim"], result["optimizer"]) == (10**6, 64, "rowwise_adagrad")
    assert result["host_memory_bytes"] == 2**30
    full = next(r for r in result["rows"] if r["strategy"] == "full" and r["preset"] == "default")
    assert full["weights_bytes"] == 4 * 10**6 * 64
    assert full["optimizer_state_bytes"] == 4 * 10**6
    assert full["fits"] is True and full["hosts"] == 1
    assert full["total_bytes"] == estimate("full", 10**6, 64, optimizer="rowwise_adagrad",
                                           reservation=HOST).train_peak_bytes()
    assert {r["preset"] for r in result["rows"] if r["strategy"] == "hash"} >= {"default", "5x", "20x", "100x"}


def test_cli_says_how_many_hosts(capsys):
    code, out, _ = run_main(capsys, "--vocab-size", "1e8", "--dim", "64", "--host-memory", "8GiB",
                            "--optimizer", "adam", "--strategies", "full", "--json")
    assert code == 0
    full = json.loads(out)["rows"][0]
    # 25.6 GB of table, 51.2 GB of moments and the densified step do not fit 8 GiB.
    assert full["fits"] is False and full["hosts"] > 1
    assert full["per_host_bytes"] <= 8 * 2**30


def test_cli_table(capsys):
    code, out, _ = run_main(capsys, *ARGS, "--strategies", "full,quantized")
    assert code == 0
    assert "full" in out and "default=int8" in out and "no compression presets" in out
    assert "hosts" in out and "yes" in out


@pytest.mark.parametrize("argv, expected", [
    (("--vocab-size", "1e6", "--dim", "64", "--host-memory", "24XB"), "--host-memory: cannot read '24XB'"),
    (("--vocab-size", "1.5", "--dim", "64", "--host-memory", "1GiB"), "--vocab-size: invalid value '1.5'"),
    (("--vocab-size", "1e6", "--dim", "0", "--host-memory", "1GiB"), "--dim: invalid value '0'"),
    ((*ARGS, "--batch-size", "many"), "--batch-size: invalid value 'many'"),
    ((*ARGS, "--optimizer", "adamw"), "Use one of: adam, lazy_adam, adagrad, rowwise_adagrad, sgd"),
    ((*ARGS, "--strategies", "full,nope"), "unknown strategy 'nope'. Use one of: "),
])
def test_cli_errors_are_one_line(capsys, argv, expected):
    code, out, err = run_main(capsys, *argv)
    assert code == 2 and out == ""
    assert expected in err and err.count("\n") == 1


def test_cli_checks_arguments_before_importing_tensorflow():
    script = ("import sys; from membed.plan.cli import main; "
              "code = main(['--vocab-size', '1e9', '--dim', '128', '--host-memory', '24XB']); "
              "print(code, 'tensorflow' in sys.modules, 'keras' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False", "False"], done.stderr


def test_slow_presets_become_an_error_row(monkeypatch):
    cls = strategies.get("hash")

    def slow(vocab_size, dim, counts=None):
        time.sleep(5)
        return {}

    monkeypatch.setattr(cls, "accuracy_presets", staticmethod(slow))
    monkeypatch.setattr(cli, "PRESET_TIME_LIMIT_S", 0.2)
    rows = cli.plan_rows(["hash"], 10**4, 8, "sgd", 128, 2**30)
    assert [r.preset for r in rows] == ["default", "presets"]
    assert rows[1].error == "hash: presets took longer than 0.2 s" and rows[0].error is None
