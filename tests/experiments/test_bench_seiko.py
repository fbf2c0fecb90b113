"""bench_seiko hands the campaign's settings to run_seiko: the pool method above all, which it once
composed and then dropped, so `--override method@seiko.pool=…` silently ran the plain pool."""

from types import SimpleNamespace

import pytest

import mbo.active
from experiments import bench_seiko

ARGS = SimpleNamespace(rounds=1, batch=2, progress=False)


@pytest.fixture
def calls(monkeypatch):
    seen = []
    monkeypatch.setattr(mbo.active, "run_seiko", lambda *a, **kw: seen.append((a, kw)) or [])
    return seen


def run(overrides, calls, method="seiko_ucb"):
    cfg, _ = bench_seiko.load_config(["length=8"], overrides, method)
    bench_seiko.run_method(method, 0, cfg, SimpleNamespace(oracle=None), None, None, ARGS)
    (_, kwargs), = calls
    return cfg, kwargs


def test_pool_method_reaches_run_seiko_with_its_overrides(calls):
    cfg, kw = run(["method@seiko.pool=gradient", "seiko.pool.scale=2", "seiko.c=3"], calls)
    pool = kw["pool_method"]
    assert pool.func.__name__ == "gradient_guidance" and pool.keywords["scale"] == 2
    assert kw["c"] == 3 and kw["alpha"] == cfg.finetune.alpha


def test_no_pool_method_by_default(calls):
    _, kw = run([], calls)
    assert kw["pool_method"] is None


def test_variant_overrides_apply(calls):
    _, kw = run([], calls, method="greedy")
    assert kw["c"] == 0.0
