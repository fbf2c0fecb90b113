import math

import pytest
import torch

from mbo.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mbo.diffusion import (
    MaskedDiffusion,
    TransformerDenoiser,
    load_masked_diffusion,
    pretrain,
)

# A tiny data distribution over length-3 binary sequences.
SEQS = {(0, 0, 1): 0.5, (1, 1, 0): 0.3, (1, 0, 1): 0.2}
ENTROPY = -sum(p * math.log(p) for p in SEQS.values())
ONE_STEP = dict(steps=1, batch_size=2, lr=1e-3, weight_decay=0.0, warmup=1)


def corpus() -> torch.Tensor:
    rows = [list(s) for s, p in SEQS.items() for _ in range(int(p * 10))]
    return torch.tensor(rows)


def model(seed: int = 0, vocab: int = 2, length: int = 3, dim: int = 16) -> MaskedDiffusion:
    torch.manual_seed(seed)
    net = TransformerDenoiser(vocab, length, dim=dim, depth=2, heads=2, mlp_ratio=2)
    return MaskedDiffusion(net, vocab, length)


@pytest.fixture(scope="module")
def fitted():
    m = model(dim=64)
    hist = pretrain(m, corpus(), steps=400, batch_size=64, lr=3e-3, weight_decay=0.01, warmup=20,
                    log_every=40)
    return m, hist


def test_loss_decreases_towards_entropy(fitted):
    _, hist = fitted
    assert [h["step"] for h in hist] == list(range(40, 401, 40))
    assert hist[-1]["loss"] < hist[0]["loss"]
    # NELBO per token is an upper bound on the data entropy per token (0.343 nats); close to it.
    assert hist[-1]["loss"] < ENTROPY / 3 + 0.08


@pytest.mark.parametrize("sampler", [32, "first_hitting"])
def test_samples_reproduce_frequencies(fitted, sampler):
    m, _ = fitted
    x = m.sample(3000, sampler=sampler, generator=torch.Generator().manual_seed(0))
    for seq, p in SEQS.items():
        freq = (x == torch.tensor(seq)).all(-1).float().mean().item()
        assert abs(freq - p) < 0.05, (seq, freq, p)  # 0.05 ~ 5 standard errors at n=3000


def test_elbo_is_a_lower_bound_of_the_data_distribution(fitted):
    m, _ = fitted
    elbo = m.elbo(torch.tensor(list(SEQS)), n_samples=256, generator=torch.Generator().manual_seed(0))
    # Lower bounds on log p of the three sequences that hold nearly all the mass: sum(exp) <= ~1.
    assert 0.75 < elbo.exp().sum().item() < 1.05


def test_pretrain_is_seeded():
    runs = []
    for _ in range(2):
        m = model()
        h = pretrain(m, corpus(), steps=5, batch_size=8, lr=2e-3, weight_decay=0.01, warmup=2, log_every=1,
                     seed=7)
        runs.append((h, m.denoiser.head.weight.detach().clone()))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])


def test_pretrain_rejects_bad_corpus():
    m = model()
    with pytest.raises(ValueError, match="row 1, position 2: token 5"):
        pretrain(m, torch.tensor([[0, 1, 0], [0, 1, 5]]), **ONE_STEP)
    with pytest.raises(ValueError, match="length 4"):
        pretrain(m, torch.zeros(2, 4, dtype=torch.long), **ONE_STEP)
    with pytest.raises(ValueError, match="LongTensor"):
        pretrain(m, torch.zeros(2, 3), **ONE_STEP)


def test_checkpoint_round_trip(tmp_path):
    m = model(seed=3).eval()
    path = save_checkpoint(tmp_path / "m.safetensors", m)  # kind and config from the model
    loaded = load_masked_diffusion(path, vocab_size=2, length=3)
    assert not loaded.training and loaded.config == m.config
    x = torch.tensor([[2, 2, 2], [0, 2, 1]])
    assert torch.equal(m.x0_log_probs(m.encode(x)), loaded.x0_log_probs(loaded.encode(x)))
    g1, g2 = (torch.Generator().manual_seed(0) for _ in range(2))
    assert torch.equal(m.sample(8, sampler=3, generator=g1), loaded.sample(8, sampler=3, generator=g2))
    # Extra keys (experiments/run.py stores its cache spec) do not get in the way.
    extra = save_checkpoint(tmp_path / "x.safetensors", m, {**m.config, "spec": {"a": 1}})
    assert load_masked_diffusion(extra).config == m.config


