import pytest
import torch

from mbo.diffusion import MaskedDiffusion, TransformerDenoiser, masked
from mbo.diffusion.policy import restrict
from mbo.finetune.trajectories import step_terms, trajectory_parts


def test_step_terms_rescore_a_roll_in_as_it_was_drawn_on_the_references_support():
    # PPO's ratios and KL penalty come from step_terms; they must see the policy the roll-ins were
    # drawn from. A fine-tuned copy whose own policy allows token 0 while the reference's cuts it
    # (min-p) would otherwise get log-probs of a different policy and a KL swamped by the log-zero
    # stand-in (1e4 nats per unit of probability on the cut token).
    torch.manual_seed(0)
    ref, model = (MaskedDiffusion(TransformerDenoiser(3, 4, dim=16, depth=1, heads=2), 3, 4,
                                  sampler="first_hitting") for _ in range(2))
    ref.policy = lambda lp: restrict(lp, torch.tensor([False, True, True]))
    tr = model.sample(32, ref=ref, return_trajectory=True, generator=torch.Generator().manual_seed(3))
    log_probs, kls = step_terms(model, tr.states, ref, model.sampler)
    torch.testing.assert_close(log_probs, tr.log_probs)
    torch.testing.assert_close(kls, tr.kls)
    assert float(kls.detach().sum(0).max()) < 5.0


@pytest.mark.parametrize("pairs", [1, 16, 48, 1 << 24])
def test_parts_tile_every_step_of_every_trajectory_once_and_score_as_the_whole(monkeypatch, pairs):
    # Long trajectories are scored in parts (steps × trajectories); the grid sampler's unmask
    # probability depends on the step, so a part must know where its steps begin.
    torch.manual_seed(0)
    ref, model = (MaskedDiffusion(TransformerDenoiser(3, 4, dim=16, depth=1, heads=2), 3, 4, sampler=4)
                  for _ in range(2))
    tr = model.sample(6, ref=ref, return_trajectory=True, generator=torch.Generator().manual_seed(3))
    whole_lp, whole_kl = step_terms(model, tr.states, ref, model.sampler)
    monkeypatch.setattr(masked, "PAIRS_PER_PASS", pairs)
    seen = torch.zeros(4, 6, dtype=torch.long)
    log_probs, kls = torch.empty(4, 6), torch.empty(4, 6)
    for steps, part in trajectory_parts(tr.states):
        seen[steps, part] += 1
        terms = step_terms(model, tr.states, ref, model.sampler, steps, part)
        log_probs[steps, part], kls[steps, part] = terms
    assert bool((seen == 1).all())
    torch.testing.assert_close(log_probs, whole_lp)
    torch.testing.assert_close(kls, whole_kl)
