"""Typed config sections from YAML dicts, with errors that name the key path.

``from_dict(SomeDataclass, data, "train.optimizer")`` checks every key against the dataclass
fields and every value against its annotation (int, float, str, bool, Path, Literal, lists,
optional values, nested dataclasses), so a typo or a wrong value stops the run before any
work starts, with the full key path, the offending value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal


from .errors import ConfigError  # noqa: E402,F401  (the one definition; re-exported)


#: Per-dataclass value rules: {cls: {field: (predicate, message)}}, checked after conversion.
Rules = dict[type, dict[str, tuple[typing.Callable[[Any], bool], str]]]


def _describe(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"a list of {_describe(args[0]) if args else 'values'}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp) if a is not type(None)) + " or null"
    if dataclasses.is_dataclass(tp):
        return "a mapping with keys " + ", ".join(f.name for f in dataclasses.fields(tp))
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp, path: str, rules: Rules | None = None) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path, rules)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{path}: expected {_describe(tp)}, got {value!r}")
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{path}: allowed values are {list(typing.get_args(tp))} (got {value!r})")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected {_describe(tp)}, got {value!r}")
        (item,) = typing.get_args(tp)[:1] or (Any,)
        return [_convert(v, item, f"{path}[{i}]", rules) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        _, vt = typing.get_args(tp) or (str, Any)
        return {str(k): _convert(v, vt, f"{path}.{k}", rules) for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path, rules)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{path}: expected a file path, got {value!r}")
        return Path(value)
    return value


def from_dict(cls, data: dict | None, path: str, rules: Rules | None = None):
    """Build dataclass ``cls`` from ``data``; unknown keys and bad values raise ConfigError.

    ``rules`` add value checks per dataclass and field (ranges, allowed strings).
    """
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with keys "
                          + ", ".join(f.name for f in dataclasses.fields(cls)) + f", got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{path}.{unknown[0]}: unknown key; allowed keys are {sorted(fields)}")
    kwargs = {}
    for name, field in fields.items():
        key_path = f"{path}.{name}" if path else name
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], key_path, rules)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key_path}: required key missing ({_describe(hints[name])})")
    for name, (ok, message) in (rules or {}).get(cls, {}).items():
        if name in kwargs and not ok(kwargs[name]):
            raise ConfigError(f"{path}.{name}: {message} (got {kwargs[name]!r})")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        if isinstance(err, ConfigError) and str(err).startswith(path):
            raise
        raise ConfigError(f"{path}: {err}") from err
