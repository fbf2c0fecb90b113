"""bench_flexs hands the campaign's settings to run_seiko, the pool method included: without it
`--override method@seiko.pool=…` composed a guided pool and then silently ran the plain one."""

import importlib
from types import SimpleNamespace

import pytest
import torch

import mbo.active
from experiments import bench_flexs
from mbo.active import QueryBatch
from mbo.data.alphabet import get_alphabet
from mbo.data.dataset import SequenceDataset

START = SequenceDataset(torch.tensor([[0, 1, 2, 3]]), get_alphabet("dna"), labels=torch.tensor([0.5]))


@pytest.fixture
def calls(monkeypatch):
    seen = []
    # round 1 is random mutagenesis's; one infeasible design, which the method is not handed
    warmup = QueryBatch(tokens=torch.tensor([[1, 1, 2, 3], [2, 1, 2, 3]]),
                        values=torch.tensor([0.7, float("-inf")]))
    # the package exports a function of the submodule's name, so reach the module itself
    module = importlib.import_module("mbo.active.random_mutagenesis")
    monkeypatch.setattr(module, "random_mutagenesis", lambda *a, **kw: [warmup])
    monkeypatch.setattr(mbo.active, "run_seiko", lambda *a, **kw: seen.append((a, kw)) or [])
    return seen


def run(overrides, calls):
    args = SimpleNamespace(rounds=3, batch=2, progress=False, override=overrides)
    batches = bench_flexs.run_flexs_method("seiko", SimpleNamespace(oracle=None), START, 0, args)
    (positional, kwargs), = calls
    return batches, positional, kwargs


def test_pool_method_reaches_run_seiko_with_its_overrides(calls):
    _, _, kw = run(["method@seiko.pool=gradient", "seiko.pool.scale=2", "finetune.iterations=0"], calls)
    pool = kw["pool_method"]
    assert pool.func.__name__ == "gradient_guidance" and pool.keywords["scale"] == 2
    assert kw["rounds"] == 2  # round 1 was the warm-up


def test_plain_pool_when_removed_and_warmup_handed_over(calls):
    batches, (_, data, *_), kw = run(["~method@seiko.pool"], calls)
    assert kw["pool_method"] is None and len(batches) == 1
    assert data.tokens.tolist() == [[0, 1, 2, 3], [1, 1, 2, 3]]  # the start and round 1's feasible design


def test_report_names_the_threads_its_runs_used():
    # A run from before the field was recorded used 1 thread.
    assert bench_flexs._machine([{"threads": 2}, {}]).endswith("threads per run 1, 2.")
