"""Strategy configs (membed/strategies/config.py): every option declared once, read by every path."""

import dataclasses
import inspect
import json
import math

import numpy as np
import pytest

from membed import strategies
from membed.__main__ import main
from membed.strategies import registry
from membed.strategies.config import StrategyConfig, option
from membed.strategies.mixed_dim import MixedDimEmbedding
from membed.strategies.qr import QRConfig, QREmbedding

NAMES = strategies.names()

# Costs recorded with the code before configs existed: (params, bytes_by_dtype, index_bytes)
# at dim 64, default options and the options in CUSTOM.
CUSTOM = {
    "full": {}, "hash": {"num_rows": 300, "seed": 3},
    "qr": {"num_buckets": 50, "combiner": "concat", "partitions": 3},
    "mixed_dim": {"num_blocks": 3, "alpha": 0.5, "round_pow2": True},
    "dhe": {"num_hashes": 32, "hidden": [16], "activation": "relu"},
    "double_hash": {"num_rows": 100, "combiner": "concat"}, "freq_hash": {"top_k": 20, "num_rows": 30},
    "robe": {"size": 5000, "block_size": 8}, "tt": {"rank": 4}, "quantized": {"storage": "float16"},
    "example_md": {"dims": [64, 16, 4]}, "example_qr": {"num_buckets": 40},
}
RECORDED_COSTS = {
    ("dhe", 10**3, "default"): (106944, {"float32": 427776}, 0),
    ("dhe", 10**6, "custom"): (1616, {"float32": 6464}, 0),
    ("double_hash", 10**3, "default"): (6400, {"float32": 25600}, 0),
    ("double_hash", 10**6, "default"): (6400000, {"float32": 25600000}, 0),
    ("double_hash", 10**6, "custom"): (6400, {"float32": 25600}, 0),
    ("example_md", 10**3, "default"): (30112, {"float32": 120448}, 4000),
    ("example_md", 10**6, "default"): (26796624, {"float32": 107186496}, 4000000),
    ("example_md", 10**6, "custom"): (14686868, {"float32": 58747472}, 4000000),
    ("example_qr", 10**3, "default"): (4480, {"float32": 17920}, 0),
    ("example_qr", 10**6, "custom"): (1602560, {"float32": 6410240}, 0),
    ("freq_hash", 10**3, "default"): (6400, {"float32": 25600}, 200),
    ("freq_hash", 10**6, "default"): (6400000, {"float32": 25600000}, 200000),
    ("freq_hash", 10**6, "custom"): (3200, {"float32": 12800}, 80),
    ("full", 10**3, "default"): (64000, {"float32": 256000}, 0),
    ("full", 10**6, "default"): (64000000, {"float32": 256000000}, 0),
    ("hash", 10**3, "default"): (6400, {"float32": 25600}, 0),
    ("hash", 10**6, "default"): (6400000, {"float32": 25600000}, 0),
    ("hash", 10**6, "custom"): (19200, {"float32": 76800}, 0),
    ("mixed_dim", 10**3, "default"): (22880, {"float32": 91520}, 4000),
    ("mixed_dim", 10**3, "custom"): (14512, {"float32": 58048}, 4000),
    ("mixed_dim", 10**6, "default"): (13612767, {"float32": 54451068}, 4000000),
    ("mixed_dim", 10**6, "custom"): (13001536, {"float32": 52006144}, 4000000),
    ("qr", 10**3, "default"): (4096, {"float32": 16384}, 0),
    ("qr", 10**3, "custom"): (2171, {"float32": 8684}, 0),
    ("qr", 10**6, "default"): (128000, {"float32": 512000}, 0),
    ("qr", 10**6, "custom"): (10550, {"float32": 42200}, 0),
    ("quantized", 10**3, "default"): (65000, {"int8": 64000, "float32": 4000}, 0),
    ("quantized", 10**6, "custom"): (64000000, {"float16": 128000000}, 0),
    ("robe", 10**3, "default"): (640, {"float32": 2560}, 0),
    ("robe", 10**6, "default"): (640000, {"float32": 2560000}, 0),
    ("robe", 10**6, "custom"): (5000, {"float32": 20000}, 0),
    ("tt", 10**3, "default"): (11520, {"float32": 46080}, 0),
    ("tt", 10**6, "default"): (115200, {"float32": 460800}, 0),
    ("tt", 10**6, "custom"): (9600, {"float32": 38400}, 0),
}

