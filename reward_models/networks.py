"""A stack of K independent MLPs evaluated in one batched pass (weights carry a leading K axis).

Training K members this way costs one set of batched matmuls per step instead of a Python loop over
K models; each member still has its own initialization, data order and (for bootstrap) data.
"""

from __future__ import annotations

import itertools
import math

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
            # nn.Linear's default init, drawn independently for every member.
            bound = 1.0 / math.sqrt(d_in)
            self.weights.append(nn.Parameter(torch.empty(num_members, d_in, d_out)
                                             .uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(num_members, 1, d_out)
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
