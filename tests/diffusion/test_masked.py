import itertools
import math

import pytest
import torch

from mbo.diffusion import FirstHittingSampler, GridSampler, MaskedDiffusion, TransformerDenoiser, masked


def tiny(seed: int, vocab: int = 3, length: int = 3, sharpen: float = 4.0) -> MaskedDiffusion:
    torch.manual_seed(seed)
    net = TransformerDenoiser(vocab, length, dim=16, depth=1, heads=2, mlp_ratio=2)
    with torch.no_grad():
        # Random init is nearly uniform; sharpen so two models differ visibly.
        net.head.weight.mul_(sharpen)
        net.head.bias.normal_(0.0, 1.0)
    return MaskedDiffusion(net, vocab, length).eval()


def grid_step(m, xt, t, s, ref=None, generator=None):
    """One reverse step t -> s of the grid sampler, as ``MaskedDiffusion.sample`` takes it."""
    inp = m.encode(xt)
    p = m.schedule.unmask_prob(t, s)
    unmask = (xt == m.mask_id) & (torch.rand(xt.shape, generator=generator) < p)
    log_ref = None if ref is None else ref.x0_log_probs(inp)
    return m.step(xt, m.x0_log_probs(inp), unmask, p, log_ref, generator)


def test_sample_shapes_range_no_mask():
    m = tiny(0)
    x = m.sample(50, sampler=5, generator=torch.Generator().manual_seed(0))
    assert x.shape == (50, 3) and x.dtype == torch.long
    assert int(x.min()) >= 0 and int(x.max()) < 3
    tr = m.sample(7, sampler=4, return_trajectory=True)
    assert tr.states.shape == (5, 7, 3)
    assert bool((tr.states[0] == m.mask_id).all()) and bool((tr.x0 < 3).all())
    assert tr.log_probs.shape == (4, 7) and tr.kls.shape == (4, 7)
    # A single step from all-MASK to s = 0 unmasks everything.
    assert bool((m.sample(9, sampler=1) < 3).all())


def test_first_hitting_unmasks_one_position_per_step():
    m = tiny(0, vocab=3, length=5)
    tr = m.sample(40, sampler="first_hitting", return_trajectory=True,
                  generator=torch.Generator().manual_seed(0))
    assert tr.states.shape == (6, 40, 5)
    masked = (tr.states == m.mask_id).sum(-1)  # (steps + 1, n)
    assert torch.equal(masked, torch.arange(5, -1, -1)[:, None].expand(6, 40))
    # Every position is equally likely to go first.
    first = (tr.states[1] != m.mask_id).float().mean(0)
    assert torch.allclose(first, torch.full((5,), 0.2), atol=0.15)
    assert isinstance(m.sample(3, sampler="first_hitting") , torch.Tensor)
    with pytest.raises(ValueError, match="first_hitting"):
        m.sample(3, sampler="zigzag")