def test_bad_diffusion_checkpoints_name_the_path(tmp_path):
    good = save_checkpoint(tmp_path / "good.safetensors", model())
    with pytest.raises(CheckpointError, match=r"good\.safetensors was trained for length=3, expected 8"):
        load_masked_diffusion(good, length=8)
    with pytest.raises(CheckpointError, match=r"good\.safetensors was trained for vocab_size=2, expected 4"):
        load_masked_diffusion(good, vocab_size=4)

    # A checkpoint of another kind of model.
    other = save_checkpoint(tmp_path / "other.safetensors", torch.nn.Linear(2, 2), {"in": 2})
    with pytest.raises(CheckpointError, match=r"other\.safetensors holds a Linear, not a MaskedDiffusion"):
        load_masked_diffusion(other)

    # Config says vocab 2, weights are for vocab 3.
    m3 = model(vocab=3)
    lying = save_checkpoint(tmp_path / "lying.safetensors", m3, config=model(vocab=2).config)
    with pytest.raises(CheckpointError, match=r"lying\.safetensors does not fit the MaskedDiffusion.*shape"):
        load_masked_diffusion(lying)

    state, config = load_checkpoint(good)
    for name, bad in (("unknown", {**config, "denoiser_class": "Nope"}),
                      ("unbuildable", {**config, "denoiser": {"nonsense": 1}}),
                      ("negative", {**config, "denoiser": {**config["denoiser"], "dim": -16}}),
                      ("text", {**config, "length": "3"})):
        p = save_checkpoint(tmp_path / f"{name}.safetensors", state, bad, kind="MaskedDiffusion")
        with pytest.raises(CheckpointError, match=rf"{name}\.safetensors: (unknown|cannot rebuild|its len)"):
            load_masked_diffusion(p)
    # NaN weights would sample designs scored NaN without a word.
    broken = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}
    nan = save_checkpoint(tmp_path / "nan.safetensors", broken, config, kind="MaskedDiffusion")
    with pytest.raises(CheckpointError, match=r"nan\.safetensors holds NaN weights"):
        load_masked_diffusion(nan)


@pytest.mark.parametrize("masks", ["time", "count"])
def test_both_mask_draws_estimate_the_same_nelbo_and_ema_is_kept(masks):
    # A uniform denoiser: the NELBO per token is exactly log V under either way of drawing masks.
    m = model()
    with torch.no_grad():
        m.denoiser.head.weight.zero_()
        m.denoiser.head.bias.zero_()
    hist = pretrain(m, corpus(), steps=1, batch_size=4096, lr=1e-12, weight_decay=0.0, warmup=1, masks=masks)
    assert hist[0]["loss"] == pytest.approx(math.log(2), rel=0.02)
    m2 = model(seed=1)
    pretrain(m2, corpus(), steps=20, batch_size=8, lr=1e-2, weight_decay=0.0, warmup=1, ema=0.9)
    with pytest.raises(ValueError, match="masks"):
        pretrain(m2, corpus(), masks="random", **ONE_STEP)


def test_with_dropout_the_seed_alone_fixes_the_prior():
    corpus = torch.randint(0, 3, (64, 4), generator=torch.Generator().manual_seed(0))
    weights = []
    for before in (1, 2):  # whatever the caller drew before
        torch.manual_seed(0)
        m = MaskedDiffusion(TransformerDenoiser(3, 4, dim=16, depth=1, heads=2, dropout=0.5), 3, 4)
        torch.manual_seed(before)
        pretrain(m, corpus, steps=3, batch_size=16, lr=1e-3, weight_decay=0.0, warmup=0, seed=5)
        weights.append(m.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(weights[0].values(), weights[1].values(), strict=True))
