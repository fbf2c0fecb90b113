import math

import pytest
import torch
from safetensors.torch import save_file

from mbo.atomic import atomic_write_bytes
from mbo.diffusion import (
    MaskedDiffusion,
    TransformerDenoiser,
    load_checkpoint,
    load_masked_diffusion,
    load_state_into,
    pretrain,
    save_checkpoint,
)

# A tiny data distribution over length-3 binary sequences.
SEQS = {(0, 0, 1): 0.5, (1, 1, 0): 0.3, (1, 0, 1): 0.2}
ENTROPY = -sum(p * math.log(p) for p in SEQS.values())


def corpus() -> torch.Tensor:
    rows = [list(s) for s, p in SEQS.items() for _ in range(int(p * 10))]
    return torch.tensor(rows)


def model(seed: int = 0, vocab: int = 2, length: int = 3, dim: int = 16) -> MaskedDiffusion:
    torch.manual_seed(seed)
    net = TransformerDenoiser(vocab, length, dim=dim, depth=2, heads=2, mlp_ratio=2)
    return MaskedDiffusion(net, vocab, length)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny ops: extra threads only contend with other processes (a 30x slowdown on 2 shared cores).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def fitted(one_thread):
    m = model(dim=64)
    hist = pretrain(m, corpus(), steps=400, batch_size=64, lr=3e-3, warmup=20, progress=False, log_every=40)
    return m, hist


def test_loss_decreases_towards_entropy(fitted):
    _, hist = fitted
    assert [h["step"] for h in hist] == list(range(40, 401, 40))
    assert hist[-1]["loss"] < hist[0]["loss"]
    # NELBO per token is an upper bound on the data entropy per token (0.343 nats); close to it.
    assert hist[-1]["loss"] < ENTROPY / 3 + 0.08


def test_samples_reproduce_frequencies(fitted):
    m, _ = fitted
    x = m.sample(3000, steps=32, generator=torch.Generator().manual_seed(0))
    for seq, p in SEQS.items():
        freq = (x == torch.tensor(seq)).all(-1).float().mean().item()
        assert abs(freq - p) < 0.05, (seq, freq, p)  # 0.05 ~ 5 standard errors at n=3000
    elbo = m.elbo(torch.tensor(list(SEQS)), n_samples=64)
    # Lower bounds on log p of the three sequences that hold nearly all the mass: sum(exp) <= ~1.
    assert 0.75 < elbo.exp().sum().item() < 1.05


def test_pretrain_is_seeded():
    runs = []
    for _ in range(2):
        m = model()
        h = pretrain(m, corpus(), steps=5, batch_size=8, progress=False, log_every=1, seed=7)
        runs.append((h, m.denoiser.head.weight.detach().clone()))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])


def test_pretrain_rejects_bad_corpus():
    m = model()
    with pytest.raises(ValueError, match="row 1, position 2: token 5"):
        pretrain(m, torch.tensor([[0, 1, 0], [0, 1, 5]]), steps=1, progress=False)
    with pytest.raises(ValueError, match="length 4"):
        pretrain(m, torch.zeros(2, 4, dtype=torch.long), steps=1, progress=False)
    with pytest.raises(ValueError, match="LongTensor"):
        pretrain(m, torch.zeros(2, 3), steps=1, progress=False)


def test_checkpoint_round_trip(tmp_path):
    m = model(seed=3).eval()
    path = save_checkpoint(tmp_path / "m.safetensors", m)
    loaded = load_masked_diffusion(path, vocab_size=2, length=3)
    x = torch.tensor([[2, 2, 2], [0, 2, 1]])
    assert torch.equal(m.x0_log_probs(m.encode(x)), loaded.x0_log_probs(loaded.encode(x)))
    g1, g2 = (torch.Generator().manual_seed(0) for _ in range(2))
    assert torch.equal(m.sample(8, steps=3, generator=g1), loaded.sample(8, steps=3, generator=g2))
    state, config = load_checkpoint(path)
    assert config == m.config and set(state) == set(m.state_dict())
    other = model(seed=4)
    assert load_state_into(other, path) == m.config
    assert torch.equal(other.denoiser.head.weight, m.denoiser.head.weight)
    with pytest.raises(FileExistsError):
        save_checkpoint(path, m)
    save_checkpoint(path, m, overwrite=True)


def test_bad_checkpoints_name_the_path(tmp_path):
    missing = tmp_path / "none.safetensors"
    with pytest.raises(FileNotFoundError, match=r"none\.safetensors"):
        load_masked_diffusion(missing)

    garbage = atomic_write_bytes(tmp_path / "garbage.safetensors", b"not a safetensors file at all")
    with pytest.raises(ValueError, match=r"garbage\.safetensors.*corrupt"):
        load_masked_diffusion(garbage)

    good = save_checkpoint(tmp_path / "good.safetensors", model())
    data = good.read_bytes()
    cut = atomic_write_bytes(tmp_path / "cut.safetensors", data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"cut\.safetensors.*corrupt"):
        load_masked_diffusion(cut)

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(ValueError, match=r"plain\.safetensors.*no mbo-checkpoint"):
        load_checkpoint(plain)

    # Config says vocab 2, weights are for vocab 3.
    m3 = model(vocab=3)
    lying = save_checkpoint(tmp_path / "lying.safetensors", m3, config=model(vocab=2).config)
    with pytest.raises(ValueError, match=r"lying\.safetensors does not match its config.*shape"):
        load_masked_diffusion(lying)
    with pytest.raises(ValueError, match=r"good\.safetensors was trained for length=3, expected 8"):
        load_masked_diffusion(good, length=8)
    with pytest.raises(ValueError, match=r"good\.safetensors does not match"):
        load_state_into(model(vocab=3), good)
    with pytest.raises(ValueError, match="not JSON-serializable"):
        save_checkpoint(tmp_path / "x.safetensors", m3, config={"a": object()})
