"""Strategy configs: each strategy's options declared once, as one frozen dataclass.

A strategy's options (names, defaults, help lines, allowed values and how a
command line parses them) are the fields of one `StrategyConfig` subclass,
declared beside the layer (`QRConfig` in qr.py) and named by its
`config_class`. The layer's constructor, `cost`, `get_config`,
`registry.parse_spec` / `resolve_options`, the presets and `python -m membed
strategies` all read those fields; nothing else writes a default down.

`resolve(vocab_size, dim, counts)` checks a config against one table and
fills the options left to derived defaults (qr's `num_buckets` becomes
`ceil(V ** (1 / partitions))`). Per-id `counts` reach every strategy by that
one path; strategies that do not use them ignore them.

What a resolved config costs is a `Cost` (parameters and bytes), which the
layer's `cost_of(config, vocab_size, dim)` gives before anything is built.

Example:
    >>> from membed.strategies.qr import QRConfig
    >>> QRConfig(combiner="add").resolve(vocab_size=1000, dim=8)
    QRConfig(num_buckets=32, combiner='add', partitions=2)
    >>> QRConfig.from_options({"num_buckets": "50"}).num_buckets  # strings as a command line gives them
    50
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any, Callable, ClassVar, Mapping, TypeVar

import numpy as np

from membed.strategies.storage import check_storage, stored_sizes

Config = TypeVar("Config", bound="StrategyConfig")


@dataclasses.dataclass(frozen=True)
class Option:
    """One option of a strategy, as the command line parses it and `strategies` lists it."""

    parse: Callable[[str], Any]
    default: Any
    help: str


# ----- parsers: command-line text to option values --------------------------------
_AUTO = ("", "none", "auto")


def parse_bool(text) -> bool:
    """Parses 'true'/'false' (also 1/0, yes/no, on/off)."""
    if isinstance(text, bool):
        return text
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def int_list(text: str | list | tuple) -> list[int]:
    """Parses '400,1700' (or a list) into [400, 1700]."""
    if isinstance(text, (list, tuple)):
        return [int(v) for v in text]
    return [int(v) for v in str(text).replace("/", ",").split(",") if v.strip()]


def optional_int(text) -> int | None:
    """Parses an option that may be left to a derived default ('', 'none', 'auto')."""
    if text is None or str(text).strip().lower() in _AUTO:
        return None
    return int(text)


def optional_int_list(text) -> list[int] | None:
    """Like `int_list`, but '', 'none' or 'auto' leave the list to a derived default."""
    if text is None or (isinstance(text, str) and text.strip().lower() in _AUTO):
        return None
    return int_list(text)


# The parser of each field type a config may declare; another type needs `option(parse=...)`.
PARSERS: dict[Any, Callable[[str], Any]] = {
    int: int,
    float: float,
    str: str,
    bool: parse_bool,
    int | None: optional_int,
    list[int]: int_list,
    list[int] | None: optional_int_list,
}


# ----- checks shared by the configs' `resolve` ------------------------------------
def check_choice(layer: str, option: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ValueError(
            f"{layer}: invalid `{option}`: {value!r}. Use one of: {', '.join(map(str, allowed))}."
        )


def check_positive(layer: str, option: str, value: Any, minimum: int = 1) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{layer}: invalid `{option}`: {value!r}. It must be an integer >= {minimum}.")


def check_at_most(layer: str, option: str, value: Any, limit: int, limit_name: str, minimum: int = 1) -> None:
    """`check_positive`, then `value <= limit`; `limit_name` says in the error what the limit is.

    Example:
        >>> check_at_most("HashEmbedding", "num_rows", 1001, 1000, "vocab_size")
        Traceback (most recent call last):
        ValueError: HashEmbedding: invalid `num_rows`: 1001. It must be <= vocab_size (1000).
    """
    check_positive(layer, option, value, minimum)
    if value > limit:
        raise ValueError(f"{layer}: invalid `{option}`: {value}. It must be <= {limit_name} ({limit}).")


def check_counts(counts, vocab_size: int, layer: str) -> np.ndarray:
    """`counts` as an array, checked: one count >= 0 per id."""
    counts = np.asarray(counts)
    if counts.shape != (vocab_size,):
        raise ValueError(
            f"{layer}: `counts` must have one entry per id, shape ({vocab_size},); got {counts.shape}."
        )
    if (counts < 0).any():
        raise ValueError(f"{layer}: `counts` must be >= 0; got a negative count.")
    return counts


def frequency_order(counts: np.ndarray | None, vocab_size: int, layer: str) -> np.ndarray:
    """Ids sorted by count, most frequent first (ties keep id order).

    With no counts, ids are taken to be numbered by frequency already.
    """
    if counts is None:
        return np.arange(vocab_size, dtype=np.int64)
    return np.argsort(-check_counts(counts, vocab_size, layer), kind="stable")


def option(default: Any, help: str, *, choices: tuple | None = None,
           parse: Callable[[str], Any] | None = None) -> Any:
    """A config field: its default, its help line and, where they apply, its allowed values.

    Args:
        default: the value when the option is not given; `None` for one
            that `resolve` derives from the table's size. A list default is
            copied for every config.
        help: one line for the command line's listing (`choices` are
            appended to it).
        choices: the allowed values; `resolve` rejects any other.
        parse: how command-line text becomes a value, for a field type
            that `PARSERS` does not cover.

    Example:
        >>> combiner: str = option("mult", "how the k rows combine", choices=COMBINERS)
    """
    metadata = {"help": help, "choices": choices, "parse": parse}
    if isinstance(default, list):
        return dataclasses.field(default_factory=functools.partial(list, default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class StrategyConfig:
    """Base of the strategy configs: a frozen set of options, checked for one table by `resolve`.

    A subclass is a frozen dataclass of `option(...)` fields and, where
    options depend on the table, overrides `derived`. The strategy layer
    points at it with `config_class`; its options are the fields.

    Class attributes:
        label: the layer's class name, which error messages start with.
        uses_counts: whether the strategy uses per-id counts (`resolve` or
            the layer's index), so that a caller knows whether computing
            them is worth it.
    """

    label: ClassVar[str] = ""
    uses_counts: ClassVar[bool] = False

    @classmethod
    def options(cls) -> dict[str, Option]:
        """Every option: name -> (parser, default, help), in declaration order."""
        return dict(_options(cls))

    @classmethod
    def from_options(cls: type[Config], options: Mapping[str, Any], owner: str | None = None,
                     parse: bool = True) -> Config:
        """A config from option values; strings ('50', '400,1700', 'true') are parsed when `parse`.

        Args:
            options: option name -> value; options not given keep their default.
            owner: how errors name the strategy (default the layer's class name).
            parse: parse string values with each option's parser.

        Raises:
            ValueError: for an unknown option name (the message lists the valid
                ones) or a string its option cannot parse.
        """
        owner = owner or cls.label or cls.__name__
        specs = cls.options()
        unknown = sorted(set(options) - set(specs))
        if unknown:
            valid = ", ".join(specs) or "(none)"
            raise ValueError(f"Unknown option {unknown[0]!r} for {owner}. Valid options: {valid}.")
        values = {}
        for name, value in options.items():
            if parse and isinstance(value, str):
                try:
                    value = specs[name].parse(value)
                except ValueError as err:
                    raise ValueError(f"Option {name!r} of {owner}: cannot parse {value!r} ({err}).") from None
            values[name] = value
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """Option name -> value, every option, in declaration order (lists copied)."""
        values = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            values[field.name] = list(value) if isinstance(value, (list, tuple)) else value
        return values

    def resolve(self: Config, vocab_size: int, dim: int, counts: np.ndarray | None = None, *,
                label: str | None = None) -> Config:
        """This config checked for a `vocab_size x dim` table, derived defaults filled in.

        Resolving a resolved config gives it back unchanged.

        Args:
            vocab_size: number of ids.
            dim: the embedding dimension.
            counts: per-id counts, for strategies whose sizes depend on them.
            label: how errors name the layer (default `label`).

        Raises:
            ValueError: naming the option, the value received and what is valid.
        """
        label = label or self.label or type(self).__name__
        for field in dataclasses.fields(self):
            if field.metadata.get("choices") is not None:
                check_choice(label, field.name, getattr(self, field.name), field.metadata["choices"])
        filled = self.derived(vocab_size, dim, counts, label)
        return dataclasses.replace(self, **filled) if filled else self

    def derived(self, vocab_size: int, dim: int, counts: np.ndarray | None, label: str) -> dict[str, Any]:
        """Checks the options that depend on the table; returns the values left to derive.

        Subclasses override this; `resolve` has already checked `choices`.
        """
        return {}


# ----- cost: the size of a layer with a resolved config ------------------------------
@dataclasses.dataclass(frozen=True)
class Cost:
    """Closed-form size of a strategy, computable before building it.

    Attributes:
        params: number of scalars held in weights (what `count_params()` gives).
        bytes_by_dtype: bytes of those weights, keyed by storage dtype.
        index_bytes: bytes of non-parameter id-mapping state.
        tables: shapes of the weights that are tables, which `stored` converts;
            the other parameters are dense and stay float32.
        storage: the dtype the tables are stored in (see `storage.py`).
    """

    params: int
    bytes_by_dtype: dict[str, int]
    index_bytes: int = 0
    tables: tuple[tuple[int, ...], ...] = dataclasses.field(default=(), repr=False)
    storage: str = dataclasses.field(default="float32", repr=False)

    @property
    def param_bytes(self) -> int:
        return sum(self.bytes_by_dtype.values())

    @classmethod
    def float32(cls, params: int, index_bytes: int = 0, tables=()) -> "Cost":
        tables = tuple(tuple(int(d) for d in shape) for shape in tables)
        return cls(params=params, bytes_by_dtype={"float32": 4 * params}, index_bytes=index_bytes, tables=tables)

    def stored(self, storage: str) -> "Cost":
        """This cost with its tables stored as `storage`; dense weights stay float32.

        Example:
            >>> Cost.float32(40, tables=[(10, 4)]).stored("int8").bytes_by_dtype  # + a float32 scale per row
            {'int8': 40, 'float32': 40}
        """
        check_storage("Cost", storage)
        if storage == self.storage:
            return self
        if self.storage != "float32":
            raise ValueError(f"Cost: only a float32 cost converts; this one is stored as {self.storage!r}.")
        if not self.tables:
            raise ValueError(f"Cost: no tables to store as {storage!r}; dense weights stay float32.")
        params, bytes_by_dtype = stored_sizes(self.params, self.tables, storage)
        return dataclasses.replace(self, params=params, bytes_by_dtype=bytes_by_dtype, storage=storage)


@functools.cache
def _options(cls: type[StrategyConfig]) -> dict[str, Option]:
    hints = typing.get_type_hints(cls)
    specs = {}
    for field in dataclasses.fields(cls):
        parse = field.metadata.get("parse") or PARSERS.get(hints[field.name])
        if parse is None:
            raise TypeError(
                f"{cls.__name__}.{field.name}: no parser for type {hints[field.name]}; "
                f"declare it with option(..., parse=...) or use one of: {', '.join(map(str, PARSERS))}."
            )
        if field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        elif field.default is not dataclasses.MISSING:
            default = field.default
        else:
            raise TypeError(f"{cls.__name__}.{field.name}: every option needs a default; declare it with option().")
        help = field.metadata.get("help", "")
        if field.metadata.get("choices"):
            help = f"{help}: {' | '.join(map(str, field.metadata['choices']))}"
        specs[field.name] = Option(parse, default, help)
    return specs
