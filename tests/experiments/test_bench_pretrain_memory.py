"""experiments/bench_pretrain_memory.py on a tiny length."""

from experiments.bench_pretrain_memory import measure


def test_measure_reports_the_peak_and_the_estimate():
    row = measure(16, 8)
    assert row["length"] == 16 and row["peak_gib"] > 0 and row["estimate_gib"] > 0
    assert row["training_gib"] >= 0
