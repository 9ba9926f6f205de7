"""Embedding strategies, one module each, collected in one registry."""

import importlib
import pkgutil

from membed.strategies.base import Cost, EmbeddingStrategy, InvalidIdError, Option
from membed.strategies.config import StrategyConfig
from membed.strategies.registry import STRATEGIES, build, cost, get, names, parse_spec, register

_SKIP = {"base", "registry"}
for _module in pkgutil.iter_modules(__path__):
    if _module.name not in _SKIP and not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "STRATEGIES",
    "Cost",
    "EmbeddingStrategy",
    "InvalidIdError",
    "Option",
    "StrategyConfig",
    "build",
    "cost",
    "get",
    "names",
    "parse_spec",
    "register",
]
