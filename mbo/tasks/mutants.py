"""Random point mutants of a few starting sequences: the pretraining corpus of the FLEXS-style tasks.

FLEXS's protocol hands an explorer one starting sequence and nothing else (no unlabeled data), so a
diffusion prior can only be pretrained on what that allows without spending oracle calls: sequences
near the published starting points. A corpus row is a starting sequence with ``k`` distinct positions
changed to a different letter, ``k`` uniform in ``1..max_mutations``: a local prior around the starts,
the sequence-space analogue of a trust region, which carries no information about the objective.
"""

from __future__ import annotations

import torch
from torch import Tensor


def random_mutants(starts: Tensor, n: int, max_mutations: int, vocab_size: int, generator: torch.Generator,
                   frozen: Tensor | None = None, min_mutations: int = 1) -> Tensor:
    """``n`` mutants of rows of ``starts``, each at Hamming distance ``min_mutations..max_mutations``
    (uniform) from its parent.

    Args:
        starts: LongTensor ``(S, L)``; each mutant's parent is drawn uniformly from its rows.
        n: number of mutants.
        max_mutations: the largest number of changed positions (capped at the number of mutable ones).
        vocab_size: V; a changed position gets one of the other ``V - 1`` letters, uniformly.
        generator: the CPU generator all draws come from.
        frozen: optional bool ``(L,)``: positions never changed (e.g. a conserved region).
        min_mutations: the smallest number of changed positions (``= max_mutations``: exactly that many).

    Returns:
        LongTensor ``(n, L)``; rows may repeat (deduplicate with :func:`distinct_mutants`).
    """
    if starts.dim() != 2 or len(starts) == 0:
        raise ValueError(f"random_mutants: starts must be a non-empty (S, L) tensor, got "
                         f"{tuple(starts.shape)}")
    length = starts.shape[1]
    mutable = torch.ones(length, dtype=torch.bool) if frozen is None else ~frozen.to(torch.bool).cpu()
    n_mutable = int(mutable.sum())
    if not 1 <= min_mutations <= max_mutations or n_mutable == 0:
        raise ValueError(f"random_mutants: need 1 <= min_mutations <= max_mutations and a mutable position, "
                         f"got {min_mutations}, {max_mutations} and {n_mutable} mutable of {length}")
    max_mutations = min(max_mutations, n_mutable)
    min_mutations = min(min_mutations, max_mutations)
    parents = starts.cpu().long()[torch.randint(len(starts), (n,), generator=generator)]
    k = torch.randint(min_mutations, max_mutations + 1, (n,), generator=generator)
    # k distinct mutable positions per row: the k smallest of random keys (frozen ones get +inf).
    keys = torch.rand(n, length, generator=generator).masked_fill(~mutable, float("inf"))
    rank = keys.argsort(dim=1).argsort(dim=1)
    change = rank < k.unsqueeze(1)
    # An offset in 1..V-1 guarantees a different letter.
    shift = torch.randint(1, vocab_size, (n, length), generator=generator)
    return torch.where(change, (parents + shift) % vocab_size, parents)


def distinct_mutants(starts: Tensor, n: int, max_mutations: int, vocab_size: int,
                     generator: torch.Generator, frozen: Tensor | None = None,
                     max_draws: int = 50) -> Tensor:
    """``n`` distinct mutants (none equal to a start), in draw order; see :func:`random_mutants`.

    Raises:
        ValueError: the neighbourhood holds fewer than ``n`` distinct mutants (after ``max_draws``
            batches of ``n`` draws).
    """
    seen = {tuple(row) for row in starts.tolist()}
    kept: list[Tensor] = []
    for _ in range(max_draws):
        batch = random_mutants(starts, n, max_mutations, vocab_size, generator, frozen)
        for row, key in zip(batch, map(tuple, batch.tolist()), strict=True):
            if key not in seen:
                seen.add(key)
                kept.append(row)
                if len(kept) == n:
                    return torch.stack(kept)
    raise ValueError(f"could not draw {n} distinct mutants within {max_mutations} mutations of "
                     f"{len(starts)} starts; lower the corpus size or raise the mutation radius")
