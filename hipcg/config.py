"""Typed config sections from YAML dicts, with errors that name the key path.

``from_dict(SomeDataclass, data, "train.optimizer")`` checks every key against the dataclass
fields and every value against its annotation (int, float, str, bool, Path, Literal, lists,
optional values, nested dataclasses), so a typo or a wrong value stops the run before any
work starts, with the full key path, the offending value and what is allowed.

Ranges and name rules are declared once, on the field itself, with ``typing.Annotated``::

    dr: Annotated[float, Range(gt=0)] = 0.1     # or the aliases Positive, NonNegative, ...
    name: SafeName                              # usable as a file or folder name

(Hand-written rather than pydantic: the rules are few, the messages must carry the YAML key
path, and the dataclasses stay plain for the stage functions.)  :func:`load_yaml` reads a
YAML file and refuses duplicate keys, which PyYAML would silently let the last one win.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from .errors import ConfigError  # the one definition; re-exported as hipcg.config.ConfigError


@dataclasses.dataclass(frozen=True)
class Range:
    """Bounds of a number, checked after conversion: ``Annotated[float, Range(gt=0)]``."""

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def check(self, value, path: str) -> None:
        for bound, ok, word in ((self.gt, lambda b: value > b, ">"), (self.ge, lambda b: value >= b, ">="),
                                (self.lt, lambda b: value < b, "<"), (self.le, lambda b: value <= b, "<=")):
            if bound is not None and not ok(bound):
                raise ConfigError(f"{path}: must be {self.describe()} (got {value!r})")

    def describe(self) -> str:
        low, high = (self.gt, self.ge), (self.lt, self.le)
        if any(b is not None for b in low) and any(b is not None for b in high):
            return (f"in {'(' if self.gt is not None else '['}{self.gt if self.gt is not None else self.ge:g}, "
                    f"{self.lt if self.lt is not None else self.le:g}{')' if self.lt is not None else ']'}")
        parts = [f"{word} {b:g}" for b, word in ((self.gt, ">"), (self.ge, ">="), (self.lt, "<"),
                                                 (self.le, "<=")) if b is not None]
        return " and ".join(parts)


@dataclasses.dataclass(frozen=True)
class Check:
    """A rule no range says: ``Annotated[str, Check(is_device, "allowed values are ...")]``."""

    predicate: typing.Callable[[Any], bool]
    message: str

    def check(self, value, path: str) -> None:
        if not self.predicate(value):
            raise ConfigError(f"{path}: {self.message} (got {value!r})")


@dataclasses.dataclass(frozen=True)
class FileNameSafe:
    """A string that becomes a file or folder name: letters, digits, '.', '_', '-', not '..'."""

    pattern: typing.ClassVar[re.Pattern] = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")

    def check(self, value, path: str) -> None:
        if not self.pattern.fullmatch(value) or ".." in value:
            raise ConfigError(f"{path}: {value!r} is used as a file name: use letters, digits, "
                              "'.', '_' and '-' only (no spaces, '/' or '..')")


def slug(label: str) -> str:
    """The folder name of a display label: ``"pairwise MS-CG"`` -> ``"pairwise-ms-cg"``.

    Labels stay in reports; paths get slugs, so LAMMPS inputs (``read_data``, ``pair_coeff``)
    work from any working directory and in shells without quoting.
    """
    text = re.sub(r"[^A-Za-z0-9._]+", "-", label.strip()).strip("-.").lower()
    return re.sub(r"\.{2,}", ".", text) or "unnamed"


Positive = Annotated[float, Range(gt=0)]
NonNegative = Annotated[float, Range(ge=0)]
PositiveInt = Annotated[int, Range(ge=1)]
NonNegativeInt = Annotated[int, Range(ge=0)]
SafeName = Annotated[str, FileNameSafe()]


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: key {key!r} given twice "
                                  f"(first on line {seen[key] + 1})")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path, text: str | None = None, what: str = "YAML file") -> Any:
    """Parse a YAML file (or ``text`` read from it); errors name the file and line."""
    path = Path(path)
    try:
        if text is None:
            text = path.read_text()
        return yaml.load(text, Loader=_UniqueKeyLoader)
    except FileNotFoundError as err:
        raise ConfigError(f"{path}: {what} not found") from err
    except IsADirectoryError as err:
        raise ConfigError(f"{path}: is a folder, expected a {what}") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a text file (cannot read {what})") from err
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err


def _describe(tp) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is Annotated:
        base, *checks = typing.get_args(tp)
        ranges = [c.describe() for c in checks if isinstance(c, Range)]
        return _describe(base) + (f" {' and '.join(ranges)}" if ranges else "")
    if origin in (list, tuple):
        args = typing.get_args(tp)
        return f"a list of {_describe(args[0]) if args else 'values'}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp) if a is not type(None)) + " or null"
    if dataclasses.is_dataclass(tp):
        return "a mapping with keys " + ", ".join(f.name for f in dataclasses.fields(tp))
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp, path: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is Annotated:
        base, *checks = typing.get_args(tp)
        value = _convert(value, base, path)
        for check in checks:
            if value is not None and hasattr(check, "check"):
                check.check(value, path)
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        others = [a for a in args if a is not type(None)]
        if len(others) == 1:  # X | None: X's own message (its range, its allowed values)
            return _convert(value, others[0], path)
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path)
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
        return [_convert(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        _, vt = typing.get_args(tp) or (str, Any)
        return {str(k): _convert(v, vt, f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
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


def _join(path: str, key: str) -> str:
    """``train.optimizer`` + ``lr`` -> ``train.optimizer.lr``; a top-level key stands alone."""
    return f"{path}.{key}" if path else key


def from_dict(cls, data: dict | None, path: str):
    """Build dataclass ``cls`` from ``data``; unknown keys and bad values raise ConfigError.

    Ranges and allowed values come from the fields' annotations (``Annotated``, ``Literal``).
    """
    data = {} if data is None else data
    if hasattr(cls, "upgrade_config"):  # old spellings of this section, renamed with a warning
        data = cls.upgrade_config(data, path)
    if not isinstance(data, dict):
        raise ConfigError(f"{path + ': ' if path else ''}expected a mapping with keys "
                          + ", ".join(f.name for f in dataclasses.fields(cls)) + f", got {data!r}")
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{_join(path, unknown[0])}: unknown key; allowed keys are {sorted(fields)}")
    kwargs = {}
    for name, field in fields.items():
        key_path = _join(path, name)
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], key_path)
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key_path}: required key missing ({_describe(hints[name])})")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as err:
        if isinstance(err, ConfigError) and str(err).startswith(path):
            raise
        raise ConfigError(f"{path}: {err}") from err


def check_fields(obj, path: str) -> None:
    """Run the ``Annotated`` range and name rules of a dataclass built directly in Python
    (``__post_init__``), so a value is checked the same way whether it came from YAML or code."""
    hints = typing.get_type_hints(type(obj), include_extras=True)
    for f in dataclasses.fields(obj):
        _check_value(getattr(obj, f.name), hints[f.name], _join(path, f.name))


def _check_value(value, tp, path: str) -> None:
    origin = typing.get_origin(tp)
    if value is None:
        return
    if origin is Annotated:
        base, *checks = typing.get_args(tp)
        for check in checks:
            if hasattr(check, "check"):
                if isinstance(value, float) and not math.isfinite(value):
                    raise ConfigError(f"{path}: expected a finite number, got {value!r}")
                check.check(value, path)
        _check_value(value, base, path)
    elif origin in (typing.Union, types.UnionType):
        others = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(others) == 1:
            _check_value(value, others[0], path)
    elif origin in (list, tuple) and typing.get_args(tp):
        for i, item in enumerate(value):
            _check_value(item, typing.get_args(tp)[0], f"{path}[{i}]")
    elif origin is Literal and value not in typing.get_args(tp):
        raise ConfigError(f"{path}: allowed values are {list(typing.get_args(tp))} (got {value!r})")


def from_args(cls, values: dict, command: str):
    """Build dataclass ``cls`` from command-line values, with the field rules of the schema;
    a bad value is reported under its flag (``--dr: must be > 0 (got 0.0)``)."""
    try:
        return from_dict(cls, {k: v for k, v in values.items() if v is not None}, "")
    except ConfigError as err:
        key, sep, rest = str(err).partition(": ")
        flag = "--" + key.split(".")[0].split("[")[0].replace("_", "-")
        raise ConfigError(f"{command} {flag}: {rest}" if sep else f"{command}: {err}") from None


def from_yaml_file(cls, path: str | Path, what: str):
    """Dataclass ``cls`` from a whole YAML file; every error starts with the file's name."""
    data = load_yaml(path, what=what)
    try:
        return from_dict(cls, data, "")
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
