"""How numbers are shown to people in tables: one style per column, so the values of one quantity line
up, and labels in any unit (1e-9 M, counts around 1e6) stay readable."""

from __future__ import annotations

import math
from collections.abc import Iterable


def column_format(values: Iterable[float | None]) -> str:
    """The format spec for a column holding ``values`` (None, nan and ±inf do not count): three
    decimals for ordinary magnitudes; three significant digits when every value is below 0.01 (1e-9 M
    would show as 0.000); one decimal and no exponent from 1e5 up (1e6 + 3.8 would show as 1e+06); from
    1e8 up, where float32 labels hold fewer digits than the integer part, five significant digits with an
    exponent (1e30 would show 31 digits, most of them noise)."""
    top = max((abs(v) for v in values if v is not None and math.isfinite(v)), default=0.0)
    if 0 < top < 1e-2:
        return ".3g"
    if top >= 1e8:
        return ".4e"
    return ".1f" if top >= 1e5 else ".3f"


def formatted(values: Iterable[float | None], missing: str = "") -> list[str]:
    """``values`` as text in their column's format (:func:`column_format`), ``missing`` for None."""
    values = list(values)
    spec = column_format(values)
    return [missing if v is None else format(v, spec) for v in values]


def plural(count: int, noun: str) -> str:
    """``count`` and ``noun``, with an s unless there is exactly one: "1 round", "3 rounds"."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"
