"""Denoiser networks for masked discrete diffusion.

A denoiser maps a (possibly partly masked, possibly soft) sequence to per-position logits over the V
real tokens. The diffusion process (``mbo.diffusion.masked``) owns the schedule, carry-over and
sampling; the network here knows nothing about them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mbo.method_settings import check_method_settings


class TransformerBlock(nn.Module):
    """Pre-norm bidirectional self-attention block.

    Written out (rather than ``nn.TransformerEncoderLayer``) so that the same kernels run with and
    without autograd: the torch "fast path" kicks in under ``no_grad`` in eval mode and changes the
    last bits, which would make a model's KL to its own copy, or a PPO ratio at the old weights,
    differ from exactly 0 / 1.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, dim * mlp_ratio),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(dim * mlp_ratio, dim),
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, h: Tensor, bias: Tensor | None = None) -> Tensor:
        """``(B, L, D) -> (B, L, D)``; ``bias`` ``(B, heads, L, L)`` is added to the attention logits."""
        b, n, d = h.shape
        qkv = self.qkv(self.norm1(h)).view(b, n, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=bias,
                                             dropout_p=self.dropout if self.training else 0.0)
        h = h + self.drop(self.proj(att.transpose(1, 2).reshape(b, n, d)))
        return h + self.drop(self.mlp(self.norm2(h)))


