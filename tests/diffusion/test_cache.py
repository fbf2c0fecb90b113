"""The cached, locked pretraining shared by mbo-run, campaigns and benchmarks."""

import threading
import time

import torch

import mbo.diffusion.cache as cache
from mbo.config import compose_config

TINY = ["diffusion.denoiser.dim=16", "diffusion.denoiser.depth=1", "diffusion.denoiser.heads=2",
        "diffusion.pretrain.steps=4", "diffusion.pretrain.batch_size=16"]


def settings(*overrides):
    return compose_config("config", [*TINY, *overrides]).diffusion


def corpus(seed=0):
    return torch.randint(0, 4, (64, 6), generator=torch.Generator().manual_seed(seed))


def test_parallel_callers_pretrain_once(tmp_path, monkeypatch):
    calls = []
    real_pretrain = cache.pretrain

    def slow_pretrain(*args, **kwargs):
        calls.append(threading.get_ident())
        time.sleep(0.3)  # hold the lock long enough that the other caller must wait for it
        return real_pretrain(*args, **kwargs)

    monkeypatch.setattr(cache, "pretrain", slow_pretrain)
    models = [None, None]
    shared = settings()

    def worker(i):
        models[i] = cache.pretrained_diffusion(corpus(), 4, shared, tmp_path)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(calls) == 1
    assert all(m is not None for m in models)
    sd0, sd1 = (m.state_dict() for m in models)
    assert all(torch.equal(sd0[k], sd1[k]) for k in sd0)  # the waiter loaded what the first wrote
    assert len(list(tmp_path.glob("*.safetensors"))) == 1


def test_key_follows_corpus_and_training_settings_not_the_sampler():
    key = cache.cache_key(corpus(), 4, settings())
    assert key == cache.cache_key(corpus(), 4, settings("diffusion/sampler=grid", "diffusion.min_prob=0.1"))
    assert key != cache.cache_key(corpus(1), 4, settings())
    assert key != cache.cache_key(corpus(), 4, settings("diffusion.pretrain.lr=1e-3"))


def test_loaded_model_takes_the_callers_sampler(tmp_path):
    first = cache.pretrained_diffusion(corpus(), 4, settings(), tmp_path)
    again = cache.pretrained_diffusion(corpus(), 4, settings("diffusion/sampler=grid"), tmp_path)
    assert type(first.sampler).__name__ == "FirstHittingSampler"
    assert type(again.sampler).__name__ == "GridSampler"
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), again.state_dict().values(),
                                                    strict=True))


def test_pretraining_that_cannot_fit_in_memory_is_refused_before_it_starts(tmp_path, monkeypatch):
    import importlib

    import pytest

    pretrain = importlib.import_module("mbo.diffusion.pretrain")  # the package's `pretrain` is the function

    monkeypatch.setattr(pretrain, "memory_bytes", lambda device: 2**20)  # a machine of 1 MiB
    long = torch.randint(0, 4, (8, 300), generator=torch.Generator().manual_seed(0))
    with pytest.raises(MemoryError, match=r"length 300 needs about .* lower diffusion.pretrain.batch_size"):
        cache.pretrained_diffusion(long, 4, settings(), tmp_path)
    assert not list(tmp_path.glob("*.safetensors"))
    assert pretrain.pretraining_memory(1000, compose_config("config").diffusion) > 2 * 2**30  # the 1000-mer


def test_a_cache_entry_that_is_not_this_prior_is_pretrained_again(tmp_path):
    from mbo.checkpoint import save_checkpoint
    from mbo.ctrl.conditional import make_conditional

    first = cache.pretrained_diffusion(corpus(), 4, settings(), tmp_path)
    (path,) = tmp_path.glob("*.safetensors")
    # A CTRL model; a prior of another length; one of another width (a fine-tuned copy has no settings).
    for wrong in (make_conditional(first, [2]), cache.train_diffusion(corpus()[:, :5], 4, settings())[0],
                  cache.train_diffusion(corpus(), 4, settings("diffusion.denoiser.dim=8"))[0]):
        save_checkpoint(path, wrong, overwrite=True)
        again = cache.pretrained_diffusion(corpus(), 4, settings(), tmp_path)
        assert type(again.denoiser) is type(first.denoiser) and again.config == first.config


def test_a_corpus_that_is_not_tokens_is_refused_before_the_cache_is_touched(tmp_path):
    import pytest

    for bad, problem in ((corpus()[0], r"LongTensor \(N, L\), got torch.int64 \(6,\)"),
                         (corpus().float(), "LongTensor"), (corpus() + 4, "row 0, position 0: token")):
        with pytest.raises(ValueError, match=problem):
            cache.pretrained_diffusion(bad, 4, settings(), tmp_path / "cache")
    assert not (tmp_path / "cache").exists()
