"""The networks behind the ensembles: what a CNN member can see."""

import pytest
import torch

from reward_models import DeepEnsemble
from reward_models.networks import EnsembleCNN


@pytest.mark.parametrize(("dilations", "field"), [(None, 9), ((1, 1), 9), ((1, 2), 13), ((1, 4), 21)])
def test_cnn_receptive_field(dilations, field):
    """1 + (kernel_size − 1)·Σ dilations input positions reach one output position, and no others:
    an Ehrlich motif spread over 15 positions is seen whole only with the wider field."""
    torch.manual_seed(0)
    length, vocab = 40, 4
    net = EnsembleCNN(1, length, vocab, (4, 4), 5, (4,), dilations)
    x = torch.rand(1, vocab, length, requires_grad=True)
    h = x
    for conv in net.convs:
        h = torch.nn.functional.silu(conv(h))
    h[..., length // 2].sum().backward()
    reached = x.grad.abs().sum(1).squeeze(0) > 0
    assert int(reached.sum()) == field
    assert reached.nonzero().squeeze(-1).diff().eq(1).all(), "the field has holes"


def test_cnn_dilations_must_match_layers():
    with pytest.raises(ValueError, match="one dilation"):
        EnsembleCNN(2, 8, 4, (4, 4), 5, (4,), (1,))
    with pytest.raises(ValueError, match="one dilation"):
        EnsembleCNN(2, 8, 4, (4, 4), 5, (4,), (1, 0))
    with pytest.raises(ValueError, match="one dilation"):  # at construction, before any fit
        DeepEnsemble(conv_channels=(4, 4), dilations=(1, 4, 16))


def test_cnn_members_are_the_groups_of_their_convolutions():
    """Applied member by member, the network computes what its grouped convolutions compute, for
    per-member and shared inputs; a member's output depends on its own filters only; and a call takes
    the member-by-member path only past MEMBERWISE_POSITIONS."""
    from reward_models import networks

    torch.manual_seed(0)
    k, length, vocab, n = 3, 12, 4, 7
    net = EnsembleCNN(k, length, vocab, (5, 6), 3, (4,), (1, 2))
    x = torch.nn.functional.one_hot(torch.randint(vocab, (k, n, length)), vocab).float().flatten(2)
    torch.testing.assert_close(net._pooled_by_member(x), net._pooled_grouped(x))
    torch.testing.assert_close(net._pooled_by_member(x[1]), net._pooled_grouped(x[1]))
    torch.testing.assert_close(net._pooled_by_member(x[1]), net._pooled_by_member(x[1].expand(k, -1, -1)))
    before = net._pooled_by_member(x)
    with torch.no_grad():
        net.convs[1].weight[:6].add_(1.0)  # member 0's filters of the second layer
    after = net._pooled_by_member(x)
    assert not torch.allclose(after[0], before[0])
    torch.testing.assert_close(after[1:], before[1:])
    with pytest.raises(ValueError, match="3 members, got inputs for 2"):
        net._pooled_by_member(x[:2])
    taken = []
    net._pooled_by_member = lambda x: taken.append(x.shape[-2]) or net._pooled_grouped(x)
    net(x)  # 7 rows × 12 positions
    assert taken == []
    big = torch.nn.functional.one_hot(torch.randint(vocab, (networks.MEMBERWISE_POSITIONS // length + 1,
                                                            length)), vocab).float().flatten(1)
    net(big)
    assert taken == [len(big)]


def test_cnn_takes_zero_rows():
    # reshape(0, K, -1) cannot infer C: mean_std and posterior on no rows raised instead of giving (0,).
    net = EnsembleCNN(3, length=4, vocab_size=4, channels=(5, 6), kernel_size=3, hidden_dims=(7,))
    x = torch.zeros(0, 4 * 4)
    assert net.features(x).shape == (3, 0, 7) and net(x).shape == (3, 0)
