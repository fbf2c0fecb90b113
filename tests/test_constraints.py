"""Constraints: per-position rules inside the sampler, global ones by rejection, impossible sets refused."""

import pytest
import torch

from mbo.constraints import ConstraintError, Constraints, constraints_from_settings
from mbo.data.alphabet import DNA, PROTEIN
from mbo.diffusion import MaskedDiffusion, TransformerDenoiser
from mbo.diffusion.policy import Compose


def model(length=8):
    torch.manual_seed(0)
    return MaskedDiffusion(TransformerDenoiser(4, length, dim=16, depth=1, heads=2), 4, length)


def test_per_position_rules_hold_inside_every_sampler():
    c = Constraints(DNA, 8, fixed="AC......", allowed={7: "GT"})
    m = model()
    m.policy = Compose(m.policy, c.policy())
    for sampler in (4, 32, "first_hitting"):
        x = m.sample(400, sampler=sampler, generator=torch.Generator().manual_seed(1))
        seqs = DNA.decode(x)
        assert all(s.startswith("AC") and s[7] in "GT" for s in seqs)
    assert bool(c.satisfied(x).all())
    # However hard a guidance hook pushes a letter the rules cut (T at 0, A at 7: +1e7 nats), it stays cut.
    push = torch.tensor([3, 0, 0, 0, 0, 0, 0, 0])

    def tilt(xt, log_x0, rows):
        return log_x0 + 1e7 * torch.nn.functional.one_hot(push, 4)

    x = m.sample(100, guidance=tilt, generator=torch.Generator().manual_seed(2))
    assert bool(c.satisfied(x).all())


def test_global_rules_forbidden_motif_on_both_strands_gc_and_distance():
    c = Constraints(DNA, 8, forbidden_motifs=["GAATTC"], gc=[0.25, 0.75], parent="AAAACCCC", max_mutations=3)
    x = DNA.encode_batch(["AAAACCCC", "GAATTCCC", "AGAATTCA", "AAAAAAAA", "AAGGCCCC", "TTGGGGCA"])
    # GAATTC is its own reverse complement; AAAAAAAA has GC 0; TTGGGGCA is 5 mutations away.
    assert c.satisfied(x).tolist() == [True, False, False, False, True, False]
    c2 = Constraints(DNA, 6, forbidden_motifs=["GGATCC"[:4]])  # GGAT: reverse complement ATCC
    assert c2.satisfied(DNA.encode_batch(["AATCCA", "TTTTTT"])).tolist() == [False, True]


@pytest.mark.parametrize("kwargs, problem", [
    (dict(fixed="AC"), "has 2 characters"),
    (dict(fixed="ACGTACGX"), "outside the alphabet"),
    (dict(fixed="A.......", allowed={0: "CG"}), "no letter is allowed at position(s) [0]"),
    (dict(allowed={9: "A"}), "outside 0..7"),
    (dict(fixed="GG......", gc=[0.0, 0.2]), "cannot be met"),
    (dict(gc=[0.51, 0.6]), "cannot be met: the allowed letters give 0 .. 8 G or C of 8"),  # no k / 8 in it
    (dict(gc=[0.5]), "must be [low, high]"),
    (dict(fixed="GAATTC..", forbidden_motifs=["GAATTC"]), "contain the forbidden motif"),
    (dict(fixed="CCCCCCCC", parent="AAAAAAAA", max_mutations=3), "differs from the fixed"),
    (dict(parent="AAAAAAAA"), "go together"),
    (dict(forbidden_motifs=["A", "C"]), "forbidden motifs ['A', 'C', 'G', 'T'] (on both strands) leave no "
                                         "letter at position(s) [0, 1"),  # A and C ban T and G too
    (dict(forbidden_motifs=["A"], allowed={3: "AT"}), "leave no letter at position(s) [3]"),
    # Settled by allowed letters as fixed ones would be; the parent as the only design.
    (dict(allowed={0: "G", 1: "A", 2: "A", 3: "T", 4: "T", 5: "C"}, forbidden_motifs=["GAATTC"]),
     "only allowed letters themselves contain the forbidden motif 'GAATTC'"),
    (dict(parent="GAATTCAA", max_mutations=0, forbidden_motifs=["GAATTC"]), "the only design is the parent"),
    # Once found only after pretraining, when every design sampled broke them.
    (dict(forbidden_motifs=["G"], gc=[0.5, 1.0]),
     "constraints.gc [0.5, 1.0] cannot be met: the allowed letters but the forbidden ['C', 'G'] give 0 .. 0"),
    (dict(parent="AAAAAAAA", max_mutations=1, gc=[0.5, 1.0]),
     "constraints.gc [0.5, 1.0] cannot be met within max_mutations = 1 of the parent, which has 0 G or C"),
    # Values of the wrong kind, named.
    (dict(gc=0.5), "constraints.gc must be [low, high], two numbers, got 0.5"),
    (dict(allowed={"a": "AC"}), "position 'a' is not an integer"),
    (dict(forbidden_motifs="GAATTC"), "must be a list ([GAATTC]), got 'GAATTC'"),
    (dict(parent="AAAAAAAA", max_mutations=1.5), "max_mutations must be an integer, got 1.5"),
])
def test_impossible_constraints_are_refused(kwargs, problem):
    with pytest.raises(ConstraintError, match=problem.replace("(", r"\(").replace(")", r"\)")
                       .replace("[", r"\[").replace("]", r"\]")):
        Constraints(DNA, 8, **kwargs)
    with pytest.raises(ConstraintError, match="DNA or RNA"):
        Constraints(PROTEIN, 4, gc=[0.2, 0.8])


