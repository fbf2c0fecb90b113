"""Strict JSON for metrics and summaries (mbo.jsonfile)."""

import json
import math

from mbo import jsonfile


def test_infinities_round_trip_and_the_text_is_strict_json():
    obj = {"p50": -math.inf, "best": math.inf, "std": math.nan, "rows": [1, 2.5, -math.inf], "name": "nan"}
    text = jsonfile.dumps(obj, indent=2)
    strict = json.loads(text, parse_constant=lambda word: (_ for _ in ()).throw(ValueError(word)))
    assert strict == {"p50": "-inf", "best": "inf", "std": None, "rows": [1, 2.5, "-inf"], "name": "nan"}
    assert jsonfile.loads(text) == {**obj, "std": None}


def test_files_with_bare_infinity_are_still_read():
    assert jsonfile.loads('{"p50": -Infinity}') == {"p50": -math.inf}