class TransformerDenoiser(nn.Module):
    """A small bidirectional transformer over a fixed-length sequence.

    No time input: under the MDLM schedule the mask ratio is visible in the input itself.

    Args:
        vocab_size: V, the number of real tokens (the MASK channel is added here, index V).
        length: L, the sequence length (positional embeddings are learned per position).
        dim: model width.
        depth: number of transformer layers.
        heads: attention heads (must divide ``dim``).
        mlp_ratio: hidden width of the feed-forward block as a multiple of ``dim``.
        dropout: dropout inside the transformer layers.
        local_kernel: if > 0, a residual 1-D convolution of this (odd) width mixes neighbouring
            positions before the first block. Local constraints (allowed transitions, base pairs
            of a stem) are then learned in a few hundred steps instead of thousands, because
            attention with absolute positions has to discover "my neighbour" position by position.
        positions: ``absolute`` (a learned embedding per position) or ``relative`` (a learned
            attention bias per layer, head and offset j − i: the same rule at every position, so
            "the nearest unmasked neighbour" is learned once instead of L times).
        output_conv: if > 0, a 1-D convolution of this (odd) width from the raw input channels
            straight to the logits, zero-initialized: it can say "token b is impossible next to
            a" directly, as a large negative logit, which the softmax head alone reaches only slowly.
        output_scale: multiplies that convolution's output (its effective learning rate: hard
            rules need logits of order −10 .. −30 early in training).
    """

    def __init__(
        self,
        vocab_size: int,
        length: int,
        dim: int = 128,
        depth: int = 3,
        heads: int = 4,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
        local_kernel: int = 0,
        positions: str = "absolute",
        output_conv: int = 0,
        output_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if vocab_size < 1 or length < 1:
            raise ValueError(f"vocab_size and length must be >= 1, got {vocab_size}, {length}")
        if local_kernel < 0 or (local_kernel and local_kernel % 2 == 0):
            raise ValueError(f"local_kernel must be 0 or odd, got {local_kernel}")
        if dim % heads != 0:
            raise ValueError(f"dim={dim} must be divisible by heads={heads}")
        if positions not in ("absolute", "relative"):
            raise ValueError(f"positions must be 'absolute' or 'relative', got {positions!r}")
        if output_conv < 0 or (output_conv and output_conv % 2 == 0):
            raise ValueError(f"output_conv must be 0 or odd, got {output_conv}")
        check_method_settings("TransformerDenoiser", {"dropout": dropout})
        self.config = dict(
            vocab_size=vocab_size,
            length=length,
            dim=dim,
            depth=depth,
            heads=heads,
            mlp_ratio=mlp_ratio,
            dropout=dropout,
            local_kernel=local_kernel,
            positions=positions,
            output_conv=output_conv,
            output_scale=output_scale,
        )
        self.vocab_size = vocab_size
        self.length = length
        # A linear map of the float input (not nn.Embedding) so soft one-hot inputs are differentiable.
        self.embed = nn.Linear(vocab_size + 1, dim, bias=False)
        if positions == "absolute":
            self.pos = nn.Parameter(torch.randn(length, dim) * 0.02)
        else:
            self.rel = nn.Parameter(torch.zeros(depth, heads, 2 * length - 1))
            idx = torch.arange(length)
            self.register_buffer("rel_index", idx[None, :] - idx[:, None] + length - 1, persistent=False)
        self.local = nn.Conv1d(dim, dim, local_kernel, padding=local_kernel // 2) if local_kernel else None
        self.blocks = nn.ModuleList(TransformerBlock(dim, heads, mlp_ratio, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size)
        self.output_scale = float(output_scale)
        self.out = (nn.Conv1d(vocab_size + 1, vocab_size, output_conv, padding=output_conv // 2)
                    if output_conv else None)
        if self.out is not None:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, hidden_shift: Tensor | None = None) -> Tensor:
        """Logits of the clean tokens.

        Args:
            x: float ``(B, L, V+1)``: one-hot (or soft) over V tokens plus the MASK channel (index V).
            hidden_shift: optional ``(B, dim)`` or ``(B, L, dim)`` added to the input embedding; the
                hook a condition embedding enters by (``mbo.ctrl.ConditionalDenoiser``). A zero shift
                gives exactly the unconditional output.

        Returns:
            Logits ``(B, L, V)`` (unnormalized; carry-over is applied by the diffusion process).
        """
        if x.dim() != 3 or x.shape[1:] != (self.length, self.vocab_size + 1):
            raise ValueError(
                f"TransformerDenoiser expects input (B, {self.length}, {self.vocab_size + 1}), "
                f"got {tuple(x.shape)}"
            )
        h = self.embed(x)
        if self.config["positions"] == "absolute":
            h = h + self.pos
        if hidden_shift is not None:
            h = h + (hidden_shift[:, None, :] if hidden_shift.dim() == 2 else hidden_shift)
        if self.local is not None:
            h = h + self.local(h.transpose(1, 2)).transpose(1, 2)
        relative = self.config["positions"] == "relative"
        for i, block in enumerate(self.blocks):
            # The bias materialized per batch row: given a (heads, L, L) mask to broadcast, CPU
            # scaled_dot_product_attention leaves its fused kernel for a path ~5x slower at L = 100.
            bias = (self.rel[i][:, self.rel_index].to(h.dtype).expand(len(h), -1, -1, -1).contiguous()
                    if relative else None)
            h = block(h, bias)
        logits = self.head(self.norm(h))
        if self.out is not None:
            logits = logits + self.output_scale * self.out(x.transpose(1, 2)).transpose(1, 2)
        return logits


DENOISERS: dict[str, type[nn.Module]] = {"TransformerDenoiser": TransformerDenoiser}
"""Denoiser classes a checkpoint may name; each takes its ``config`` dict as keyword arguments."""


class ConditionalDenoiser(nn.Module):
    """A denoiser plus zero-initialized condition embeddings (CTRL, :mod:`mbo.ctrl`).

    Each factor f has an embedding table of ``C_f + 1`` rows (the last is the null "any class" row,
    kept at zero); the condition's rows are summed and added to the wrapped network's hidden input.
    All rows start at zero, so before training the conditional model IS the wrapped model for every
    condition, and the null condition stays the unconditional model throughout.

    Wraps a denoiser that accepts ``hidden_shift`` (e.g. ``TransformerDenoiser``).

    Args:
        base: the (pretrained) denoiser module, or its config dict to build a fresh one.
        num_classes: ``C_f`` per factor.
        base_class: denoiser class name (in ``DENOISERS``) when ``base`` is a config.
    """

    def __init__(self, base: nn.Module | dict, num_classes: Sequence[int],
                 base_class: str = "TransformerDenoiser") -> None:
        super().__init__()
        if isinstance(base, dict):
            if base_class not in DENOISERS:
                raise ValueError(f"unknown denoiser class {base_class!r} (known: {sorted(DENOISERS)})")
            base = DENOISERS[base_class](**base)
        if not num_classes or min(num_classes) < 1:
            raise ValueError(f"num_classes must list >= 1 class per factor, got {list(num_classes)}")
        self.base = base
        self.num_classes = [int(c) for c in num_classes]
        dim = base.config["dim"]
        self.embeddings = nn.ModuleList(
            nn.Embedding(c + 1, dim, padding_idx=c) for c in self.num_classes
        )
        for emb in self.embeddings:
            nn.init.zeros_(emb.weight)
        self.config = {"base": dict(base.config), "base_class": type(base).__name__,
                       "num_classes": self.num_classes}
        self.vocab_size = base.config["vocab_size"]
        self.length = base.config["length"]

    @property
    def null_condition(self) -> Tensor:
        """LongTensor ``(F,)``: every factor null."""
        return torch.tensor(self.num_classes, dtype=torch.long)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> Tensor:
        """Logits ``(B, L, V)`` of ``x (B, L, V+1)`` under condition ``cond`` LongTensor ``(B, F)``.

        ``cond=None`` (or all-null rows) gives exactly the base network's output.
        """
        if cond is None:
            return self.base(x)
        if cond.dim() != 2 or cond.shape != (x.shape[0], len(self.num_classes)):
            raise ValueError(f"cond must be LongTensor ({x.shape[0]}, {len(self.num_classes)}), "
                             f"got {tuple(cond.shape)}")
        shift = sum(emb(cond[:, j]) for j, emb in enumerate(self.embeddings))
        return self.base(x, hidden_shift=shift.to(x.dtype))


DENOISERS["ConditionalDenoiser"] = ConditionalDenoiser

