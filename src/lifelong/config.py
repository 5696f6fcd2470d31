"""Typed configuration: dataclass defaults, then a YAML file, then ``key=value`` overrides.

Each learner and benchmark owns a ``Config`` dataclass next to its code, holding the
paper's values as defaults. Values from YAML or the command line are coerced to the field's
declared type; an unknown key, a value of the wrong type or one that fails the config's
``validate`` is a :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, Union

import yaml

from lifelong.errors import ConfigError

__all__ = ["Config", "RunConfig", "check", "build_config", "config_to_dict", "parse_overrides",
           "load_yaml", "merge"]

C = TypeVar("C", bound="Config")


@dataclass
class Config:
    """Base of every typed config. Subclasses add fields and may override :meth:`validate`.

    ``SEARCH`` is the method's search space for ``lifelong tune`` (field -> candidate
    values, from the literature's ranges; empty: nothing to tune) and ``SEARCH_SOURCE`` says
    where the ranges come from.
    """

    SEARCH: ClassVar[dict[str, tuple[Any, ...]]] = {}
    SEARCH_SOURCE: ClassVar[str] = ""

    def validate(self) -> None:
        """Raise :class:`ConfigError` for values out of range (called after construction)."""


def check(cond: bool, message: str) -> None:
    """Raise ConfigError(message) unless ``cond`` (for ``validate`` methods)."""
    if not cond:
        raise ConfigError(message)


@dataclass
class RunConfig(Config):
    """How a run is executed, independent of the learner and benchmark.

    ``epochs`` and ``batch_size`` default to the benchmark's paper values when None.
    ``device``, ``threads`` and ``cache_mb`` are execution settings: they may differ on
    ``--resume`` (results on another device can differ in the last digits).
    """

    benchmark: str = "split-mnist"
    learner: str = "hps"
    seed: int = 0
    # Training epochs per task: the papers switch tasks after a fixed budget.
    epochs: int | None = None
    batch_size: int | None = None
    eval_every: int = 1  # evaluate every seen task's val and test accuracy every N epochs
    checkpoint_every: int = 10  # epochs between checkpoints (task boundaries always checkpoint)
    net: str | None = None  # network preset; None: the benchmark's paper network
    setting: Literal["task-il", "class-il"] = "task-il"
    device: str = "auto"
    threads: int | None = None
    # Memory for decoded splits kept between epochs, over the whole run; splits that do not
    # fit are decoded batch by batch each time they are used.
    cache_mb: int = 1024
    # Drop a final partial batch each epoch: the DF-CNN/LASEM code trains on n // batch
    # batches per epoch (kept unless it would be the only batch).
    drop_last: bool = True
    # Measure training MACs (lifelong.macs; SKILL Table 1). Off by default: a measured step
    # runs under torch's flop counter, which costs time (the steps it measures are then
    # left out of train_seconds, estimated by the unmeasured steps' mean). `lifelong
    # compare` turns it on for its MAC column. Learners that count their own (LLL) always do.
    count_macs: bool = False
    # Evaluate the test splits (every eval_every epochs). Off: only validation accuracy is
    # recorded and test accuracies are NaN; `lifelong tune` runs this way, so that model
    # selection never reads a test split.
    evaluate_test: bool = True

    def validate(self) -> None:
        check(self.epochs is None or self.epochs >= 1, "epochs must be >= 1")
        check(self.batch_size is None or self.batch_size >= 1, "batch_size must be >= 1")
        check(self.eval_every >= 1, "eval_every must be >= 1")
        check(self.checkpoint_every >= 1, "checkpoint_every must be >= 1")
        max_threads = 4 * (os.cpu_count() or 1)
        check(self.threads is None or 1 <= self.threads <= max_threads,
              f"threads must be between 1 and {max_threads} (4 x this machine's CPUs)")
        check(self.cache_mb >= 0, "cache_mb must be >= 0")
        check(self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:"),
               f"device must be auto, cpu, cuda[:N] or mps, not {self.device!r}")

    #: Fields that may change between a run and its resumption.
    EXECUTION_ONLY = ("device", "threads", "cache_mb")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (from YAML or a ``key=value`` string) to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        if len(errors) > 1:  # name every alternative, not only the first one tried
            wanted = [m.group(1) for m in (re.match(rf"{re.escape(key)} must be (.*), not ", e)
                                           for e in errors) if m]
            if len(wanted) == len(errors):
                raise ConfigError(f"{key} must be {' or '.join(wanted)}, not {value!r}")
            raise ConfigError("; ".join(errors))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key} must be one of {', '.join(map(str, args))}, not {value!r}")
        return value
    if origin in (tuple, list):
        if isinstance(value, str):
            parsed = yaml.safe_load(value) if value.strip() else []
            value = parsed if isinstance(parsed, list) else [p for p in value.split(",") if p]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, not {value!r}")
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, key) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{key} must be true or false, not {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be an integer, not {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{key} must be an integer, not {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{key} must be a number, not {value!r}")
        number = None
        if isinstance(value, (int, float)):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None or not math.isfinite(number):
            raise ConfigError(f"{key} must be a finite number, not {value!r}")
        return number
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key} must be a string, not {value!r}")
    raise TypeError(f"unsupported config type {_type_name(tp)} for {key}")


def build_config(cls: type[C], values: Mapping[str, Any] | None, *, section: str) -> C:
    """Instantiate ``cls`` from ``values``: unknown keys and bad values raise ConfigError."""
    values = dict(values or {})
    hints = typing.get_type_hints(cls)
    names = [f.name for f in fields(cls)]
    for key in values:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=2)
            hint = f" (did you mean {' or '.join(close)}?)" if close else ""
            raise ConfigError(f"unknown key {section}.{key}{hint}; known: {', '.join(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{section}.{k}") for k, v in values.items()}
    cfg = cls(**kwargs)
    try:
        _check_seeds(cfg)
        cfg.validate()
    except ConfigError as err:
        raise ConfigError(f"{section}: {err}") from None
    return cfg


MAX_SEED = 2**31 - 1


def _check_seeds(cfg: Config) -> None:
    """Every config's ``seed`` / ``*_seed`` field must be a valid generator seed (numpy
    refuses negative seeds, and seeds are combined with epoch numbers in 64-bit integers)."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if (f.name == "seed" or f.name.endswith("_seed")) and value is not None:
            check(0 <= value <= MAX_SEED, f"{f.name} must be between 0 and {MAX_SEED}")


