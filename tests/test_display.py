import math

from mbo.display import column_format, formatted, plural


def test_a_column_keeps_one_format_and_labels_in_any_unit_stay_readable():
    assert formatted([0.0107, 0.00731]) == ["0.011", "0.007"]  # one column, one number of decimals
    assert formatted([1.05e-8, 2.2e-9, 0.0]) == ["1.05e-08", "2.2e-09", "0"]  # 1e-9 M is not 0.000
    assert formatted([1000003.81, 1000001.56]) == ["1000003.8", "1000001.6"]  # not 1e+06 twice
    assert formatted([7.204e29, 3.1e28]) == ["7.2040e+29", "3.1000e+28"]  # not 30 digits of float32 noise
    assert formatted([None, -math.inf, 0.5], missing="-") == ["-", "-inf", "0.500"]
    assert column_format([math.nan, None]) == ".3f"


def test_plural():
    assert [plural(n, "round") for n in (0, 1, 2)] == ["0 rounds", "1 round", "2 rounds"]
