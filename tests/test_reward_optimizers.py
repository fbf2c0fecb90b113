import itertools

import pytest
import torch

from mbo.data.alphabet import one_hot
from mbo.reward_optimizers import exhaustive_search, gradient_ascent, hill_climb


def linear_reward(weights):
    """Additive reward: sum_i W[i, x_i]; the optimum is the per-position argmax of W (L, V)."""
    return lambda x: (x * weights).sum((-1, -2))


def test_exhaustive_search_finds_known_top_k_in_order():
    # L=3, V=2: reward = base-2 value of the sequence, so the ranking is known exactly.
    place = torch.tensor([4.0, 2.0, 1.0])
    reward = lambda x: (x[..., 1] * place).sum(-1)  # noqa: E731
    tokens, scores = exhaustive_search(reward, length=3, vocab_size=2, top_k=3, batch=3)
    assert tokens.tolist() == [[1, 1, 1], [1, 1, 0], [1, 0, 1]]
    assert scores.tolist() == [7.0, 6.0, 5.0]


def test_exhaustive_search_covers_every_sequence_once():
    seen = []

    def reward(x):
        seen.extend(map(tuple, x.argmax(-1).tolist()))
        return torch.zeros(x.shape[0])

    tokens, _ = exhaustive_search(reward, length=2, vocab_size=3, top_k=9, batch=4)
    assert sorted(seen) == sorted(itertools.product(range(3), repeat=2))
    assert tokens.tolist() == [list(p) for p in itertools.product(range(3), repeat=2)]  # stable ties


def test_exhaustive_search_rejects_bad_arguments():
    reward = lambda x: x.sum((-1, -2))  # noqa: E731
    with pytest.raises(ValueError, match="top_k"):
        exhaustive_search(reward, length=2, vocab_size=2, top_k=5)
    with pytest.raises(ValueError, match="max_space"):
        exhaustive_search(reward, length=30, vocab_size=4)
    with pytest.raises(ValueError, match="shape"):
        exhaustive_search(lambda x: x.sum(-1), length=2, vocab_size=2, top_k=1)


def test_gradient_ascent_reaches_the_optimum_of_an_additive_reward():
    gen = torch.Generator().manual_seed(0)
    weights = torch.randn(4, 3, generator=gen)
    start = torch.randint(3, (5, 4), generator=gen)
    designs = gradient_ascent(linear_reward(weights), start, vocab_size=3, steps=100, lr=0.1)
    assert designs.shape == (5, 4) and designs.dtype == torch.long
    assert (designs == weights.argmax(-1)).all()


def test_gradient_ascent_agrees_with_exhaustive_search_on_a_tiny_problem():
    weights = torch.tensor([[0.0, 1.0], [2.0, 0.0], [0.0, 0.5]])
    reward = linear_reward(weights)
    best, _ = exhaustive_search(reward, length=3, vocab_size=2, top_k=1)
    designs = gradient_ascent(reward, torch.zeros(2, 3, dtype=torch.long), vocab_size=2, steps=60)
    assert (designs == best).all()


def test_gradient_ascent_with_zero_steps_returns_start_and_leaves_reward_weights_alone():
    net = torch.nn.Linear(6, 1)
    reward = lambda x: net(x.flatten(1)).squeeze(-1)  # noqa: E731
    start = torch.tensor([[0, 1, 1], [1, 1, 0]])
    assert torch.equal(gradient_ascent(reward, start, vocab_size=2, steps=0), start)
    gradient_ascent(reward, start, vocab_size=2, steps=3)
    assert all(p.grad is None for p in net.parameters())


def test_gradient_ascent_rejects_bad_start():
    reward = linear_reward(torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"0\.\.1"):
        gradient_ascent(reward, torch.tensor([[0, 2]]), vocab_size=2)
    with pytest.raises(TypeError, match="integer"):
        gradient_ascent(reward, one_hot(torch.tensor([[0, 1]]), 2), vocab_size=2)


def test_hill_climb_improves_and_reaches_the_optimum_of_an_additive_reward():
    torch.manual_seed(0)
    weights = torch.randn(5, 4)
    reward = linear_reward(weights)
    start = torch.zeros(6, 5, dtype=torch.long)
    out = hill_climb(reward, start, 4, steps=200, proposals=8, seed=1)
    assert torch.equal(out, weights.argmax(-1).expand(6, -1))
    again = hill_climb(reward, start, 4, steps=3, proposals=2, seed=1)
    assert torch.equal(again, hill_climb(reward, start, 4, steps=3, proposals=2, seed=1))
    assert bool((reward(one_hot(again, 4)) >= reward(one_hot(start, 4))).all())


def test_every_optimizer_honours_constraints():
    # A reward that pulls every position towards G: unconstrained optima are GGGGGGGG, which breaks
    # the fixed flank, the GC window and (GGGG's reverse complement CCCC) the forbidden motif.
    from mbo.constraints import Constraints
    from mbo.data.alphabet import DNA

    c = Constraints(DNA, 8, fixed="TA......", forbidden_motifs=["GGGG"], gc=[0.25, 0.5])
    w = torch.zeros(8, 4)
    w[:, DNA.letters.index("G")] = 1.0
    reward = linear_reward(w)
    start = DNA.encode_batch(["AAAAAAAA", "GGGGGGGG", "CCCCCCCC", "TTTTTTTT"])
    tokens, scores = exhaustive_search(reward, 8, 4, top_k=32, constraints=c)
    assert bool(c.satisfied(tokens).all()) and bool(torch.isfinite(scores).all())
    assert scores[0] == 4.0  # TA + four G among six free places (GC ≤ 0.5), never GGGG in a row
    climbed = hill_climb(reward, start, 4, steps=100, seed=0, constraints=c)
    assert bool(c.satisfied(climbed).all())
    assert reward(one_hot(climbed, 4)).min() >= 3.0
    ascended = gradient_ascent(reward, start, 4, steps=50, constraints=c)
    assert all(s.startswith("TA") for s in DNA.decode(ascended))  # per-position rules hold inside
    projected = [gradient_ascent(reward, start, 4, steps=0, constraints=c,
                                 generator=torch.Generator().manual_seed(1)) for _ in range(2)]
    assert torch.equal(*projected)  # the letters that replace the disallowed ones come from its generator
    with pytest.raises(ValueError, match=r"only \d+ sequences meet the constraints"):
        exhaustive_search(reward, 8, 4, top_k=60000, constraints=c)


