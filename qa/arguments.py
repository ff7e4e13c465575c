"""Checks of the arguments every entry point takes: the CLI, the web API and the Python API share them.

Each check returns the value in its proper type or raises ``ArgumentError`` with one
line that names the argument, says what it must be and shows (briefly) what it got.
Values arrive as JSON from the web API, so anything may come: numbers that are NaN or
infinite, strings with lone surrogates (an undecodable byte on the command line
becomes one), lists where text was expected, and so on.
"""

from __future__ import annotations

import math
import re

# A lone surrogate cannot be encoded as UTF-8: tokenizers, files and JSON output all fail on it.
_SURROGATE = re.compile("[\ud800-\udfff]")


class ArgumentError(ValueError):
    """An argument of the wrong type, not valid text, or out of range; the message names it."""


def describe(value: object, limit: int = 40) -> str:
    """What a value is, short and on one line, for a message ("a list", "nan", "'abc…'")."""
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (bytes, bytearray)):
        return "bytes"
    shown = repr(value)  # escapes line breaks and surrogates
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


def check_text(value: object, name: str, *, max_chars: int | None = None) -> str:
    """``value`` as text: a str that is valid Unicode and, with ``max_chars``, not longer.

    Raises:
        ArgumentError: not a str, a lone surrogate or undecodable byte in it, or too long.
    """
    if not isinstance(value, str):
        raise ArgumentError(f"{name} must be text, got {describe(value)}")
    bad = _SURROGATE.search(value)
    if bad is not None:
        raise ArgumentError(f"{name} is not valid text: character {bad.start() + 1:,} is an undecodable byte "
                            "or a lone surrogate; send UTF-8")
    if max_chars is not None and len(value) > max_chars:
        raise ArgumentError(f"{name} is {len(value):,} characters long; the limit is {max_chars:,}")
    return value


def check_count(value: object, name: str, *, low: int = 1, high: int | None = None) -> int:
    """``value`` as a whole number in [low, high]; a float is taken only when it is whole (3.0).

    Raises:
        ArgumentError: not a number, NaN, infinite, fractional, a bool, or out of range.
    """
    bounds = f"from {low} to {high}" if high is not None else f"of at least {low}"
    whole = (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, float) and math.isfinite(value) and value.is_integer())
    if not whole or not low <= value <= (high if high is not None else math.inf):
        raise ArgumentError(f"{name} must be a whole number {bounds}, got {describe(value)}")
    return int(value)


def check_flag(value: object, name: str) -> bool:
    """``value`` as a bool (true or false; 0 and 1 are not taken for them)."""
    if not isinstance(value, bool):
        raise ArgumentError(f"{name} must be true or false, got {describe(value)}")
    return value


def check_list(value: object, name: str, *, max_items: int | None = None) -> list:
    """``value`` as a list (a tuple is taken; text, an object or a number is not; None is empty).

    Raises:
        ArgumentError: not a list, or longer than ``max_items``.
    """
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        raise ArgumentError(f"{name} must be a list, got {describe(value)}")
    if max_items is not None and len(value) > max_items:
        raise ArgumentError(f"{name} holds {len(value):,} items; the limit is {max_items:,}")
    return list(value)


def check_text_list(value: object, name: str, *, max_items: int | None = None,
                    max_chars: int | None = None) -> list[str]:
    """``value`` as a list of texts, each checked as by ``check_text`` (None is empty)."""
    items = check_list(value, name, max_items=max_items)
    return [check_text(item, f"{name}[{i}]", max_chars=max_chars) for i, item in enumerate(items)]
