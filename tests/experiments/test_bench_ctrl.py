"""bench_ctrl runs fine-tuner variants beside each other: a variant is the app's settings of its
ctrl/finetune option with the given keys changed, so a row says exactly what ran."""

import pytest

from experiments.bench_ctrl import FINETUNE, finetuner_variants


def test_a_variant_is_the_apps_settings_with_its_keys_changed():
    variants = finetuner_variants(["vidd", "vidd:completion=argmax,iterations=7"])
    assert list(variants) == ["vidd", "vidd:completion=argmax,iterations=7"]
    plain, changed = variants["vidd"], variants["vidd:completion=argmax,iterations=7"]
    assert plain == FINETUNE["vidd"]
    assert changed.completion == "argmax" and changed.iterations == 7
    assert {k: v for k, v in changed.items() if k not in ("completion", "iterations")} == \
        {k: v for k, v in plain.items() if k not in ("completion", "iterations")}


def test_an_unknown_finetuner_is_refused_by_name():
    with pytest.raises(SystemExit, match="unknown fine-tuner 'adam'"):
        finetuner_variants(["adam:lr=1"])