def test_nan_rewards_are_refused_and_minus_inf_ranks_last():
    place = torch.tensor([4.0, 2.0, 1.0])

    def reward(x):  # base-2 value; -inf (infeasible) where the first token is 1
        v = (x[..., 1] * place).sum(-1)
        return v.masked_fill(x[:, 0, 1] > 0, float("-inf"))

    tokens, scores = exhaustive_search(reward, length=3, vocab_size=2, top_k=8)
    assert tokens[0].tolist() == [0, 1, 1] and scores[-4:].tolist() == [float("-inf")] * 4
    nan = lambda x: reward(x).nan_to_num(nan=0.0, neginf=float("nan"))  # noqa: E731
    with pytest.raises(ValueError, match="exhaustive_search: reward is NaN for 4 of"):
        exhaustive_search(nan, length=3, vocab_size=2, top_k=1)
    with pytest.raises(ValueError, match="hill_climb: reward is NaN"):
        hill_climb(nan, torch.ones(2, 3, dtype=torch.long), 2, steps=1)


def test_hill_climb_rejects_bad_arguments_like_gradient_ascent():
    start = torch.zeros(2, 3, dtype=torch.long)
    reward = lambda x: x.sum((-1, -2))  # noqa: E731
    with pytest.raises(ValueError, match="hill_climb: reward returned shape \\(2, 1\\)"):
        hill_climb(lambda x: reward(x)[:, None], start, 2, steps=1)
    with pytest.raises(ValueError, match="hill_climb: proposals must be >= 1, got 0"):
        hill_climb(reward, start, 2, proposals=0)
    with pytest.raises(ValueError, match="hill_climb: steps must be >= 0, got -1"):
        hill_climb(reward, start, 2, steps=-1)
    assert torch.equal(hill_climb(reward, start, 2, steps=0), start)


def test_exhaustive_search_with_constraints_ranks_minus_inf_rewards_last_instead_of_dropping_them():
    # 16 sequences meet "T..", 4 of which the reward calls infeasible (-inf). Those 4 still meet the
    # rules, so asking for all 16 returns them last, as an unconstrained search would; the rules' -inf
    # and the reward's were once one mark, and this raised "only 12 sequences meet the constraints".
    from mbo.constraints import Constraints
    from mbo.data.alphabet import DNA

    rules = Constraints(DNA, 3, fixed="T..")

    def reward(x):  # token sum; -inf where the last letter is A
        return x.argmax(-1).float().sum(-1).masked_fill(x[:, 2, 0] > 0, float("-inf"))

    tokens, scores = exhaustive_search(reward, 3, 4, top_k=16, constraints=rules)
    assert bool(rules.satisfied(tokens).all()) and len({tuple(t) for t in tokens.tolist()}) == 16
    assert bool(torch.isfinite(scores[:12]).all()) and scores[12:].tolist() == [float("-inf")] * 4
    assert scores[0] == 3 + 3 + 3  # TTT
    with pytest.raises(ValueError, match=r"only 16 sequences meet the constraints"):
        exhaustive_search(reward, 3, 4, top_k=17, constraints=rules)


def test_exhaustive_search_refuses_a_batch_below_one():
    # A negative batch skipped the scoring loop and ranked uninitialized memory, silently.
    reward = lambda x: x.sum((-1, -2))  # noqa: E731
    for bad in (0, -1):
        with pytest.raises(ValueError, match=f"exhaustive_search: batch must be >= 1, got {bad}"):
            exhaustive_search(reward, length=3, vocab_size=2, top_k=2, batch=bad)


@pytest.mark.parametrize("bad", [float("-inf"), float("nan")])
def test_gradient_ascent_refuses_a_reward_that_is_not_finite(bad):
    # An infeasible design's -inf (or a NaN) has no usable gradient: the start came back unchanged, as if
    # it were already the optimum. hill_climb and exhaustive_search rank -inf last; this one cannot.
    def partly(x):
        r = x[..., 0].sum((-1,))
        return torch.where(x[:, 0, 1] > 0.5, torch.full_like(r, bad), r)

    start = torch.tensor([[1, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match=r"reward is not finite for 1 of 2 designs at step 0"):
        gradient_ascent(partly, start, 3, steps=5)


def test_exhaustive_search_keeps_a_float64_rewards_precision():
    # Two sequences 1e-12 apart: equal in float32, ordered in float64 (the later one is higher).
    def reward(x: torch.Tensor) -> torch.Tensor:
        index = (x.argmax(-1) * torch.tensor([2, 1])).sum(-1).double()
        return 1.0 + 1e-12 * index

    tokens, scores = exhaustive_search(reward, length=2, vocab_size=2, top_k=4)
    assert scores.dtype == torch.float64
    assert tokens.tolist() == [[1, 1], [1, 0], [0, 1], [0, 0]]
    _, scores32 = exhaustive_search(lambda x: reward(x).float(), length=2, vocab_size=2, top_k=1)
    assert scores32.dtype == torch.float32