def test_pull_to_parent_keeps_forced_mutations_and_a_random_few_of_the_others():
    rules = Constraints(DNA, 8, allowed={0: "CG"}, parent="AAAAAAAA", max_mutations=3)
    tokens = torch.randint(0, 4, (200, 8), generator=torch.Generator().manual_seed(0))
    tokens[:, 0] = 1  # C: the parent's A is not allowed at 0, so that mutation is forced
    pulled = rules.pull_to_parent(tokens, torch.Generator().manual_seed(1))
    parent = DNA.encode("AAAAAAAA")
    assert bool(rules.satisfied(pulled).all())
    assert bool(((pulled == tokens) | (pulled == parent)).all())  # each letter: the sample's or the parent's
    assert bool(((tokens != parent).sum(-1).clamp(max=3) == (pulled != parent).sum(-1)).all())
    assert torch.equal(Constraints(DNA, 8).pull_to_parent(tokens), tokens)


def test_project_repairs_only_disallowed_tokens():
    c = Constraints(DNA, 4, fixed="A...", allowed={3: "GT"})
    x = DNA.encode_batch(["CAAA", "ATTT", "AGCG"])
    y = c.project(x, torch.Generator().manual_seed(0))
    assert bool(c.satisfied(y).all()) and DNA.decode(y)[2] == "AGCG"
    assert DNA.decode(y)[1][:3] == "ATT"


def test_required_letters_meet_the_users_allowed_ones():
    c = constraints_from_settings({"allowed": {1: "CG", 2: "AT"}}, DNA, 4, required={1: "C", 3: "GT"})
    assert c.allowed == {1: "C", 2: "AT", 3: "GT"}
    with pytest.raises(ConstraintError, match="no letter is allowed at position"):
        constraints_from_settings({"allowed": {1: "AG"}}, DNA, 4, required={1: "C"})


@pytest.mark.parametrize("settings, problem", [
    ({"forbidden_motifs": "GAATTC"}, "must be a list"),  # not the motifs G, A, A, T, T, C
    ({"gc": 0.5}, r"gc must be \[low, high\], two numbers"),
    ({"allowed": {"a": "AC"}}, "position 'a' is not an integer"),
    ({"parent": "ACGT", "max_mutations": "abc"}, "max_mutations must be an integer"),
])
def test_settings_of_the_wrong_kind_are_named(settings, problem):
    from omegaconf import OmegaConf

    with pytest.raises(ConstraintError, match=problem):
        constraints_from_settings(OmegaConf.create(settings), DNA, 4)
