"""The JSON the project writes (metrics, histories, summaries): strict RFC 8259, readable anywhere.

Python's ``json`` writes ±inf and NaN as the bare words ``Infinity`` and ``NaN``, which jq, JavaScript
and most other readers reject. A design the oracle finds infeasible scores −inf, so metrics hold it
routinely: here ±inf are the strings ``"inf"`` and ``"-inf"`` (what ``float()`` reads back in any
language's idiom), NaN (a statistic that is undefined, as the spread of one seed) is ``null``, and
:func:`loads` turns the two strings back into floats.
"""

from __future__ import annotations

import json
import math
from typing import Any

INFINITIES = {"inf": math.inf, "-inf": -math.inf}


def dumps(obj: Any, indent: int | None = None) -> str:
    """Strict JSON text of ``obj`` (dicts, lists, tuples, numbers, strings, bools, None)."""
    return json.dumps(_strict(obj), indent=indent, allow_nan=False)


def loads(text: str) -> Any:
    """What :func:`dumps` wrote, with ``"inf"`` / ``"-inf"`` back as floats (older files' bare
    ``Infinity`` are read too)."""
    return _floats(json.loads(text))


def _strict(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_strict(v) for v in obj]
    return obj


def _floats(obj: Any) -> Any:
    if isinstance(obj, str):
        return INFINITIES.get(obj, obj)
    if isinstance(obj, dict):
        return {k: _floats(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_floats(v) for v in obj]
    return obj
