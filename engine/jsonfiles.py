"""Reading JSON that a user or a download gave us: every way it can be wrong is one InputError line."""

from __future__ import annotations

import json
import math
from pathlib import Path
from collections.abc import Callable
from typing import Any, TypeVar

from engine.errors import InputError

T = TypeVar("T")


def parse_json(text: str, where: str | Path) -> Any:
    """`json.loads`, with bad syntax and absurd nesting (thousands deep) reported against `where`."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"not valid JSON ({error.msg} at line {error.lineno})", where) from None
    except RecursionError:
        raise InputError("not valid JSON (nested too deeply)", where) from None


def utf8_text(path: Path) -> str:
    """A JSON file's text, read as UTF-8; a folder, bad bytes or an OS error is an InputError naming it."""
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("not UTF-8 text", path) from None
    except IsADirectoryError:
        raise InputError("is a folder, not a JSON file", path) from None
    except OSError as error:
        raise InputError(f"cannot read the file ({error.strerror or error})", path) from None


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file holding one object (a dict), read as UTF-8."""
    data = parse_json(utf8_text(path), path)
    if not isinstance(data, dict):
        raise InputError(f"must hold a JSON object, not {json_type(data)}", path)
    return data


def read_config(path: str | Path, from_dict: Callable[[Any], T]) -> T:
    """A JSON config file, built by `from_dict`; every problem is one InputError naming the file."""
    path = Path(path)
    if not path.exists():
        raise InputError("no such config file", path)
    data = parse_json(utf8_text(path), path)
    try:
        return from_dict(data)
    except InputError as error:
        raise InputError(error.problem, path) from None


def json_type(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def check_int_field(data: dict, key: str, low: int, high: int, path: Path, optional: bool = False) -> None:
    """`data[key]` must be an integer in [low, high] (or absent / null when `optional`)."""
    if key not in data or (optional and data[key] is None):
        return
    value = data[key]
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError(f"'{key}' must be an integer, not {json_type(data[key])}", path)
    if not low <= value <= high:
        raise InputError(f"'{key}' is {value}; it must be between {low} and {high}", path)
