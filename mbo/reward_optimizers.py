"""Non-diffusion baselines for offline MBO on sequences: gradient ascent, hill climbing, exhaustive search.

- :func:`gradient_ascent` is Design-Bench's "Grad." baseline on discrete data: each design is a set of
  continuous logits, initialized at the one-hot of a start sequence (Design-Bench starts from the
  top offline sequences), moved uphill on ``reward(softmax(logits))`` and read out by argmax.
- :func:`hill_climb` is greedy single-site mutation on the reward, unconstrained: the baseline that
  shows what optimizing a reward model off the data manifold does.
- :func:`exhaustive_search` scores every one of the V^L sequences. It is only feasible for tiny
  spaces (TFBind8: 4^8 = 65,536), and there it is the exact optimum of the reward: a ceiling for any
  method that optimizes the same reward model, which separates the model's errors from the
  optimizer's.

All take ``reward``: a callable from float one-hot ``(N, L, V)`` to ``(N,)`` (a reward model's mean,
a conservative reward, ...); gradient ascent needs it differentiable. Hill climbing and exhaustive
search refuse a NaN reward (ValueError) and rank ``-inf`` (infeasible) last. With ``constraints``
(:class:`~mbo.constraints.Constraints`) per-position rules act on every step (masked logits, projected
mutants) and global rules (motifs, GC window, distance to a parent) by rejection: a mutant that breaks
one is never taken, an enumerated sequence that breaks one is never returned.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from mbo.caller_state import trains
from mbo.constraints import Constraints
from mbo.data.alphabet import check_tokens, one_hot
from mbo.progress import progress_bar

Reward = Callable[[Tensor], Tensor]


@trains()
def gradient_ascent(reward: Reward, start: Tensor, vocab_size: int, steps: int = 200,
                    lr: float = 0.05, init_scale: float = 1.0, progress: bool = False,
                    constraints: Constraints | None = None, generator: torch.Generator | None = None
                    ) -> Tensor:
    """Optimize continuous logits from ``start`` by Adam on ``reward(softmax(logits))``; argmax out.

    The logits start at ``init_scale · one_hot(start)``, so softmax begins at a softened version of
    the start sequence; each design is optimized independently (the objective is the batch sum).

    Args:
        reward: differentiable map float one-hot ``(N, L, V)`` -> ``(N,)``, finite (ValueError if not).
        start: LongTensor ``(N, L)`` of start sequences (tokens in ``0..V-1``).
        vocab_size: V.
        steps: Adam steps.
        lr: Adam learning rate on the logits.
        init_scale: logit value of the start token (others 0).
        progress: show a tqdm bar.
        constraints: disallowed tokens get no probability (start projected onto the allowed ones);
            global rules are not enforced here: filter with ``constraints.satisfied``.
        generator: draws the allowed token that replaces a disallowed one of ``start``.

    Returns:
        LongTensor ``(N, L)`` on ``start``'s device: the argmax of the final logits.
    """
    start = check_tokens(start, vocab_size, "gradient_ascent")
    blocked = None
    if constraints is not None:
        start = constraints.project(start, generator)
        blocked = ~constraints.allowed_mask().to(start.device)
    if steps < 0:
        raise ValueError(f"gradient_ascent: steps must be >= 0, got {steps}")
    if lr <= 0:
        raise ValueError(f"gradient_ascent: lr must be > 0, got {lr}")
    logits = (init_scale * one_hot(start, vocab_size)).requires_grad_(True)
    opt = torch.optim.Adam([logits], lr=lr)
    def masked(z: Tensor) -> Tensor:
        return z if blocked is None else z.masked_fill(blocked, float("-inf"))

    for step in progress_bar(range(steps), desc="gradient ascent", progress=progress):
        value = reward(torch.softmax(masked(logits), dim=-1))
        bad = ~torch.isfinite(value)
        if bool(bad.any()):  # its gradient is NaN or none: the designs would stay put or turn to noise
            raise ValueError(f"gradient_ascent: reward is not finite for {int(bad.sum())} of {len(value)} "
                             f"designs at step {step}; it needs a finite reward (hill_climb ranks -inf last)")
        loss = -value.sum()  # designs are independent: the sum gives each its own gradient
        opt.zero_grad(set_to_none=True)
        loss.backward(inputs=[logits])  # no gradient into the reward model's weights
        opt.step()
    return masked(logits.detach()).argmax(-1)


@torch.no_grad()
def hill_climb(reward: Reward, start: Tensor, vocab_size: int, steps: int = 200, proposals: int = 16,
               seed: int = 0, progress: bool = False, constraints: Constraints | None = None) -> Tensor:
    """Greedy stochastic hill climbing: each step, ``proposals`` random single-site mutants per design;
    a design moves to its best mutant if that scores higher under ``reward``.

    Args:
        reward: map float one-hot ``(N, L, V)`` -> ``(N,)``.
        start: LongTensor ``(N, L)`` of start sequences.
        vocab_size: V.
        steps: mutation rounds.
        proposals: mutants tried per design per step.
        seed: seeds the mutations (global RNG untouched).
        progress: show a tqdm bar.
        constraints: mutants are projected onto the allowed tokens and ranked by how far they are
            from meeting the global rules (:meth:`~mbo.constraints.Constraints.violation`) before
            the reward, so a design that meets them never leaves, and one that does not (a start
            outside the GC window, say) first walks into them; one that ran out of steps may still
            break a rule: filter with ``constraints.satisfied``.

    Returns:
        LongTensor ``(N, L)``: the final designs.
    """
    x = check_tokens(start, vocab_size, "hill_climb").clone()
    if steps < 0:
        raise ValueError(f"hill_climb: steps must be >= 0, got {steps}")
    if proposals < 1:
        raise ValueError(f"hill_climb: proposals must be >= 1, got {proposals}")
    n, length = x.shape
    gen = torch.Generator().manual_seed(seed)

    def violation(tokens: Tensor) -> Tensor:
        if constraints is None:
            return torch.zeros(len(tokens), device=tokens.device)
        return constraints.violation(tokens).to(tokens.device)

    if constraints is not None:
        x = constraints.project(x, gen)
    value, off = _scores(reward, x, vocab_size, "hill_climb"), violation(x)
    for _ in progress_bar(range(steps), desc="hill climbing", progress=progress):
        pos = torch.randint(length, (n, proposals), generator=gen).to(x.device)
        tok = torch.randint(vocab_size, (n, proposals), generator=gen).to(x.device)
        mutants = x.unsqueeze(1).repeat(1, proposals, 1)  # (N, P, L)
        mutants.scatter_(2, pos.unsqueeze(-1), tok.unsqueeze(-1))
        if constraints is not None:
            mutants = constraints.project(mutants.flatten(0, 1), gen).view(n, proposals, length)
        flat = mutants.flatten(0, 1)
        scores = _scores(reward, flat, vocab_size, "hill_climb").view(n, proposals)
        mutant_off = violation(flat).view(n, proposals)
        # Lexicographic: nearer to meeting the rules first, then the reward.
        least = mutant_off.min(1).values
        best, arg = scores.masked_fill(mutant_off > least[:, None], float("-inf")).max(dim=1)
        better = (least < off) | ((least == off) & (best > value))
        x[better] = mutants[better, arg[better]]
        value = torch.where(better, best, value)
        off = torch.where(better, least, off)
    return x


@torch.no_grad()
def exhaustive_search(reward: Reward, length: int, vocab_size: int, top_k: int = 128,
                      batch: int = 8192, device: str | torch.device | None = None,
                      max_space: int = 2**22, progress: bool = False,
                      constraints: Constraints | None = None) -> tuple[Tensor, Tensor]:
    """Score all ``vocab_size ** length`` sequences and return the ``top_k`` best by ``reward``.

    Sequences are enumerated in base-V order with the first position most significant (for DNA
    ``ACGT`` that is the TFBind8 k-mer index order).

    Args:
        reward: map float one-hot ``(N, L, V)`` -> ``(N,)``.
        length: L.
        vocab_size: V.
        top_k: how many designs to return (at most V^L).
        batch: sequences scored per reward call.
        device: where to build the one-hots (default CPU).
        max_space: refuse spaces larger than this (the search is meant for tiny problems).
        progress: show a tqdm bar.
        constraints: only sequences meeting every rule are ranked (ValueError if fewer than
            ``top_k`` do).

    Returns:
        ``(tokens, scores)``: LongTensor ``(top_k, L)`` and ``(top_k,)`` in the reward's float dtype
        (float64 for an integer reward), best first; ties broken by enumeration order.
    """
    if length < 1 or vocab_size < 1:
        raise ValueError(f"exhaustive_search: need length >= 1 and vocab_size >= 1, got "
                         f"length={length}, vocab_size={vocab_size}")
    space = vocab_size**length
    if space > max_space:
        raise ValueError(f"exhaustive_search: {vocab_size}^{length} = {space} sequences exceeds "
                         f"max_space={max_space}; use an optimizer instead")
    if not 1 <= top_k <= space:
        raise ValueError(f"exhaustive_search: top_k must lie in 1..{space}, got {top_k}")
    if batch < 1:  # a negative batch skipped the loop and ranked uninitialized memory
        raise ValueError(f"exhaustive_search: batch must be >= 1, got {batch}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    place = vocab_size ** torch.arange(length - 1, -1, -1, device=device)  # (L,)
    # In the reward's own precision: float32 would tie or misorder a float64 oracle's close values.
    scores: Tensor | None = None
    # Which sequences meet the rules, kept apart from the scores: a reward of -inf (infeasible) on a
    # sequence that meets them ranks it last, as without constraints, rather than dropping it.
    meets = torch.ones(space, dtype=torch.bool, device=device)
    for lo in progress_bar(range(0, space, batch), desc="exhaustive search", progress=progress):
        index = torch.arange(lo, min(lo + batch, space), device=device)
        tokens = (index[:, None] // place) % vocab_size  # (B, L)
        out = _scores(reward, tokens, vocab_size, "exhaustive_search")
        if constraints is not None:
            meets[lo:lo + len(index)] = constraints.satisfied(tokens).to(device)
        if scores is None:
            scores = torch.empty(space, device=device,
                                 dtype=out.dtype if out.is_floating_point() else torch.float64)
        scores[lo:lo + len(index)] = out.to(scores.dtype)
    candidates = meets.nonzero().squeeze(1)  # (K,) ascending: enumeration order
    if len(candidates) < top_k:
        raise ValueError(f"exhaustive_search: only {len(candidates)} sequences meet "
                         f"the constraints ({constraints.describe()}); asked for top_k={top_k}")
    # A stable descending sort keeps enumeration order among ties (reproducible top-k).
    order = candidates[torch.sort(scores[candidates], descending=True, stable=True).indices[:top_k]]
    tokens = (order[:, None] // place) % vocab_size
    return tokens, scores[order]


def _scores(reward: Reward, tokens: Tensor, vocab_size: int, where: str) -> Tensor:
    """``reward`` of ``tokens (N, L)``, checked to be ``(N,)`` and free of NaN (-inf, infeasible, is
    allowed): a (N, 1) output would broadcast, a NaN would top a descending sort or poison a max."""
    out = reward(one_hot(tokens, vocab_size))
    if not isinstance(out, Tensor) or out.shape != (len(tokens),):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"{where}: reward returned shape {got} for a batch of {len(tokens)}; "
                         f"expected ({len(tokens)},)")
    if bool(torch.isnan(out).any()):
        raise ValueError(f"{where}: reward is NaN for {int(torch.isnan(out).sum())} of {len(out)} "
                         f"sequences; map infeasible designs to -inf or a large negative number")
    return out