# get_config of strategies.build(name, 1000, 16, counts=zipf_counts(1000), layer_name="emb") before
# configs existed, less Keras's own keys: what a `.keras` file written then holds for the layer.
RECORDED_CONFIGS = {
    "dhe": {"num_hashes": 256, "hidden": [256, 128], "activation": "mish", "seed": 0},
    "double_hash": {"num_rows": 50, "combiner": "sum", "seed": 0},
    "example_md": {"boundaries": [108, 459], "dims": [16, 8, 4]},
    "example_qr": {"num_buckets": 20},
    "freq_hash": {"top_k": 50, "num_rows": 50, "seed": 0},
    "full": {},
    "hash": {"num_rows": 100, "seed": 0},
    "mixed_dim": {"boundaries": [16, 62, 250], "dims": [16, 2, 1, 1], "num_blocks": 4, "alpha": 0.3,
                  "round_pow2": False, "budget": None, "projection_bias": False},
    "qr": {"num_buckets": 32, "combiner": "mult", "partitions": 2},
    "quantized": {"storage": "int8"},
    "robe": {"size": 160, "block_size": 16, "seed": 0},
    "tt": {"rank": 16, "vocab_factors": None, "dim_factors": None},
}
LAYER_KEYS = {"name", "trainable", "dtype", "vocab_size", "dim", "check_ids"}


def zipf_counts(vocab_size: int) -> np.ndarray:
    return np.random.default_rng(5).zipf(1.3, vocab_size).astype(np.int64)


def fields(name: str) -> list[str]:
    return [f.name for f in dataclasses.fields(strategies.get(name).config_class)]


@pytest.mark.parametrize("key", sorted(RECORDED_COSTS), ids=lambda k: "-".join(map(str, k)))
def test_costs_are_the_recorded_ones(key):
    name, vocab_size, which = key
    options = CUSTOM[name] if which == "custom" else {}
    cost = strategies.cost(name, vocab_size, 64, **options)
    assert (cost.params, cost.bytes_by_dtype, cost.index_bytes) == RECORDED_COSTS[key]


def test_every_registered_strategy_has_a_config_dataclass():
    for name in NAMES:
        cls = strategies.get(name)
        assert issubclass(cls.config_class, StrategyConfig) and dataclasses.is_dataclass(cls.config_class)
        assert list(cls.options) == fields(name)
        assert cls.needs_counts == cls.config_class.uses_counts
        config = cls.config_class()
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(config, (fields(name) or ["anything"])[0], 1)


@pytest.mark.parametrize("name", NAMES)
def test_defaults_are_declared_once(name):
    """No constructor or cost signature repeats an option: its default lives in the config only."""
    cls = strategies.get(name)
    for method in ("__init__", "cost", "cost_of", "options_for_compression", "accuracy_presets"):
        parameters = inspect.signature(getattr(cls, method)).parameters
        assert not set(parameters) & set(fields(name)), (method, sorted(set(parameters) & set(fields(name))))
    declared = {f.name: f for f in dataclasses.fields(cls.config_class)}
    for key, spec in cls.config_class.options().items():
        field = declared[key]
        default = field.default if field.default_factory is dataclasses.MISSING else field.default_factory()
        assert spec.default == default and spec.help


