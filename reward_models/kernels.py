"""A Hamming (categorical) kernel written on one-hot inputs so it is differentiable in them."""

from __future__ import annotations

import torch
from gpytorch.kernels import Kernel
from torch import Tensor


class OneHotHammingKernel(Kernel):
    r"""``k(x, x') = exp(-mean_i (1 - <x_i, x'_i>) / l_i)`` on flattened one-hot ``(..., L*V)``.

    On hard one-hot ``<x_i, x'_i>`` is 1 when position ``i`` matches and 0 otherwise, so this equals
    BoTorch's ``CategoricalKernel`` on the integer tokens (same per-position lengthscales). BoTorch's
    version compares tokens with ``!=`` and has no gradient; this one accepts soft one-hot, where
    ``<x_i, x'_i>`` is the probability that position ``i`` matches. It is ``exp`` of a scaled linear
    kernel times a constant, hence positive semi-definite for any real inputs (learned inducing
    points may leave the simplex).

    Args:
        length: L.
        vocab_size: V.
        ard: one lengthscale per position (True) or a shared one.
    """

    has_lengthscale = True

    def __init__(self, length: int, vocab_size: int, ard: bool = True, **kwargs):
        super().__init__(ard_num_dims=length if ard else None, **kwargs)
        # Lengthscales are per position (L) while inputs have L*V columns: drop ard_num_dims after
        # it sized the lengthscale, so GPyTorch's debug check does not compare it to L*V.
        self.ard_num_dims = None
        self.length, self.vocab_size = int(length), int(vocab_size)

    def forward(self, x1: Tensor, x2: Tensor, diag: bool = False, last_dim_is_batch: bool = False,
                **params) -> Tensor:
        if last_dim_is_batch:
            raise ValueError("OneHotHammingKernel does not support last_dim_is_batch")
        inv_l = self.lengthscale.reciprocal().expand(*self.lengthscale.shape[:-1], self.length)
        # Weight every one-hot column of position i by 1 / l_i: (..., 1, L*V).
        w = inv_l.repeat_interleave(self.vocab_size, dim=-1)
        const = inv_l.sum(-1, keepdim=True)  # (..., 1, 1)
        if diag:
            match = (x1 * w * x2).sum(-1)  # (..., n)
            return torch.exp(-(const.squeeze(-1) - match) / self.length)
        match = (x1 * w) @ x2.transpose(-2, -1)  # (..., n, m)
        return torch.exp(-(const - match) / self.length)
