"""The benchmarks' shared Markdown helpers."""

from experiments.report import arms_table


def test_arms_table_has_one_row_per_arm_and_mean_se_over_runs():
    runs = [{"arms": {"a": {"rho": 0.5, "fit_s": 10.0}, "b": {"rho": 0.7, "fit_s": 12.0}}},
            {"arms": {"a": {"rho": 0.7, "fit_s": 14.0}, "b": {"rho": 0.7, "fit_s": 12.0}}}]
    lines = arms_table(runs, (("rho", "ρ"), ("fit_s", "fit s")))
    assert lines == ["| model | ρ | fit s |", "|---|---:|---:|",
                     "| a | 0.600 ± 0.100 | 12.0 ± 2.0 |", "| b | 0.700 ± 0.000 | 12.0 ± 0.0 |"]
    assert arms_table(runs[:1], (("rho", "ρ"),))[2] == "| a | 0.500 |"  # one seed: no ± to report


def test_the_provenance_says_why_an_inference_time_run_has_no_fine_tuned_checkpoint():
    from experiments.report import tuned_text

    assert tuned_text("none (inference-time method)") == "no fine-tuned checkpoint (inference-time method)"
    assert tuned_text("ab" * 32) == f"fine-tuned weights sha256 {'ab' * 8}… (finetuned.safetensors)"