def config_to_dict(cfg: Config) -> dict[str, Any]:
    """Plain data (tuples as lists) for YAML/JSON."""
    def plain(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v

    return {f.name: plain(getattr(cfg, f.name)) for f in fields(cfg)}


def replace(cfg: C, **changes: Any) -> C:
    """A copy of ``cfg`` with ``changes`` (validated)."""
    new = dataclasses.replace(cfg, **changes)
    new.validate()
    return new


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["learner.lr=1e-3", "epochs=5"]`` -> ``{"learner": {"lr": "1e-3"}, "epochs": "5"}``.

    Values stay text: the declared type of the field they set converts them (so ``010`` is
    the integer 10, not YAML's octal 8, and a path that looks like a date stays a path).
    ``benchmark=NAME`` and ``learner=NAME`` name the run's benchmark and learner.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not key or not all(parts):
            raise ConfigError(f"expected key=value, got {item!r}")
        if parts in (["benchmark"], ["learner"]):
            parts = ["run", parts[0]]
        node = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{key}: {part} is a value, not a section")
            node = child
        if isinstance(node.get(parts[-1]), dict):
            raise ConfigError(f"{key}: {parts[-1]} is a section, not a value")
        node[parts[-1]] = value
    return out


def merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; ``update`` wins. Inputs are not modified."""
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = merge(dict(out[k]), v)
        else:
            out[k] = v
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file: a mapping with optional sections ``run``, ``benchmark``, ``learner``."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(f"config file {path} is not valid YAML: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping, not {type(data).__name__}")
    return data
