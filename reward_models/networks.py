"""A stack of K independent MLPs evaluated in one batched pass (weights carry a leading K axis).

Training K members this way costs one set of batched matmuls per step instead of a Python loop over
K models; each member still has its own initialization, data order and (for bootstrap) data.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


class EnsembleMLP(nn.Module):
    """K MLPs ``R^D -> R`` with SiLU activations (smooth, so gradients w.r.t. soft one-hot are too).

    Args:
        num_members: K.
        in_dim: D, the flattened one-hot size ``L*V``.
        hidden_dims: widths of the hidden layers; the last one is the feature size H.
    """

    def __init__(self, num_members: int, in_dim: int, hidden_dims: tuple[int, ...] = (64, 64)):
        super().__init__()
        if num_members < 1 or not hidden_dims:
            raise ValueError("EnsembleMLP needs num_members >= 1 and at least one hidden layer")
        dims = (in_dim, *hidden_dims, 1)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for d_in, d_out in itertools.pairwise(dims):
            # nn.Linear's default init, drawn independently for every member (in float32 whatever torch's
            # default dtype, so a seed gives the same members under set_default_dtype(float64)).
            bound = 1.0 / math.sqrt(d_in)
            self.weights.append(nn.Parameter(torch.empty(num_members, d_in, d_out, dtype=torch.float32)
                                             .uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(num_members, 1, d_out, dtype=torch.float32)
                                            .uniform_(-bound, bound)))
        self.num_members = num_members

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations: ``x (K, N, D)`` or shared ``(N, D)`` -> ``(K, N, H)``."""
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.num_members, -1, -1)
        h = x
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            h = nn.functional.silu(torch.baddbmm(b, h, w))
        return h

    def forward(self, x: Tensor) -> Tensor:
        """``x (K, N, D)`` or ``(N, D)`` -> member outputs ``(K, N)``."""
        h = self.features(x)
        return torch.baddbmm(self.biases[-1], h, self.weights[-1]).squeeze(-1)


def conv_dilations(dilations: Sequence[int] | None, layers: int, where: str) -> tuple[int, ...]:
    """One dilation >= 1 per conv layer (empty or None: 1 each), or a ValueError naming ``where``."""
    if not dilations:
        return (1,) * layers
    if len(dilations) != layers or min(dilations) < 1:
        raise ValueError(f"{where} needs one dilation >= 1 per conv layer ({layers}), got {list(dilations)}")
    return tuple(int(d) for d in dilations)


# Rows × positions of one call above which EnsembleCNN convolves member by member on CPU. On 2 threads
# (experiments/results/cnn_members.md) the grouped convolution was faster at 1,024 and 4,096 (TFBind8's
# and Ehrlich L = 32's training batches), member by member at 3,712 (AAV 560-588's, which this bound
# leaves grouped) and 7,424-25,600 (C20's batches, input gradients of 256 sequences).
MEMBERWISE_POSITIONS = 4096


