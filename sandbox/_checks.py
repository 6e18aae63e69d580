"""Validation of the numbers a world is configured with: one wording for every place that takes them."""

from __future__ import annotations

import math
from typing import Any

from .errors import InvalidParameterError


def seconds(name: str, value: Any, *, positive: bool = False) -> float:
    """``value`` as seconds if it is a finite number >= 0 (> 0 if ``positive``), else InvalidParameterError."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        or (positive and value == 0)
    ):
        need = "> 0" if positive else ">= 0"
        raise InvalidParameterError(f"{name}={value!r}: use a finite number of seconds {need}")
    return float(value)


def timeout(name: str, value: Any) -> float | None:
    """``value`` as seconds if it is a usable timeout (a finite number > 0), or None (wait forever)."""
    if value is None:
        return None
    try:
        return seconds(name, value, positive=True)
    except InvalidParameterError as exc:
        raise InvalidParameterError(f"{exc}, or None to wait forever") from None


def probability(name: str, value: Any) -> float:
    """``value`` if it is a number between 0 and 1, else InvalidParameterError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise InvalidParameterError(f"{name}={value!r}: a probability must be a number between 0 and 1")
    return float(value)
