"""Strict loading of nested kw-only dataclass configs from TOML tables and dotted overrides.

Every value is checked against the field's type hint; an unknown key, a wrong type or a bad file
raises ConfigError naming the dotted key and the source, which the CLI turns into exit code 2.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")


class ConfigError(Exception):
    """A configuration file or override is invalid; the message names the key and source."""


def load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def build(cls: type[T], data: Mapping[str, Any], *, source: str, prefix: str = "") -> T:
    """Instantiate dataclass `cls` from `data`, checking keys and types recursively."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in fields:
            known = ", ".join(sorted(prefix + k for k in fields))
            raise ConfigError(f"unknown key '{dotted}' in {source} (known: {known})")
        kwargs[key] = coerce(value, hints[key], key=dotted, source=source)
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        where = f"[{prefix.rstrip('.')}]" if prefix else "config"
        raise ConfigError(f"{where} in {source}: {exc}") from None


def coerce(value: Any, hint: Any, *, key: str, source: str) -> Any:
    """Check `value` against type `hint`, converting str→Path and int→float where lossless."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)

    def fail(expected: str) -> ConfigError:
        got = type(value).__name__
        return ConfigError(f"'{key}' in {source}: expected {expected}, got {got} {value!r}")

    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if not isinstance(value, Mapping):
            raise fail("a table")
        return build(hint, value, source=source, prefix=f"{key}.")
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return coerce(value, arg, key=key, source=source)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is Literal:
        if value not in args:
            raise fail("one of " + ", ".join(repr(a) for a in args))
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise fail("a list")
        item = args[0] if args else Any
        items = [coerce(v, item, key=f"{key}[{i}]", source=source) for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise fail("a table")
        k_hint, v_hint = args or (str, Any)
        return {
            coerce(k, k_hint, key=key, source=source): coerce(
                v, v_hint, key=f"{key}.{k}", source=source
            )
            for k, v in value.items()
        }
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an integer")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail("a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise fail("a string")
        return value
    if hint is Path:
        if not isinstance(value, str | Path):
            raise fail("a path string")
        return Path(value).expanduser()
    raise ConfigError(f"'{key}': unsupported config type {hint!r}")


def merge_dotted(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Return `data` with each `a.b.c = v` override set, creating tables on the way."""
    out: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for dotted, value in overrides.items():
        *tables, leaf = dotted.split(".")
        node = out
        for i, part in enumerate(tables):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"'{'.'.join(tables[: i + 1])}' is not a table")
            node[part] = child = dict(child)
            node = child
        node[leaf] = value
    return out


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse a `--set key=value` flag; the value is read as TOML, falling back to a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key=value, got {text!r}")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.strip(), value