def test_seeds_reproduce_samples():
    m = tiny(0)
    a = m.sample(20, sampler=4, generator=torch.Generator().manual_seed(3))
    b = m.sample(20, sampler=4, generator=torch.Generator().manual_seed(3))
    c = m.sample(20, sampler=4, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_long_sequences_pass_the_network_in_parts_and_draw_and_score_the_same(monkeypatch):
    # A pass over many long sequences goes in parts (their attention would not fit at once); the
    # network is deterministic, so the parts must draw what one pass draws, with a reference too.
    m, ref = tiny(0), tiny(1)

    def draw():
        gens = [torch.Generator().manual_seed(3) for _ in range(2)]
        return m.sample(20, sampler=4, generator=gens[0]), m.sample(20, generator=gens[1], ref=ref)

    def elbo():
        return m.elbo(whole[0], n_samples=4, generator=torch.Generator().manual_seed(5))

    whole = draw()
    whole_elbo = elbo()
    for bound in ("PAIRS_PER_PASS", "TOKENS_PER_PASS"):
        monkeypatch.setattr(masked, bound, 1)
        assert len(masked.inference_parts(20, m.length, torch.device("cpu"))) == 20
        for a, b in zip(whole, draw(), strict=True):
            assert torch.equal(a, b)
        torch.testing.assert_close(elbo(), whole_elbo)
        monkeypatch.undo()


def test_passes_without_gradient_take_at_most_tokens_per_pass_on_cpu(monkeypatch):
    monkeypatch.setattr(masked, "TOKENS_PER_PASS", 64)
    cpu = masked.inference_parts(100, 8, torch.device("cpu"))
    assert [p.stop - p.start for p in cpu] == [8] * 12 + [4]
    # A GPU gains from every row it is given: only the memory bound holds there.
    assert masked.inference_parts(100, 8, torch.device("cuda")) == masked.sequence_parts(100, 8)
    monkeypatch.setattr(masked, "TOKENS_PER_PASS", 1)  # longer than the bound: one sequence a part
    assert len(masked.inference_parts(5, 8, torch.device("cpu"))) == 5
    # Training passes keep the memory bound only.
    assert len(masked.sequence_parts(100, 8)) == 1


def test_x0_log_probs_carry_over_and_soft_input():
    m = tiny(0)
    xt = torch.tensor([[0, 3, 2], [3, 3, 3]])
    p = m.x0_log_probs(m.encode(xt)).exp()
    assert torch.allclose(p.sum(-1), torch.ones(2, 3), atol=1e-6)
    assert torch.equal(p[0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.equal(p[0, 2], torch.tensor([0.0, 0.0, 1.0]))
    soft = torch.tensor([[[0.2, 0.5, 0.3, 0.0], [0.0, 0.0, 0.0, 1.0], [0.1, 0.1, 0.8, 0.0]]])
    ps = m.x0_log_probs(soft.requires_grad_()).exp()
    assert torch.allclose(ps[0, 0], soft[0, 0, :3], atol=1e-6)  # soft token carried over
    assert torch.allclose(ps.sum(-1), torch.ones(1, 3), atol=1e-6)


def test_loss_and_elbo_shapes():
    m = tiny(0)
    x0 = torch.randint(0, 3, (16, 3), generator=torch.Generator().manual_seed(0))
    loss = m(x0)
    assert loss.dim() == 0 and loss.item() > 0
    loss.backward()
    assert m.denoiser.head.weight.grad is not None
    e = m.elbo(x0, n_samples=8)
    assert e.shape == (16,) and bool((e < 0).all())
    with pytest.raises(ValueError, match="outside"):
        m.loss(torch.full((2, 3), 3))


def test_kl_to_itself_is_exactly_zero():
    m = tiny(0)
    xt = torch.tensor([[3, 3, 3], [0, 3, 1]])
    assert torch.equal(grid_step(m, xt, 1.0, 0.5, ref=m).kl, torch.zeros(2))
    for sampler in (GridSampler(3), FirstHittingSampler()):
        tr = m.sample(10, sampler=sampler, ref=m, return_trajectory=True)
        assert torch.equal(tr.kls, torch.zeros(3, 10))
        _, kl = m.sample_relaxed(4, sampler=sampler, backprop_steps=2, ref=m)
        assert torch.equal(kl.detach(), torch.zeros(4))


def test_log_prob_of_step_matches_step():
    m = tiny(1)
    g = torch.Generator().manual_seed(0)
    xt = torch.tensor([[3, 3, 3]] * 6 + [[0, 3, 3]] * 6)
    out = grid_step(m, xt, 0.75, 0.25, generator=g)
    again = m.log_prob_of_step(xt, out.xs)
    assert torch.allclose(out.log_prob, again, atol=1e-6)
    with pytest.raises(ValueError, match="already unmasked"):
        m.log_prob_of_step(xt, torch.full_like(xt, 1))
    with pytest.raises(ValueError, match="unmask_prob"):
        m.step(xt, m.x0_log_probs(m.encode(xt)), xt == m.mask_id, log_ref=m.x0_log_probs(m.encode(xt)))


def _transition_probs(m, xt, t, s):
    """All successor states of one state xt (B=1) and their exact probabilities."""
    v, mask = m.vocab_size, m.mask_id
    choices = [[mask, *range(v)] if int(tok) == mask else [int(tok)] for tok in xt[0]]
    succ = torch.tensor(list(itertools.product(*choices)))
    rep = xt.expand(len(succ), -1)
    policy = m.log_prob_of_step(rep, succ).exp()
    was = rep == mask
    stays = (succ == mask) & was
    unm = was & ~stays
    free = torch.where(unm, (t - s) / t, torch.where(stays, s / t, 1.0)).prod(-1)
    return succ, policy * free


@torch.no_grad()
def test_per_step_kl_equals_trajectory_kl_exact_and_monte_carlo():
    theta, ref = tiny(0, vocab=2, length=2), tiny(1, vocab=2, length=2)
    steps = 3
    # Exact enumeration: forward marginals over states, chain rule for the path KL.
    marg = {tuple([theta.mask_id] * 2): 1.0}
    exact_path_kl, exact_step_kl = 0.0, 0.0
    for k in range(steps, 0, -1):
        t, s = k / steps, (k - 1) / steps
        nxt: dict[tuple, float] = {}
        for state, p_state in marg.items():
            xt = torch.tensor([state])
            succ, p_theta = _transition_probs(theta, xt, t, s)
            _, p_ref = _transition_probs(ref, xt, t, s)
            assert abs(p_theta.sum().item() - 1.0) < 1e-5  # log_prob_of_step is a normalized policy
            live = p_theta > 0  # at s = 0 staying masked has probability 0 under both
            ratio = (p_theta[live] / p_ref[live]).log()
            exact_path_kl += p_state * (p_theta[live] * ratio).sum().item()
            exact_step_kl += p_state * grid_step(theta, xt, t, s, ref=ref).kl.item()
            for x, p in zip(succ.tolist(), p_theta.tolist(), strict=True):
                nxt[tuple(x)] = nxt.get(tuple(x), 0.0) + p_state * p
        marg = nxt
    assert exact_path_kl > 0.05  # the two models really differ
    assert abs(exact_path_kl - exact_step_kl) < 1e-5

    # Monte Carlo: E_theta[sum_t KL_t] vs E_theta[sum_t log p_theta(step) / p_ref(step)].
    n = 8000
    tr = theta.sample(
        n, sampler=steps, ref=ref, generator=torch.Generator().manual_seed(0), return_trajectory=True
    )
    log_ratio = torch.zeros(n)
    for k in range(steps):
        log_ratio += tr.log_probs[k] - ref.log_prob_of_step(tr.states[k], tr.states[k + 1])
    summed_kl = tr.kls.sum(0)
    tol = 4 * log_ratio.std().item() / math.sqrt(n)  # 4 standard errors
    assert abs(log_ratio.mean().item() - summed_kl.mean().item()) < tol
    assert abs(log_ratio.mean().item() - exact_path_kl) < tol
    assert abs(summed_kl.mean().item() - exact_path_kl) < 4 * summed_kl.std().item() / math.sqrt(n)


def test_sample_relaxed_rows_sum_to_one_and_truncated_backprop():
    m = tiny(0).train()
    ref = tiny(1).requires_grad_(False)
    steps, k = 5, 2
    grad_modes = []

    def hook(_mod, inputs, _out):
        grad_modes.append((torch.is_grad_enabled(), inputs[0].requires_grad))

    handle = m.denoiser.register_forward_hook(hook)
    x0, kl = m.sample_relaxed(
        6, sampler=steps, tau=0.5, backprop_steps=k, ref=ref, generator=torch.Generator().manual_seed(0)
    )
    handle.remove()
    assert x0.shape == (6, 3, 3)
    assert torch.allclose(x0.sum(-1), torch.ones(6, 3), atol=1e-5)
    # Only the last K denoiser calls record gradients; the first of them sees a detached state.
    assert [g for g, _ in grad_modes] == [False] * (steps - k) + [True] * k
    assert grad_modes[steps - k][1] is False
    (x0[..., 0].sum() + kl.sum()).backward()
    assert m.denoiser.head.weight.grad.abs().sum() > 0
    assert ref.denoiser.head.weight.grad is None

    # K = 0: no gradient path at all; same generator gives the same values whatever K is.
    x0_none, kl_none = m.sample_relaxed(
        6, sampler=steps, tau=0.5, backprop_steps=0, ref=ref, generator=torch.Generator().manual_seed(0)
    )
    assert not x0_none.requires_grad and not kl_none.requires_grad
    assert torch.allclose(x0_none, x0.detach(), atol=1e-6)

    xh, _ = m.sample_relaxed(6, sampler=steps, backprop_steps=1, hard=True)
    assert torch.equal(xh.detach().max(-1).values, torch.ones(6, 3))
    assert xh.requires_grad


def test_local_kernel_denoiser_shapes_and_validation():
    net = TransformerDenoiser(4, 6, dim=16, depth=1, heads=2, local_kernel=3)
    out = net(torch.nn.functional.one_hot(torch.randint(5, (2, 6)), 5).float())
    assert out.shape == (2, 6, 4) and net.config["local_kernel"] == 3
    with pytest.raises(ValueError, match="local_kernel"):
        TransformerDenoiser(4, 6, dim=16, depth=1, heads=2, local_kernel=2)


def test_a_dropout_that_zeroes_every_activation_is_refused():
    # torch's dropout takes p = 1; mbo-campaign refuses it where it builds the denoiser.
    for p in (1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"^TransformerDenoiser: dropout must lie in \[0, 1\), got"):
            TransformerDenoiser(4, 6, dim=16, depth=1, heads=2, dropout=p)
    assert TransformerDenoiser(4, 6, dim=16, depth=1, heads=2, dropout=0.5).config["dropout"] == 0.5


@torch.no_grad()
def test_first_hitting_step_kls_sum_to_the_trajectory_kl():
    theta, ref = tiny(0, vocab=2, length=3), tiny(1, vocab=2, length=3)
    n = 8000
    tr = theta.sample(n, sampler="first_hitting", ref=ref, generator=torch.Generator().manual_seed(0),
                      return_trajectory=True)
    # The position choice is the same under both models, so log ratios of the token draws suffice.
    log_ratio = sum(tr.log_probs[k] - ref.log_prob_of_step(tr.states[k], tr.states[k + 1])
                    for k in range(3))
    summed_kl = tr.kls.sum(0)
    assert summed_kl.mean() > 0.05
    tol = 4 * log_ratio.std().item() / math.sqrt(n)
    assert abs(log_ratio.mean().item() - summed_kl.mean().item()) < tol


def test_sampling_from_a_partly_masked_start_keeps_the_unmasked_tokens():
    m = tiny(0, vocab=3, length=5)
    start = torch.tensor([[0, 3, 2, 3, 1]] * 20)
    for sampler in (4, "first_hitting"):
        x = m.sample(20, sampler=sampler, x_start=start, generator=torch.Generator().manual_seed(0))
        assert bool((x[:, [0, 2, 4]] == torch.tensor([0, 2, 1])).all()) and bool((x < 3).all())


def test_sampling_calls_the_network_only_for_rows_that_unmask_and_draws_the_same_designs():
    m = tiny(0, vocab=3, length=4)
    rows_seen = []
    m.denoiser.register_forward_hook(lambda module, args, output: rows_seen.append(args[0].shape[0]))
    for start in (None, torch.tensor([[0, 3, 2, 3]] * 30)):  # from all-MASK, and a re-masked design
        rows_seen.clear()
        x = m.sample(30, sampler=16, x_start=start, generator=torch.Generator().manual_seed(1))
        calls = sum(rows_seen)
        # The trajectory runs every row at every step, its per-step KL needs them all; same draws.
        tr = m.sample(30, sampler=16, x_start=start, generator=torch.Generator().manual_seed(1),
                      return_trajectory=True)
        assert torch.equal(x, tr.states[-1])
        changed = (tr.states[1:] != tr.states[:-1]).any(-1)  # (steps, n): the row unmasked something
        assert calls == int(changed.sum()) < 30 * len(tr.log_probs)


def test_abandoned_rows_stop_drawing_and_the_others_are_drawn_as_without_it():
    m = tiny(0, vocab=3, length=6)
    rows_seen = []
    m.denoiser.register_forward_hook(lambda module, args, output: rows_seen.append(args[0].shape[0]))
    plain = m.sample(40, sampler=6, generator=torch.Generator().manual_seed(3))
    calls = sum(rows_seen)
    rows_seen.clear()
    # Stop a row as soon as it holds token 0 anywhere.
    x = m.sample(40, sampler=6, generator=torch.Generator().manual_seed(3),
                 abandon=lambda xt: (xt == 0).any(-1))
    drawn, kept = x != m.mask_id, (x != m.mask_id).all(-1)
    assert 0 < int(kept.sum()) < 40 and torch.equal(x[drawn], plain[drawn])
    assert bool((x[~kept] == 0).any(-1).all())  # stopped once they held a 0, not before
    assert sum(rows_seen) < calls
    # Every row abandoned after the first step: the network runs in that step only.
    rows_seen.clear()
    m.sample(40, sampler=6, generator=torch.Generator().manual_seed(3),
             abandon=lambda xt: torch.ones(40, dtype=torch.bool))
    assert len(rows_seen) == 1
    with pytest.raises(ValueError, match="abandon"):
        m.sample(4, return_trajectory=True, abandon=lambda xt: (xt == 0).any(-1))


def test_a_guidance_hook_sees_the_rows_that_draw_and_their_indices():
    m = tiny(0, vocab=3, length=4)
    banned = torch.arange(30) % 3  # row i never draws token i mod 3
    sizes = []

    def ban(xt, log_x0, rows):
        assert len(xt) == len(log_x0) == len(rows)
        sizes.append(len(rows))
        return log_x0.masked_fill(torch.nn.functional.one_hot(banned[rows], 3).bool()[:, None], -1e9)

    x = m.sample(30, sampler=16, guidance=ban, generator=torch.Generator().manual_seed(2))
    assert not bool((x == banned[:, None]).any()) and min(sizes) < 30


def test_relative_positions_and_output_conv():
    net = TransformerDenoiser(4, 6, dim=16, depth=2, heads=2, positions="relative", output_conv=3,
                              output_scale=30.0)
    x = torch.nn.functional.one_hot(torch.randint(5, (3, 6)), 5).float()
    assert net(x).shape == (3, 6, 4) and not hasattr(net, "pos")
    # Translation-equivariant: the same rule at every position (the ends aside).
    assert net.rel.shape == (2, 2, 11)
    with pytest.raises(ValueError, match="positions"):
        TransformerDenoiser(4, 6, dim=16, depth=1, heads=2, positions="rotary")
    with pytest.raises(ValueError, match="output_conv"):
        TransformerDenoiser(4, 6, dim=16, depth=1, heads=2, output_conv=2)


def test_a_step_of_the_wrong_shape_or_onto_a_drawn_token_is_refused():
    m = tiny(0)
    xt = torch.full((2, 3), m.mask_id)
    hook = r"a guidance hook: log_x0 must have shape \(B, L, V\) = \(\d, 3, 3\), got \(\d, 3, 4"
    with pytest.raises(ValueError, match=hook):
        m.sample(2, guidance=lambda x, lp, rows: torch.cat([lp, lp[..., :1]], -1))
    with pytest.raises(ValueError, match="unmask must be a bool tensor of shape"):
        m.step(xt, torch.zeros(2, 3, 3), torch.ones(2, 3, dtype=torch.long))
    xt[:, 0] = 1
    with pytest.raises(ValueError, match="unmask marks a position that is not masked"):
        m.step(xt, torch.zeros(2, 3, 3), torch.ones(2, 3, dtype=torch.bool))


def test_empty_batches_score_nothing_and_have_no_loss():
    m = tiny(0)
    assert m.elbo(torch.zeros(0, 3, dtype=torch.long)).shape == (0,)
    with pytest.raises(ValueError, match="loss: x0 has no rows"):
        m.loss(torch.zeros(0, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="sample_relaxed: n must be an integer >= 1"):
        m.sample_relaxed(-1)
    with pytest.raises(ValueError, match="tau must be > 0, got nan"):
        m.sample_relaxed(2, tau=float("nan"))


@pytest.mark.parametrize("eps", [0, 0.0, -0.5, 1.0, 1.5, float("nan"), "0.001", True])
def test_a_loss_cutoff_outside_zero_one_is_refused(eps):
    # The loss draws t in [eps, 1] with weight 1/t: eps = -0.5 gave a loss of 0.70 instead of 1.24 (negative
    # weights), eps = 0 can draw t = 0 (0/0 = NaN), eps >= 1 gives mask probabilities above 1; all silently.
    with pytest.raises(ValueError, match="eps must be a number in"):
        MaskedDiffusion(TransformerDenoiser(3, 4, dim=16, depth=1, heads=2), 3, 4, eps=eps)


def test_log_prob_of_step_with_ref_matches_sampling_on_the_refs_support():
    from mbo.diffusion.policy import MinProbability

    theta, ref = tiny(1, sharpen=0.5), tiny(2, sharpen=0.5)
    ref.policy = MinProbability(0.3)  # cuts tokens theta would draw
    tr = theta.sample(64, sampler=3, ref=ref, generator=torch.Generator().manual_seed(0),
                      return_trajectory=True)
    on_support = torch.stack([theta.log_prob_of_step(tr.states[k], tr.states[k + 1], ref=ref)
                              for k in range(3)])
    assert torch.allclose(on_support, tr.log_probs, atol=1e-5)
    plain = torch.stack([theta.log_prob_of_step(tr.states[k], tr.states[k + 1]) for k in range(3)])
    assert not torch.allclose(plain, tr.log_probs, atol=1e-3)  # without ref: another policy