class EnsembleCNN(nn.Module):
    """K 1-D CNNs ``R^{L×V} -> R``: convolutions, a max over positions, then an MLP head.

    The max over positions makes a feature "is this pattern present anywhere", which is what motif
    objectives (Ehrlich functions, binding sites) reward and what a one-hot MLP cannot extrapolate.
    Each convolution holds all K members' filters as the groups of one grouped ``nn.Conv1d`` (one
    parameter per layer). On CPU, when a call convolves more than :data:`MEMBERWISE_POSITIONS`
    positions (rows × L), the layers are applied member by member on slices of those weights instead:
    the outputs are the same. Above the bound, oneDNN's grouped convolution is the slower of the two;
    below it, K times as many calls cost more than they save. On 2 threads
    (``experiments/results/cnn_members.md``, three runs), a training step at L = 100, batch 128, took
    62–89 ms grouped against 60–61 ms member by member, and one at L = 32 with 32 letters took 22
    against 25 ms.

    Args:
        num_members: K.
        length: L; vocab_size: V (inputs are flattened one-hot ``L*V``).
        channels: output channels of each convolution layer.
        kernel_size: odd width of every convolution (padding keeps the length).
        hidden_dims: widths of the head's hidden layers; the last one is the feature size H.
        dilations: one per convolution (default all 1). The receptive field is
            1 + (kernel_size − 1)·Σ dilations positions, without holes while the first is 1 and each
            later one is at most the field of the layers before it. A pattern wider than the field
            (an Ehrlich motif spreads its elements over up to L / num_motifs positions) is only ever
            seen in pieces, and the max over positions loses where they sit relative to each other.
    """

    def __init__(self, num_members: int, length: int, vocab_size: int,
                 channels: tuple[int, ...] = (64, 64), kernel_size: int = 5,
                 hidden_dims: tuple[int, ...] = (64,), dilations: tuple[int, ...] | None = None):
        super().__init__()
        if not channels or kernel_size % 2 == 0:
            raise ValueError("EnsembleCNN needs at least one conv layer and an odd kernel_size")
        self.dilations = conv_dilations(dilations, len(channels), "EnsembleCNN")
        self.num_members, self.length, self.vocab_size = num_members, length, vocab_size
        k = num_members
        self.convs = nn.ModuleList(
            nn.Conv1d(k * c_in, k * c_out, kernel_size, padding=d * (kernel_size // 2), dilation=d, groups=k,
                      dtype=torch.float32)
            for (c_in, c_out), d in zip(itertools.pairwise((vocab_size, *channels)), self.dilations,
                                         strict=True))
        self.head = EnsembleMLP(num_members, channels[-1], tuple(hidden_dims))

    def _pooled(self, x: Tensor) -> Tensor:
        if not x.is_cuda and x.shape[-2] * self.length > MEMBERWISE_POSITIONS:
            return self._pooled_by_member(x)
        return self._pooled_grouped(x)

    def _pooled_grouped(self, x: Tensor) -> Tensor:
        """Max-pooled convolution features ``(K, N, C)`` of ``x (K, N, L*V)`` or shared ``(N, L*V)``,
        one grouped convolution per layer."""
        k = self.num_members
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(k, -1, -1)
        n = x.shape[1]
        h = x.reshape(k, n, self.length, self.vocab_size).permute(1, 0, 3, 2)
        h = h.reshape(n, k * self.vocab_size, self.length)
        for conv in self.convs:
            h = nn.functional.silu(conv(h))
        h = h.amax(dim=-1)  # (N, K*C)
        # unflatten, not reshape(n, k, -1): that cannot infer C when N is 0.
        return h.unflatten(1, (k, -1)).transpose(0, 1)  # (K, N, C)

    def _pooled_by_member(self, x: Tensor) -> Tensor:
        """:meth:`_pooled_grouped`, each member convolved on its slice of the weights."""
        k = self.num_members
        n = x.shape[-2]
        shared = x.dim() == 2
        if not shared and x.shape[0] != k:
            raise ValueError(f"EnsembleCNN has {k} members, got inputs for {x.shape[0]}")
        x = x.reshape(-1, n, self.length, self.vocab_size).transpose(-1, -2)  # (K or 1, N, V, L)
        pooled = []
        for member in range(k):
            h = x[0 if shared else member]
            for conv in self.convs:
                rows = slice(member * conv.out_channels // k, (member + 1) * conv.out_channels // k)
                h = nn.functional.silu(nn.functional.conv1d(
                    h, conv.weight[rows], conv.bias[rows], padding=conv.padding, dilation=conv.dilation))
            pooled.append(h.amax(dim=-1))  # (N, C)
        return torch.stack(pooled)  # (K, N, C)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations: ``x (K, N, L*V)`` or shared ``(N, L*V)`` -> ``(K, N, H)``."""
        return self.head.features(self._pooled(x))

    def forward(self, x: Tensor) -> Tensor:
        """``x (K, N, L*V)`` or ``(N, L*V)`` -> member outputs ``(K, N)``."""
        return self.head(self._pooled(x))
