import torch

from mbo.diffusion import MaskedDiffusion, TransformerDenoiser
from mbo.diffusion.policy import restrict
from mbo.finetune.trajectories import step_terms


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