@pytest.mark.parametrize("name", NAMES)
def test_get_config_keys_and_values_are_the_recorded_ones(name):
    layer = strategies.build(name, 1000, 16, counts=zipf_counts(1000), layer_name="emb")
    config = layer.get_config()
    # Keys any strategy gained since, through the base layer alone (a full table has no options).
    base_added = set(strategies.build("full", 10, 4).get_config()) - LAYER_KEYS
    assert set(config) == LAYER_KEYS | set(RECORDED_CONFIGS[name]) | base_added
    assert {k: config[k] for k in RECORDED_CONFIGS[name]} == RECORDED_CONFIGS[name]
    # What a `.keras` file written before configs existed holds still builds the same layer.
    old = {"name": "emb", "vocab_size": 1000, "dim": 16, "check_ids": True, **RECORDED_CONFIGS[name]}
    assert type(layer).from_config(old).get_config() == config


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("which", ["default", "custom"])
def test_cost_equals_the_built_layer(name, which):
    cls = strategies.get(name)
    options = CUSTOM.get(name, {}) if which == "custom" else {}
    counts = zipf_counts(1000)
    layer = strategies.build(name, 1000, 64, counts=counts, **options)
    cost = cls.cost(1000, 64, counts=counts, **options)
    assert cost.params == layer.count_params()
    assert cost.index_bytes == layer.index_bytes
    assert layer.layer_cost() == cost
    assert layer.config == cls.config_class(**options).resolve(1000, 64, counts)


@pytest.mark.parametrize("name", NAMES)
def test_resolve_fills_defaults_and_is_idempotent(name):
    config = strategies.get(name).config_class().resolve(5000, 32, zipf_counts(5000))
    assert config.resolve(5000, 32, zipf_counts(5000)) == config
    assert config == strategies.build(name, 5000, 32, counts=zipf_counts(5000)).config


def test_resolve_derives_and_validates_with_the_layers_messages():
    assert QRConfig().resolve(1000, 8).num_buckets == 32  # ceil(1000 ** (1/2))
    assert QRConfig(partitions=3).resolve(1000, 8).num_buckets == 10
    assert QRConfig(num_buckets=7).resolve(1000, 8).num_buckets == 7
    with pytest.raises(ValueError, match=r"^QREmbedding: invalid `combiner`: 'max'. Use one of: mult, add, concat.$"):
        QRConfig(combiner="max").resolve(100, 8)
    with pytest.raises(ValueError, match="^Renamed: invalid `num_buckets`: 101"):
        QRConfig(num_buckets=101).resolve(100, 8, label="Renamed")


@pytest.mark.parametrize("name", NAMES)
def test_every_field_parses_from_the_command_line(name):
    """Each option's default written as text parses back to the default, through parse_spec."""
    specs = strategies.get(name).config_class.options()

    def as_text(value) -> str:
        if value is None:
            return "auto"
        if isinstance(value, list):
            return ",".join(map(str, value))
        return str(value).lower() if isinstance(value, bool) else str(value)

    spec = name + ":" + ",".join(f"{key}={as_text(s.default)}" for key, s in specs.items())
    parsed_name, options = strategies.parse_spec(spec.rstrip(":"))
    assert parsed_name == name and set(options) == set(specs)
    assert registry.resolve_options(name, options) == {key: s.default for key, s in specs.items()}


@pytest.mark.parametrize(
    "annotation, text, value",
    [(int, "7", 7), (float, "0.25", 0.25), (bool, "true", True), (bool, "off", False), (str, "add", "add"),
     (int | None, "auto", None), (int | None, "12", 12), (list[int], "256,128", [256, 128]),
     (list[int] | None, "none", None), (list[int] | None, "400,1700", [400, 1700])],
)
def test_parsers_come_from_the_field_type(annotation, text, value):
    @dataclasses.dataclass(frozen=True)
    class Probe(StrategyConfig):
        probe: annotation = option(None, "a field of one type")

    assert Probe.options()["probe"].parse(text) == value
    assert Probe.from_options({"probe": text}).probe == value


