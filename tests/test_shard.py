"""membed.shard (placement, collectives, the JAX process), bench.sharded, the sharded suite's grid, and the
planner's `--devices` (membed.plan.devices).

The JAX tests run the real thing: a fresh `python -m bench.sharded` with
`KERAS_BACKEND=jax` on 8 simulated CPU devices, once for the module; they
skip when JAX is not installed. Nothing here loads both Keras backends in
one process: this one is TensorFlow's.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from bench import grid, options, sharded
from membed.plan import Layout, main as plan_main
from membed.plan import devices as plan_devices
from membed.shard import measure
from membed.shard.placement import NotShardable, WeightInfo, plan_weights

requires_jax = pytest.mark.skipif(sharded.jax_missing() is not None, reason=sharded.JAX_MISSING)


def table(name, shape, trainable=True):
    return WeightInfo(f"layer/{name}", name, shape, trainable, True)


def dense(name, shape, trainable=True):
    return WeightInfo(f"layer/{name}", name, shape, trainable, False)


# ----- placement --------------------------------------------------------------------------
def test_row_layout_splits_tables_by_rows_and_replicates_dense_weights():
    weights = [table("block_0", (1000, 16)), dense("projection", (16, 64)), table("core_0", (22, 1, 64))]
    axes = [p.axes for p in plan_weights(weights, 4, "row")]
    assert axes == [("model", None), (None, None), (None, None, None)]


def test_column_layout_splits_values_and_replicates_int8_scales():
    weights = [table("embeddings", (1000, 16), trainable=False), dense("embeddings_scale", (1000,), False)]
    assert [p.axes for p in plan_weights(weights, 8, "column")] == [(None, "model"), (None,)]
    assert [p.axes for p in plan_weights(weights, 8, "row")] == [("model", None), ("model",)]


@pytest.mark.parametrize("weights, devices, layout, reason", [
    ([table("partition_0", (100, 16))], 8, "row", "table 'partition_0' has 100 rows, not a multiple of 8"),
    ([table("block_2", (5000, 4))], 8, "column", "table 'block_2' has 4 columns, not a multiple of 8"),
    ([table("memory", (1600,))], 2, "column", "one-dimensional: no column to split"),
    ([dense("kernel_0", (256, 256)), dense("bias_0", (256,))], 2, "row", "no table to split"),
    ([table("core_0", (22, 1, 64))], 2, "row", "no table to split"),
])
def test_what_cannot_be_sharded_says_why(weights, devices, layout, reason):
    with pytest.raises(NotShardable, match=reason):
        plan_weights(weights, devices, layout)


def test_bad_layout_and_devices_are_refused():
    with pytest.raises(ValueError, match="Invalid `layout`: 'diagonal'. Use one of: row, column"):
        plan_weights([table("t", (8, 8))], 2, "diagonal")
    with pytest.raises(ValueError, match="Invalid `devices`: 0"):
        plan_weights([table("t", (8, 8))], 0, "row")


# ----- collectives from the HLO -----------------------------------------------------------------
HLO = """
ENTRY %main {
  %p = f32[2048,16]{1,0} parameter(0)
  %all-reduce = f32[4096,16]{1,0} all-reduce(%bitcast), channel_id=2, to_apply=%add.1.clone
  %all-gather-start = (f32[2048,16]{1,0}, f32[4096,16]{1,0}) all-gather-start(%p), dimensions={0}
  %all-gather-done = f32[4096,16]{1,0} all-gather-done(%all-gather-start)
  ROOT %reduce-scatter.3 = bf16[512]{0} reduce-scatter(%x), dimensions={0}
  %add = f32[4096,16]{1,0} add(%all-reduce, %all-gather-done)
}
"""


def test_collective_bytes_reads_every_collective_once():
    found = measure.collective_bytes(HLO)
    assert found.by_op == {"all-reduce": 4096 * 16 * 4, "all-gather": 4096 * 16 * 4, "reduce-scatter": 1024}
    assert found.count == 3 and found.total == sum(found.by_op.values())
    assert measure.collective_bytes("%add = f32[4]{0} add(%a, %b)").total == 0


def test_unknown_element_type_is_named():
    with pytest.raises(ValueError, match="Unknown HLO element type 'q7'"):
        measure.shape_bytes("q7[4]{0}")


# ----- the planner on devices -----------------------------------------------------------------
def test_row_wise_part_divides_tables_and_their_state():
    part = plan_devices.per_device(Layout.of("full", 10**4, 16), 4, "rowwise_adagrad")
    assert (part.weights, part.optimizer_state, part.index) == (10**4 * 16 * 4 // 4, 10**4 * 4 // 4, 0)
    assert part.state == part.weights + part.optimizer_state


def test_column_wise_part_replicates_the_per_row_state():
    part = plan_devices.per_device(Layout.of("full", 10**4, 16), 4, "rowwise_adagrad", "column")
    assert (part.weights, part.optimizer_state) == (10**4 * 4 * 4, 10**4 * 4)
    adagrad = plan_devices.per_device(Layout.of("full", 10**4, 16), 4, "adagrad", "column")
    assert adagrad.optimizer_state == adagrad.weights  # one value per value, split like the table


def test_dense_weights_and_tt_cores_are_replicated():
    for name in ("dhe", "tt"):
        layout = Layout.of(name, 10**4, 16)
        assert plan_devices.device_part(layout, 8).weights == layout.weights


def test_devices_needed_grows_with_the_table():
    layout = Layout.of("full", 10**9, 128)
    assert plan_devices.devices_needed(layout, "rowwise_adagrad", 80 * 2**30) == 7
    assert plan_devices.devices_needed(Layout.of("full", 10**10, 128), "rowwise_adagrad", 80 * 2**30) > 7
    assert plan_devices.devices_needed(Layout.of("qr", 10**9, 128), "rowwise_adagrad", 80 * 2**30) == 1


def test_plan_cli_devices_json(capsys):
    code = plan_main(["--vocab-size", "1e9", "--dim", "128", "--optimizer", "rowwise_adagrad", "--devices", "8",
                      "--device-memory", "80GiB", "--strategies", "full,qr", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    on_devices = out["on_devices"]
    assert on_devices["devices"] == 8 and on_devices["device_memory_bytes"] == 80 * 2**30
    full = next(row for row in on_devices["rows"] if row["strategy"] == "full" and row["preset"] == "default")
    assert full["weights"] == 10**9 * 128 * 4 // 8 and full["optimizer_state"] == 10**9 * 4 // 8
    assert full["fits"] is True
    needed = {row["strategy"]: row["devices_needed"] for row in on_devices["devices_needed"]}
    assert needed["full"] == {"100000000": 1, "1000000000": 7, "10000000000": 67}
    assert needed["qr"]["10000000000"] == 1
    # Without --host-memory a host is one device: the main table's hosts are the devices this size needs.
    assert next(r for r in out["rows"] if r["strategy"] == "full" and r["preset"] == "default")["hosts"] == 7


def test_plan_cli_devices_table(capsys):
    assert plan_main(["--vocab-size", "1e6", "--dim", "16", "--devices", "2", "--device-memory", "1GiB",
                      "--strategies", "full"]) == 0
    out = capsys.readouterr().out
    assert "on 2 devices of 1.0 GiB" in out and "devices of 1.0 GiB needed" in out


@pytest.mark.parametrize("argv, message", [
    (["--devices", "8"], "--devices and --device-memory go together"),
    (["--device-memory", "80GiB"], "--devices and --device-memory go together"),
    ([], "--host-memory is required"),
    (["--devices", "0", "--device-memory", "80GiB"], "--devices: invalid value '0'"),
    (["--devices", "2", "--device-memory", "lots"], "--device-memory: cannot read 'lots' as a size"),
])
def test_plan_cli_devices_errors(argv, message, capsys):
    assert plan_main(["--vocab-size", "1e6", "--dim", "16", *argv]) == 2
    assert message in capsys.readouterr().err


# ----- the sharded suite's grid and its JAX process -------------------------------------------------
def test_quick_profile_runs_a_small_slice_and_full_every_strategy():
    from bench.test_sharded import SHARDED

    quick = grid.cases(SHARDED, options.selection_from_options("quick", None, None, None))
    assert [c.case_id() for c in quick] == [
        f"sharded/{name}/synthetic-zipf/10000/16/row-2dev/rowwise_adagrad" for name in ("full", "hash", "qr")]
    full = grid.cases(SHARDED, options.selection_from_options("full", None, None, None))
    from membed import strategies

    assert {c.strategy for c in full} == set(strategies.names())
    assert {c.preset for c in full} == {f"{layout}-{n}dev" for layout in ("row", "column") for n in (2, 4, 8)}


def test_without_jax_every_case_skips_with_one_line(monkeypatch):
    monkeypatch.setattr(sharded.importlib.util, "find_spec", lambda name: None)
    assert sharded.jax_missing() == "jax is not installed: pip install -e '.[jax]'"


def test_child_refuses_the_tensorflow_backend():
    env = {k: v for k, v in sharded.child_env().items() if k != "KERAS_BACKEND"}
    done = subprocess.run([sys.executable, "-m", "bench.sharded", "--strategies", "full"], cwd=sharded.ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "run with KERAS_BACKEND=jax" in done.stderr


def test_child_env_replaces_the_device_count_only():
    env = sharded.child_env(4, {"XLA_FLAGS": "--xla_dump_to=/tmp/x --xla_force_host_platform_device_count=2"})
    assert env["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_force_host_platform_device_count=4"
    assert (env["KERAS_BACKEND"], env["JAX_ENABLE_X64"]) == ("jax", "true")


# (strategy, devices, layout): tables split every way; int8 with its scales; a 1-D table row-wise.
SHARDED_CASES = [("full", 2, "row"), ("full", 8, "column"), ("qr", 4, "row"), ("hash", 8, "row"),
                 ("example_qr", 2, "column"), ("robe", 4, "row"), ("quantized", 4, "row")]
# ... and what cannot be split, with the start of its reason.
UNSHARDABLE = [("dhe", 2, "row", "no table to split"), ("tt", 2, "row", "no table to split"),
               ("qr", 8, "row", "has 100 rows, not a multiple of 8 devices"),
               ("robe", 2, "column", "one-dimensional")]


def spec(strategy, devices, layout):
    return {"case": f"{strategy}/{layout}/{devices}", "strategy": strategy, "vocab_size": 10_000, "dim": 16,
            "devices": devices, "layout": layout, "optimizer": "rowwise_adagrad", "learning_rate": 0.01,
            "batch_size": 1024, "seed": 42, "dataset": "synthetic-zipf", "compare_train": True}


@pytest.fixture(scope="module")
def child():
    specs = [spec(*c) for c in SHARDED_CASES] + [spec(*c[:3]) for c in UNSHARDABLE]
    return sharded.run_in_child(specs, timeout_s=300)


@requires_jax
def test_child_is_a_jax_process_with_simulated_devices(child):
    header, _ = child
    assert header["backend"] == "jax" and header["device_count"] == 8
    assert header["tensorflow_loaded"] is False


@requires_jax
@pytest.mark.parametrize("strategy, devices, layout", SHARDED_CASES)
def test_sharded_lookup_equals_unsharded(child, strategy, devices, layout):
    result = child[1][f"{strategy}/{layout}/{devices}"]
    assert result["status"] == "ok", result["reason"]
    assert result["sharded_matches"] is True and result["max_abs_diff"] == 0.0
    if result["per_device_state_bytes"] is not None:  # trained: the sharded step lands where the unsharded one does
        assert result["train_max_abs_diff"] <= 1e-6


@requires_jax
@pytest.mark.parametrize("strategy, devices, layout", SHARDED_CASES)
def test_per_device_bytes_match_the_plan(child, strategy, devices, layout):
    result = child[1][f"{strategy}/{layout}/{devices}"]
    whole = Layout.of(strategy, 10_000, 16)
    part = plan_devices.per_device(whole, devices, "rowwise_adagrad", layout)
    assert result["per_device_param_bytes"] == pytest.approx(part.weights, rel=0.05)
    assert len(set(result["per_device_param_bytes_all"])) == 1  # even shards
    if any(w.trainable for w in whole.weights):
        assert result["per_device_state_bytes"] == pytest.approx(part.optimizer_state, rel=0.05)
    else:
        assert result["per_device_state_bytes"] is None
    if devices > 1:
        assert result["per_device_param_bytes"] < sum(w.bytes for w in whole.weights)


@requires_jax
def test_row_lookup_all_reduces_its_output_and_column_all_gathers(child):
    row, column = child[1]["full/row/2"], child[1]["full/column/8"]
    assert row["collectives_per_lookup"] == {"all-reduce": 1024 * 16 * 4}
    assert column["collectives_per_lookup"] == {"all-gather": 1024 * 16 * 4}


@requires_jax
@pytest.mark.parametrize("strategy, devices, layout, reason", UNSHARDABLE)
def test_unshardable_strategy_skips_with_its_reason(child, strategy, devices, layout, reason):
    result = child[1][f"{strategy}/{layout}/{devices}"]
    assert result["status"] == "skipped"
    assert reason in result["reason"] and result["reason"].startswith(f"{strategy} cannot be sharded")
    assert "\n" not in result["reason"]


@pytest.mark.parametrize("argv, message", [
    (["--devices", "2,x"], "--devices: invalid '2,x'"),
    (["--layouts", "row,diagonal"], "--layouts: invalid layout 'diagonal'. Use one of: row, column."),
    (["--optimizer", "adam"], "--optimizer: unknown optimizer 'adam'. Use one of: sgd, adagrad, rowwise_adagrad."),
    (["--vocab-size", "1.5"], "--vocab-size '1.5'"),
])
def test_child_command_line_errors_are_one_line(argv, message):
    args = sharded.build_parser().parse_args(argv)
    assert sharded.check_args(args).startswith(message)
    assert sharded.check_args(sharded.build_parser().parse_args([])) is None


# ----- the report's tables (analysis/sharded.py) -------------------------------------------------
def sharded_frame():
    import pandas as pd

    rows = [("full", "row", 2, 320_000, 320_000, 20_000, 20_000, True),
            ("qr", "row", 2, 6_400, 6_000, 400, 400, True),  # weights 6.7% above the plan
            ("quantized", "column", 4, 80_000, 80_000, None, None, False)]
    frame = pd.DataFrame(rows, columns=["strategy", "layout", "devices", "per_device_param_bytes",
                                        "planned_per_device_param_bytes", "per_device_state_bytes",
                                        "planned_per_device_state_bytes", "sharded_matches"])
    return frame.assign(suite="sharded", status="ok", dim=16, collective_bytes_per_lookup=262_144,
                        collective_bytes_per_step=262_144, device_peak_bytes=None)


def test_per_device_table_puts_measured_next_to_planned():
    from analysis.sharded import per_device_table

    table = per_device_table(sharded_frame())
    by = table.frame.set_index("strategy")
    assert by.loc["full", "param ratio"] == 1.0 and bool(by.loc["full", "within 5%"])
    assert by.loc["qr", "param ratio"] == pytest.approx(6_400 / 6_000, abs=1e-4) and not by.loc["qr", "within 5%"]
    assert bool(by.loc["quantized", "within 5%"])  # no state to plan: the weights decide
    assert by.loc["full", "collective KiB / lookup"] == 256
    assert table.note.startswith("2 of 3 cases within 5%") and "2 lookups equal" in table.note


def test_sharded_tables_only_for_runs_with_sharded_cases():
    import pandas as pd

    from analysis.sharded import sharded_tables

    assert sharded_tables(pd.DataFrame({"suite": ["memory"], "status": ["ok"]})) == []
    titles = [t.title for t in sharded_tables(sharded_frame())]
    assert titles == ["sharded: bytes per device, measured vs planned", "sharded: devices needed at scale"]
