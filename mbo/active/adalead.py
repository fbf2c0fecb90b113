"""AdaLead (Sinai et al. 2020, arXiv 2010.02141): adaptive greedy evolution under a model, a batch
active-learning baseline.

One round, given every measurement so far (the FLEXS wheel's ``flexs/baselines/explorers/adalead.py``,
``Adalead.propose_sequences``, which this follows step by step):

1. refit the model on all measurements (FLEXS: an ensemble of 3 CNNs; here by default a
   :class:`~reward_models.DeepEnsemble` of 3 MLPs on one-hot, or any ``make_model``); the model's
   ensemble mean is its prediction;
2. seeds: the measured designs within ``κ`` of the best, ``f ≥ f*·(1 − sign(f*)·κ)`` (κ =
   ``threshold`` = 0.05), cycled to ``batch_size`` parents (``np.resize``);
3. until ``model_queries`` predictions are spent (roots and children both count, as FLEXS's
   ``model.cost``; unlike the wheel's, the budget is never exceeded): recombine the parents ``rho``
   times (random pairs, crossover switching strands at each position with probability
   ``recomb_rate``), then, ``eval_batch_size`` roots at a time, roll out: mutate every node (each
   position redrawn with probability ``mu / L``), keep children never measured nor proposed, and
   continue from those the model scores at least as high as their root; every child is a proposal;
4. measure the ``batch_size`` proposals the model ranks highest.

Choices where the paper and the wheel differ or are silent, and why:

- recombination: the paper recombines the seeds (rate 0.2 in FLEXS's benchmark scripts,
  ``recomb_rate=0.2``), but the wheel's ``rho`` (recombination rounds per pass) defaults to 0, which
  silently disables it; here ``rho = 1``, the paper's algorithm. With an odd number of parents the
  wheel drops the last one; here it is kept unchanged;
- the wheel proposes ``batch_size − 1`` designs (its ``argsort(...)[: -batch_size : -1]``); here
  exactly ``batch_size``, topped up with fresh random mutants of the seeds if the rollouts produced
  fewer proposals;
- with fewer than 2 finite measurements (round 1 of a campaign from one start), or when every
  finite measurement is equal (nothing tells the designs apart), no model can be fitted; the model is
  then uninformative: independent uniform random scores, so each rollout step
  goes on with probability 1/2 and the batch is a random subset of the children, model-free local
  exploration (what FLEXS's CNN fitted to one point amounts to). A flat constant would instead let
  every rollout run to the budget, ~100 mutations deep;
- infeasible measurements (``-inf``) are never seeds and enter the fit at the lowest finite value
  measured (as SEIKO's ``infeasible: impute``);
- a prediction that is NaN ranks last (a NaN sorts first in a descending sort) and never continues
  a rollout;
- with ``constraints``, every child is repaired into the valid set before the model scores it and
  before the check that it is new, so the model ranks, and the novelty check sees, the design that
  will be measured (a child that only changed a conserved position is its parent again).

Same calling convention as :mod:`mbo.active.oracle_baselines`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from mbo.active.oracle_baselines import Oracle, _best_first, _check_args, _query, _row_keys
from mbo.active.random_mutagenesis import novel_mutants
from mbo.active.recombination import RECOMBINATION_RATE, strand_switches
from mbo.active.seiko import QueryBatch
from mbo.constraints import Constraints
from mbo.data.alphabet import Alphabet, one_hot
from mbo.data.dataset import SequenceDataset
from mbo.progress import progress_bar

__all__ = ["adalead", "default_model", "recombine"]


def default_model():
    """The model refitted each round: a deep ensemble of 3 MLPs on one-hot (FLEXS: 3 CNNs)."""
    from reward_models import DeepEnsemble

    return DeepEnsemble(num_members=3, hidden_dims=(64, 64), epochs=100, batch_size=64, device="cpu")


def recombine(parents: Tensor, rate: float, generator: torch.Generator) -> Tensor:
    """FLEXS's ``_recombine_population``: shuffle, pair consecutive rows, and cross each pair over,
    switching strands at each position with probability ``rate``.

    Args:
        parents: LongTensor ``(N, L)``.

    Returns:
        LongTensor ``(N, L)``: the two recombinants of each pair (an odd last row unchanged).
    """
    n = len(parents)
    if n < 2:
        return parents.clone()
    shuffled = parents[torch.randperm(n, generator=generator)]
    pairs = n // 2
    a, b = shuffled[0:2 * pairs:2], shuffled[1:2 * pairs:2]
    switch = strand_switches(a.shape, rate, generator)
    # The wheel's strand A reads parent a where switched and parent b elsewhere; strand B the opposite.
    children = torch.stack([torch.where(switch, a, b), torch.where(switch, b, a)], dim=1).flatten(0, 1)
    return torch.cat([children, shuffled[2 * pairs:]])


def _fit_predictor(make_model: Callable[[], object], tokens: Tensor, values: Tensor, alphabet: Alphabet,
                   seed: int, generator: torch.Generator) -> Callable[[Tensor], Tensor]:
    """A function tokens ``(n, L)`` -> predicted values float64 ``(n,)`` fitted on the measurements
    ``tokens (N, L)``, ``values (N,)`` (uninformative random scores from ``generator`` when fewer than 2
    are finite or all finite ones are equal)."""
    finite = torch.isfinite(values)
    # Equal labels (a constant oracle, identical starts) leave nothing to fit: the models refuse them.
    if int(finite.sum()) < 2 or bool((values[finite] == values[finite][0]).all()):
        return lambda x: torch.rand(len(x), generator=generator, dtype=torch.float64)
    # Infeasible designs are fitted at the lowest finite value, so the model steers away from them.
    y = torch.where(finite, values, values[finite].min()).float()
    model = make_model().fit(SequenceDataset(tokens, alphabet, labels=y), seed=seed)

    def predict(x: Tensor) -> Tensor:
        with torch.no_grad():
            mean, _ = model.mean_std(one_hot(x, alphabet.size).float())
        return mean.detach().double().cpu()

    return predict


def adalead(oracle: Oracle, initial: SequenceDataset, *, rounds: int, batch_size: int, seed: int = 0,
            model_queries: int = 2000, threshold: float = 0.05, recomb_rate: float = RECOMBINATION_RATE,
            rho: int = 1, mu: float = 1.0, eval_batch_size: int = 20,
            make_model: Callable[[], object] | None = None, constraints: Constraints | None = None,
            progress: bool = False) -> list[QueryBatch]:
    """AdaLead as a batch active learner (see the module docstring for the algorithm).

    Args:
        oracle: LongTensor ``(q, L)`` -> float ``(q,)`` (``-inf`` = infeasible).
        initial: the measured starting designs (one is enough: FLEXS starts from one sequence).
        rounds, batch_size: the oracle budget is ``rounds * batch_size``.
        seed: all randomness (the model of round r is fitted with ``seed * 1000 + r``).
        model_queries: model predictions per round (FLEXS protocol: 2,000); not oracle calls.
        threshold: κ, how close to the best measured value a seed must be.
        recomb_rate: crossover probability per position (FLEXS benchmark scripts: 0.2).
        rho: recombination rounds per pass over the parents (0 disables recombination).
        mu: expected mutations per child (rate ``mu / L`` per position).
        eval_batch_size: roots rolled out together (FLEXS: 20).
        make_model: builds an unfitted reward model with ``fit(dataset, seed=)`` and ``mean_std``
            (default :func:`default_model`); called once per round.
        constraints: children are repaired into the valid set before the model scores them and
            before they are checked for novelty; one the repair cannot fix is redrawn (see
            :func:`~mbo.active.random_mutagenesis.novel_mutants`).

    Returns:
        ``rounds`` :class:`QueryBatch` es of ``batch_size`` queries each.
    """
    name = "adalead"
    labels = _check_args(name, initial, rounds, batch_size)
    if model_queries < batch_size:
        raise ValueError(f"{name}: model_queries ({model_queries}) must be >= batch_size ({batch_size})")
    if not 0.0 <= threshold <= 1.0 or not 0.0 <= recomb_rate <= 1.0:
        raise ValueError(f"{name}: threshold and recomb_rate must lie in [0, 1], got {threshold}, "
                         f"{recomb_rate}")
    if rho < 0 or mu <= 0 or eval_batch_size < 1:
        raise ValueError(f"{name}: need rho >= 0, mu > 0 and eval_batch_size >= 1, got {rho}, {mu}, "
                         f"{eval_batch_size}")
    alphabet, length = initial.alphabet, initial.length
    make_model = make_model or default_model
    gen = torch.Generator().manual_seed(seed)
    tokens, values = initial.tokens.detach().long().cpu(), labels.clone()
    batches: list[QueryBatch] = []
    for r in progress_bar(range(rounds), desc=name, progress=progress):
        predict = _fit_predictor(make_model, tokens, values, alphabet, seed * 1000 + r, gen)
        chosen = _propose(predict, tokens, values, batch_size, alphabet.size, mu / length, model_queries,
                          threshold, recomb_rate, rho, eval_batch_size, gen, constraints)
        qb = _query(oracle, chosen, name, constraints, gen)
        batches.append(qb)
        tokens = torch.cat([tokens, qb.tokens])
        values = torch.cat([values, qb.values.double()])
    return batches


def _propose(predict: Callable[[Tensor], Tensor], tokens: Tensor, values: Tensor, batch_size: int,
             vocab_size: int, rate: float, model_queries: int, threshold: float, recomb_rate: float,
             rho: int, eval_batch_size: int, gen: torch.Generator,
             constraints: Constraints | None = None) -> Tensor:
    """One round's batch ``(batch_size, L)`` from the measurements ``tokens (N, L)``, ``values (N,)``:
    steps 2-4 of the module docstring."""
    finite = torch.isfinite(values)
    if finite.any():
        top = values[finite].max()
        seeds = tokens[values >= top * (1 - torch.sign(top) * threshold)]
    else:
        seeds = tokens
    parents = seeds[torch.arange(batch_size) % len(seeds)]
    seen = set(_row_keys(tokens))  # measured, then every proposal: children are always new
    found_tokens: list[Tensor] = []
    found_preds: list[Tensor] = []
    cost = 0
    while cost < model_queries:
        progress_made = False
        for _ in range(rho):
            parents = recombine(parents, recomb_rate, gen)
        for i in range(0, len(parents), eval_batch_size):
            roots = parents[i:i + eval_batch_size]
            if cost + len(roots) > model_queries:  # the wheel overshoots here; the budget is a cap
                break
            root_fit = predict(roots)
            cost += len(roots)
            nodes, root_of = roots, torch.arange(len(roots))
            while len(nodes) and cost + eval_batch_size < model_queries:
                children, rows = novel_mutants(nodes, rate, vocab_size, seen, gen, constraints=constraints)
                if len(children) == 0:
                    break
                # NaN never beats a root and ranks last (torch sorts NaN above every number).
                fit = predict(children)
                fit = torch.where(fit.isnan(), -torch.inf, fit)
                cost += len(children)
                found_tokens.append(children)
                found_preds.append(fit)
                progress_made = True
                # Go on from the children the model rates at least as high as their root.
                better = fit >= root_fit[root_of[rows]]
                nodes, root_of = children[better], root_of[rows][better]
        if not progress_made:  # the budget is spent or the neighbourhood exhausted
            break
    if found_tokens:
        cand, pred = torch.cat(found_tokens), torch.cat(found_preds)
        chosen = cand[_best_first(pred, gen)[:batch_size]]
    else:
        chosen = tokens[:0]
    if len(chosen) < batch_size:
        extra, _ = novel_mutants(seeds[torch.randint(len(seeds), (batch_size - len(chosen),), generator=gen)],
                                 rate, vocab_size, seen, gen, constraints=constraints)
        chosen = torch.cat([chosen, extra])
    return chosen