def test_a_field_type_without_a_parser_is_a_clear_error():
    @dataclasses.dataclass(frozen=True)
    class Unparsable(StrategyConfig):
        pair: tuple[int, int] = option((1, 2), "no parser for this type")

    with pytest.raises(TypeError, match=r"Unparsable.pair: no parser for type tuple\[int, int\]"):
        Unparsable.options()


def test_parse_errors_name_the_option_and_the_strategy():
    with pytest.raises(ValueError, match=r"Option 'alpha' of strategy 'mixed_dim': cannot parse 'x'"):
        registry.resolve_options("mixed_dim", {"alpha": "x"})
    with pytest.raises(ValueError, match=r"Option 'round_pow2' of strategy 'mixed_dim': cannot parse 'maybe'"):
        registry.resolve_options("mixed_dim", {"round_pow2": "maybe"})


@pytest.mark.parametrize("name", NAMES)
def test_unknown_options_list_the_valid_ones(name):
    valid = ", ".join(fields(name)) or "(none)"
    with pytest.raises(ValueError) as error:
        registry.resolve_options(name, {"bogus": "1"})
    assert str(error.value) == f"Unknown option 'bogus' for strategy {name!r}. Valid options: {valid}."
    cls = strategies.get(name)
    with pytest.raises(ValueError, match=f"Unknown option 'bogus' for {cls.__name__}. Valid options: "):
        cls.cost(100, 8, bogus=1)


@pytest.mark.parametrize("name", NAMES)
def test_counts_take_one_path_for_every_strategy(name):
    """Every strategy takes counts in build, cost and the presets, and uses them only if it needs them."""
    counts = zipf_counts(1000)
    layer = strategies.build(name, 1000, 16, counts=counts)
    assert layer.count_params() == strategies.cost(name, 1000, 16, counts=counts).params
    presets = strategies.get(name).accuracy_presets(1000, 16, counts)
    assert presets and all(isinstance(p, (dict, ValueError)) for p in presets.values())


def test_mixed_dim_presets_fit_the_counts_they_were_given():
    vocab_size, dim = 10_000, 64
    counts = zipf_counts(vocab_size)
    assert "accuracy_presets" not in MixedDimEmbedding.__dict__  # the base passes counts on
    presets = MixedDimEmbedding.accuracy_presets(vocab_size, dim, counts)
    reached = {preset: options for preset, options in presets.items() if isinstance(options, dict)}
    assert {"5x", "20x"} <= set(reached)
    for preset, options in reached.items():
        assert options["budget"] == int(vocab_size * dim / int(preset.rstrip("x")))
        assert MixedDimEmbedding.cost(vocab_size, dim, counts=counts, **options).params <= options["budget"]


def test_the_strategies_listing_reads_the_configs(capsys):
    assert main(["strategies", "--json"]) == 0
    for row in json.loads(capsys.readouterr().out):
        config = strategies.get(row["name"]).config_class
        assert row["needs_counts"] == config.uses_counts
        assert row["options"] == {k: {"default": s.default, "help": s.help} for k, s in config.options().items()}
    assert "mult | add | concat" in QRConfig.options()["combiner"].help  # choices appear in the help


def test_the_public_keyword_api_still_works():
    assert QREmbedding(6040, 64, num_buckets=120).num_buckets == 120
    assert QREmbedding.cost(6040, 64, num_buckets=120).params == (120 + math.ceil(6040 / 120)) * 64
    with pytest.raises(TypeError):
        QREmbedding(6040, 64, 120)  # options are keywords: a positional one is not taken as check_ids


def test_an_options_dict_instead_of_a_config_is_refused():
    from membed.strategies.base import Option
    from membed.strategies.full import FullEmbedding

    with pytest.raises(TypeError, match="declare options as the fields of a `config_class`"):
        class Legacy(FullEmbedding):
            options = {"rows": Option(int, 1, "rows")}
