"""SEIKO rounds: optimistic fine-tuning on the feasible manifold, one plate at a time (arXiv 2402.16359).

One round (:func:`seiko_round`), given every measurement so far and the previous round's model:

1. fit a reward model with uncertainty on the measured designs (infeasible ones, ``-inf``, are
   counted and never suggested again, but cannot be regressed on, so the fit leaves them out);
2. fine-tune ``θ_i = argmax E_pθ[r̂ + c·ĝ] − α·KL(pθ || p_ref)`` by reward backprop, where the
   reference is the previous round's model (as SEIKO's reference code does) or the pretrained one;
3. sample a pool from ``p_θi`` and pick the plate with a BoTorch acquisition function
   (:func:`mbo.active.selection.select_batch`), never re-suggesting a measured design. Part of the
   pool may start from the best measured designs (:class:`LocalPool`): a few of their positions
   re-masked and completed by ``p_θi``, so the campaign proposes steps from where it already is. A
   trust region (``max_unseen``, :func:`within_trust`) keeps the plate to candidates whose tokens the
   measured designs mostly already hold at their positions, so the reward model is not trusted where
   it has no data.

Because every candidate comes from a model KL-leashed to the pretrained one, candidates stay on the
manifold the pretraining data spans (for Ehrlich functions: the feasible set), which is the point.
:func:`run_seiko` plays the lab with an oracle for a closed-loop simulation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from conservative import OptimisticReward, ScaledReward, label_scale
from mbo.active.pareto import ParetoMethod, pareto_mask, select_pareto_batch
from mbo.active.recombination import RECOMBINATION_RATE, strand_switches
from mbo.active.selection import Acquisition, Selection, select_batch, unmeasured
from mbo.constraints import Constraints
from mbo.data.dataset import SequenceDataset
from mbo.diffusion import MaskedDiffusion
from mbo.diffusion.masked import Guidance
from mbo.diffusion.policy import LOG_ZERO, restrict
from mbo.diffusion.samplers import Sampler
from mbo.evaluate import mean_pairwise_hamming
from mbo.guidance.gradient import tilt_of
from mbo.progress import progress_bar


@dataclass(frozen=True)
class QueryBatch:
    """One round of queries: designs ``tokens (q, L)`` and the values measured for them ``(q,)``."""

    tokens: Tensor
    values: Tensor


@dataclass(frozen=True)
class LocalPool:
    """The share of a round's pool drawn near the best measured designs.

    Each such candidate takes one of the ``parents`` best measured designs (uniformly), re-masks each
    position with probability ``remask`` (at least one position) and lets the fine-tuned model
    complete them: its conditionals given the kept tokens propose the substitutions, as mutation does
    in AdaLead, but tilted by the round's reward. A re-masked position never gets its parent's token
    back (unless the policy allows no other): a prior pretrained on mutants of a few starts puts most
    of its mass on the parent's token, and without this 63 % of the AAV 560-588 prior's completions of
    the wild type were the wild type itself, 0.46 substitutions a candidate for 3.8 re-masked
    positions (``experiments/results/flexs_seiko_substitute.md``).

    A model sampled from scratch proposes around what its KL leash lets it reach; the best measured
    designs may already lie further out, and without these candidates the pool holds little beyond
    them (FLEXS AAV: ``experiments/results/flexs.md``).

    A ``crossover`` share of the candidates first recombines its parent with a second of the best, so
    substitutions that improved different parents meet in one design; such a child holds only
    (position, token) pairs its parents hold. Strands switch with AdaLead's probability
    :data:`mbo.active.recombination.RECOMBINATION_RATE` at each position, but unlike AdaLead's the
    crossover is homologous: a switch is dropped unless the two parents agree on the position before
    it, so every adjacent pair of the child is one a parent holds at the same place, and a junction
    never makes a transition neither parent has. With AdaLead's junctions 1.6 % of SEIKO's Ehrlich
    queries were infeasible (banned transitions), with these 0.6 %
    (``experiments/results/seiko_ehrlich_l32_homologous.md``).

    Attributes:
        fraction: share of the pool, in [0, 1]; 0 draws every candidate from scratch.
        parents: how many of the best measured designs are re-masked.
        remask: per-position re-mask probability, in (0, 1].
        crossover: share of the candidates whose parent is a recombinant of two, in [0, 1].
    """

    fraction: float = 0.5
    parents: int = 10
    remask: float = 0.1
    crossover: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"LocalPool: fraction must lie in [0, 1], got {self.fraction!r}")
        if self.parents < 1:
            raise ValueError(f"LocalPool: parents must be >= 1, got {self.parents!r}")
        if not 0.0 < self.remask <= 1.0:
            raise ValueError(f"LocalPool: remask must lie in (0, 1], got {self.remask!r}")
        if not 0.0 <= self.crossover <= 1.0:
            raise ValueError(f"LocalPool: crossover must lie in [0, 1], got {self.crossover!r}")

    def draw(self, model: MaskedDiffusion, parents: Tensor, n: int, sampler, generator: torch.Generator,
             ref: MaskedDiffusion | None = None, steer: Guidance | None = None) -> Tensor:
        """``n`` completions ``(n, L)`` by ``model`` of re-masked rows of ``parents (P, L)`` (best first);
        tokens ``ref``'s policy cuts are never drawn (as in ``MaskedDiffusion.sample``). ``steer``
        (e.g. :func:`mbo.guidance.gradient.tilt_of` the pool's method) edits each step's log-probs
        after the parent's token is ruled out."""
        device = generator.device
        if parents.shape[-1] != model.length:  # else sample() names x_start, which the caller never passed
            raise ValueError(f"LocalPool: the parents have length {parents.shape[-1]}, the model "
                             f"{model.length}")
        best = parents[: self.parents].to(device)
        pick = torch.randint(len(best), (n,), generator=generator, device=device)
        rows = best[pick]
        if self.crossover > 0 and len(best) > 1:
            rows = self._recombine(pick, best, generator)
        masked = torch.rand(rows.shape, dtype=torch.float32, generator=generator, device=device) < self.remask
        masked[torch.arange(n, device=device), torch.randint(rows.shape[1], (n,), generator=generator,
                                                             device=device)] = True
        parent_token = F.one_hot(rows, model.vocab_size).bool() & masked.unsqueeze(-1)

        def substitute(xt: Tensor, log_x0: Tensor, at: Tensor) -> Tensor:
            # Tokens the policy cuts (constraints, min-p) stay cut: a position whose only allowed
            # token is the parent's keeps it.
            parent = parent_token[at]
            other = ((log_x0 > LOG_ZERO / 2) & ~parent).any(-1, keepdim=True)
            log_x0 = torch.where(other, restrict(log_x0, ~parent), log_x0)
            return log_x0 if steer is None else steer(xt, log_x0, at)

        with torch.no_grad():
            return model.sample(n, sampler=sampler, generator=generator, guidance=substitute, ref=ref,
                                x_start=torch.where(masked, model.mask_id, rows))

    def _recombine(self, pick: Tensor, best: Tensor, generator: torch.Generator) -> Tensor:
        """The parents ``best[pick] (n, L)`` (``best (P, L)``, P ≥ 2), a ``crossover`` share of them
        replaced by a recombinant with another row of ``best``, the strand starting on the parent."""
        n, device = len(pick), generator.device
        rows = best[pick]
        crossed = torch.rand(n, dtype=torch.float32, generator=generator, device=device) < self.crossover
        # A mate other than the parent: P - 1 choices.
        mates = best[(pick + 1 + torch.randint(len(best) - 1, (n,), generator=generator, device=device))
                     % len(best)]
        # Homologous: the strands switch at i only where they agree at i − 1 (never at 0: the child
        # starts on its parent), so each adjacent pair of the child is one a parent holds there.
        allowed = torch.zeros_like(rows, dtype=torch.bool)
        allowed[:, 1:] = rows[:, :-1] == mates[:, :-1]
        switch = strand_switches(rows.shape, RECOMBINATION_RATE, generator, allowed)
        child = torch.where(switch, mates, rows)
        return torch.where(crossed.unsqueeze(1), child, rows)


def spread(tokens: Tensor, vocab_size: int) -> float:
    """How far apart the designs ``tokens (N, L)`` are: their mean pairwise Hamming distance over that of
    uniformly random sequences, L·(1 − 1/V); about 0 for a wild type and its point mutants, about 1 for
    designs drawn from all over the space (0 for fewer than two designs)."""
    return mean_pairwise_hamming(tokens) / (tokens.shape[1] * (1 - 1 / vocab_size))


def trust_bound(max_unseen: int | None, below_spread: float | None, start_spread: float) -> int | None:
    """The trust region's bound for a campaign whose starting designs have :func:`spread`
    ``start_spread``: ``max_unseen`` while it is below ``below_spread`` (None: whatever it is), else None
    (no bound). Spread starting designs hold most (position, token) pairs as typical ones, and the
    optimum may lie anywhere: there the bound only cuts candidates (README: the campaign)."""
    if max_unseen is None or below_spread is None or start_spread < below_spread:
        return max_unseen
    return None


def unseen_pairs(candidates: Tensor, measured: Tensor) -> Tensor:
    """How many (position, token) pairs of each row of ``candidates (P, L)`` no row of ``measured
    (N, L)`` has, LongTensor ``(P,)``: the one-hot features a reward model fitted on ``measured``
    never saw set, whose effect it can only guess."""
    # As a LongTensor: int16 tokens were refused as indices, and uint8 ones taken for a mask.
    candidates, measured = candidates.cpu().long(), measured.cpu()
    seen = _seen(measured, int(max(candidates.max(), measured.max())) + 1)
    return (~seen[torch.arange(measured.shape[1]), candidates]).sum(-1)


def _seen(measured: Tensor, num_tokens: int) -> Tensor:
    """Bool ``(L, num_tokens)`` on ``measured``'s device: which tokens some row of ``measured (N, L)``
    holds at each position."""
    seen = torch.zeros(measured.shape[1], num_tokens, dtype=torch.bool, device=measured.device)
    positions = torch.arange(measured.shape[1], device=measured.device)
    seen[positions, measured.long()] = True  # broadcasts over rows; long: see unseen_pairs
    return seen


def within_trust(pool: Tensor, measured: Tensor, max_unseen: int, keep: int) -> Tensor:
    """The rows of ``pool (P, L)`` with at most ``max_unseen`` :func:`unseen_pairs`, the bound raised
    by whole counts until at least ``keep`` rows remain (or all of them), in order.

    A reward model fitted on designs near a wild type has seen a few substitutions at a few positions;
    a design that makes many others is scored by extrapolation alone, and its optimism (r̂ + c·ĝ) is
    highest exactly there. On FLEXS AAV 450-540 a plate of such designs, 36 substitutions from the
    wild type, scored 0 throughout (``experiments/results/seiko_guided_pool.md``). Where the measured
    designs already hold every token at every position (RNA of length 14 after one round) the bound
    removes nothing."""
    if len(pool) == 0:
        return pool
    unseen = unseen_pairs(pool, measured)
    bound = max(max_unseen, int(unseen.sort().values[min(keep, len(pool)) - 1]))
    return pool[unseen <= bound]


def _trusted(pool: Tensor, measured: Tensor, max_unseen: int) -> int:
    """How many rows of ``pool (P, L)`` have at most ``max_unseen`` :func:`unseen_pairs`."""
    return int((unseen_pairs(pool, measured) <= max_unseen).sum()) if len(pool) else 0


def _outside(measured: Tensor, max_unseen: int, model: MaskedDiffusion) -> Callable[[Tensor], Tensor]:
    """``xt (B, L) -> bool (B,)``: the partly drawn rows of ``model`` that already hold more than
    ``max_unseen`` (position, token) pairs no row of ``measured (N, L)`` has (MASK counts as seen)."""
    seen = _seen(measured.to(model.device), model.vocab_size + 1)
    seen[:, model.mask_id] = True
    position = torch.arange(model.length, device=model.device)
    return lambda xt: (~seen[position, xt]).sum(-1) > max_unseen


@dataclass
class RoundResult:
    """What one SEIKO round produced: the fine-tuned model ``θ_i``, the fitted reward model, the
    chosen :class:`Selection`, and the fine-tuning history (one dict per iteration)."""

    model: MaskedDiffusion
    reward_model: object
    selection: Selection
    history: list[dict] = field(default_factory=list)
    rejected: int = 0


def feasible_rows(tokens: Tensor, values: Tensor, alphabet, infeasible: str = "drop") -> SequenceDataset:
    """The measured designs as a dataset a reward model can be fitted on.

    Args:
        tokens: LongTensor ``(N, L)``; values: ``(N,)``, or ``(N, M)`` for M objectives (``-inf`` =
            measured infeasible; a design infeasible in one objective is infeasible).
        alphabet: the tokens' :class:`~mbo.data.alphabet.Alphabet`.
        infeasible: ``"drop"`` leaves infeasible designs out of the fit; ``"impute"`` fits them at
            the lowest finite value measured, so the reward model learns what makes a design fail
            and the acquisition stops picking look-alikes. Either way they stay counted in the
            campaign's metrics and are never suggested again.

    Replicates (one design measured several times) become one row with their mean value. NaN or
    ``+inf`` values are refused (ValueError): neither is a measurement, and taken for infeasible a
    ``+inf`` would be fitted as the worst design (``impute``).
    """
    if infeasible not in ("drop", "impute"):
        raise ValueError(f"infeasible must be 'drop' or 'impute', got {infeasible!r}")
    check_measured(values, "feasible_rows: values")
    finite = torch.isfinite(values)
    row_ok = finite if values.dim() == 1 else finite.all(-1)
    if int(row_ok.sum()) < 2:
        raise ValueError(f"need at least 2 designs with a finite measured value to fit a reward model, "
                         f"got {int(row_ok.sum())} of {len(values)}")
    if infeasible == "drop":
        data = SequenceDataset(tokens[row_ok], alphabet, labels=values[row_ok].float())
    else:
        lowest = values[row_ok].min(0).values  # per objective
        imputed = torch.where(row_ok.view(-1, *[1] * (values.dim() - 1)), values, lowest).float()
        data = SequenceDataset(tokens, alphabet, labels=imputed)
    # Replicate measurements of one design (the start data may have them) are one row, their mean.
    return data.merge_replicates("mean")[0]


def check_measured(values: Tensor, where: str) -> None:
    """Raise ValueError (one sentence naming ``where``) if measured ``values`` hold NaN or ``+inf``;
    ``-inf`` (infeasible) is allowed."""
    bad = torch.isnan(values) | (values == math.inf)
    if bool(bad.any()):
        raise ValueError(f"{where} hold NaN or +inf in {int(bad.sum())} of {values.numel()} entries; "
                         f"score an infeasible design -inf")


def seiko_round(
    reference: MaskedDiffusion,
    data: SequenceDataset,
    reward_model,
    finetune: Callable[..., tuple[MaskedDiffusion, list[dict]]],
    *,
    batch_size: int,
    c: float,
    alpha: float,
    acquisition: Acquisition,
    pool_size: int,
    min_distance: int,
    exclude: Tensor | None = None,
    sampler: Sampler | int | str | None = None,
    pool_method: Callable | None = None,
    local: LocalPool | None = None,
    max_unseen: int | None = None,
    constraints: Constraints | None = None,
    fallback: Callable[[], MaskedDiffusion] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> RoundResult:
    """Run one SEIKO round and choose the next plate.

    The settings' defaults live in the ``seiko`` and ``finetune`` config groups (``campaign.yaml``).

    Args:
        reference: the KL reference and starting point (previous round's model, or pretrained).
        data: the measured designs with finite values (see :func:`feasible_rows`), labels ``(N,)``.
        reward_model: an unfitted model from ``reward_models`` (fitted here, returned fitted).
        finetune: a fine-tuner with the ``mbo.finetune`` signature ``(reference, reward, *, alpha,
            seed, progress) -> (model, history)``, its other settings bound (``instantiate`` of the
            ``finetune`` config group).
        batch_size: q, designs on the plate.
        c: optimism: the fine-tuning reward is ``r̂ + c·ĝ`` (ĝ = the model's std) and qUCB uses
            ``beta = c²``; ``c = 0`` is the greedy loop.
        alpha: KL weight in units of the std of the measured values (scale-free, like ``mbo-run``).
        acquisition: ``"ucb"``, ``"lognei"`` or ``"thompson"`` (see :func:`select_batch`).
        pool_size: candidates sampled from the fine-tuned model; if fewer than ``batch_size`` of them
            are new (a collapsed model), up to ``MAX_TOP_UPS`` more pools come from ``fallback()``.
        min_distance: minimum pairwise Hamming distance on the plate.
        exclude: designs ``(M, L)`` never to suggest (default: every design in ``data``); pass
            every measured design here, infeasible ones included.
        sampler: how the pool is sampled (default: the model's own sampler).
        pool_method: an inference-time method of :mod:`mbo.guidance` (settings bound) that draws
            the pool from the fine-tuned model steered by the same optimistic reward; None samples
            it plainly.
        local: the share of the pool drawn near the best measured designs (:class:`LocalPool`);
            None samples every candidate from scratch.
        max_unseen: the trust region: the plate is chosen among candidates with at most this many
            (position, token) pairs no measured design has (:func:`within_trust`, widened when
            fewer than ``batch_size`` qualify), and the local share re-masks each position with
            probability at most ``max(max_unseen, 1) / L``; None chooses among every candidate. When the
            local share alone fills the plate inside the region, designs from scratch stop drawing
            once they fall outside it (``abandon`` of :meth:`MaskedDiffusion.sample`).
        constraints: the rules a design must meet (:class:`~mbo.constraints.Constraints`): pool
            samples are pulled within its parent rule's distance
            (:meth:`~mbo.constraints.Constraints.pull_to_parent`), and those that still break a rule
            never reach the plate and are counted in ``RoundResult.rejected``. Per-position rules
            belong in the reference's ``policy`` too, which the fine-tuned model inherits.
        fallback: builds the model that tops up a pool with too few new designs (default: the
            reference; a campaign leashed to its previous rounds passes the pretrained prior, since
            the previous round's model may have collapsed too).
        seed: seeds the reward-model fit, fine-tuning, pool and acquisition.
        progress: show progress bars.

    Returns:
        A :class:`RoundResult`.
    """
    reward_model.fit(data, seed=seed, progress=progress)
    # The reward in units of the measured values' spread: alpha means the same at any label scale.
    reward = ScaledReward(OptimisticReward(reward_model, c=c), label_scale(data.labels))
    model, history = finetune(reference, reward, alpha=alpha, seed=seed, progress=progress)
    model.eval().requires_grad_(False)
    best_first = data.tokens[data.labels.argsort(descending=True, stable=True)]
    pool, rejected = _pool(model, reward, reference, data.tokens if exclude is None else exclude,
                           batch_size=batch_size, pool_size=pool_size, sampler=sampler,
                           pool_method=pool_method, local=local, parents=best_first, constraints=constraints,
                           fallback=fallback, max_unseen=max_unseen, fitted_on=data.tokens, seed=seed)
    selection = select_batch(
        reward_model, pool, batch_size, vocab_size=data.alphabet.size, acquisition=acquisition,
        beta=c * c, exclude=data.tokens if exclude is None else exclude, baseline=data.tokens,
        min_distance=min_distance, seed=seed,
    )
    return RoundResult(model=model, reward_model=reward_model, selection=selection, history=history,
                       rejected=rejected)


def seiko_pareto_round(
    reference: MaskedDiffusion,
    data: SequenceDataset,
    reward_models: list,
    finetune: Callable[..., tuple[MaskedDiffusion, list[dict]]],
    *,
    batch_size: int,
    c: float,
    alpha: float,
    method: ParetoMethod,
    pool_size: int,
    exclude: Tensor | None = None,
    sampler: Sampler | int | str | None = None,
    pool_method: Callable | None = None,
    local: LocalPool | None = None,
    max_unseen: int | None = None,
    constraints: Constraints | None = None,
    fallback: Callable[[], MaskedDiffusion] | None = None,
    seed: int = 0,
    progress: bool = False,
) -> RoundResult:
    """One SEIKO round for M objectives: the plate grows the measured Pareto front.

    One reward model per objective is fitted on its column; the model is fine-tuned on the sum of
    their optimistic rewards, each in units of its column's spread (r̂_j + c·ĝ_j) / std(y_j), so the
    pool covers every trade-off; the plate is picked from the pool by ``method``
    (:func:`mbo.active.pareto.select_pareto_batch`: qNEHVI by default) against the measured designs'
    front, with each objective's lowest measured value as the hypervolume's corner.

    Args:
        data: the measured designs with finite values (:func:`feasible_rows`), labels ``(N, M)``.
        reward_models: M unfitted ensembles (fitted here, returned fitted in ``reward_model``).
        method: ``"qnehvi"``, ``"qparego"`` or ``"random_scalarization"``.
        local: as in :func:`seiko_round`; the parents are the measured Pareto front.
        max_unseen: as in :func:`seiko_round`.
        The rest as :func:`seiko_round`.

    Returns:
        A :class:`RoundResult` whose ``reward_model`` is the list of fitted models and whose selection's
        ``mean`` and ``std`` are ``(q, M)``.
    """
    y = data.labels
    if y.dim() != 2 or y.shape[1] != len(reward_models) or len(reward_models) < 2:
        raise ValueError(f"labels {tuple(y.shape)} need one column per reward model ({len(reward_models)}, "
                         f"at least 2)")
    rewards = []
    for j, m in enumerate(reward_models):
        column = SequenceDataset(data.tokens, data.alphabet, y[:, j].contiguous())
        m.fit(column, seed=seed, progress=progress)
        rewards.append(ScaledReward(OptimisticReward(m, c=c), label_scale(column.labels)))

    def reward(x: Tensor) -> Tensor:
        return sum(r(x) for r in rewards)

    model, history = finetune(reference, reward, alpha=alpha, seed=seed, progress=progress)
    model.eval().requires_grad_(False)
    measured = data.tokens if exclude is None else exclude
    front = data.tokens[pareto_mask(y)]
    front = front[torch.randperm(len(front), generator=torch.Generator().manual_seed(seed))]
    pool, rejected = _pool(model, reward, reference, measured, batch_size=batch_size, pool_size=pool_size,
                           sampler=sampler, pool_method=pool_method, local=local, parents=front,
                           constraints=constraints, fallback=fallback, max_unseen=max_unseen,
                           fitted_on=data.tokens, seed=seed)
    selection = select_pareto_batch(reward_models, pool, batch_size, vocab_size=data.alphabet.size,
                                    ref_point=y.double().min(0).values, baseline=data.tokens, method=method,
                                    exclude=measured, seed=seed)
    return RoundResult(model=model, reward_model=reward_models, selection=selection, history=history,
                       rejected=rejected)


def _pool(model: MaskedDiffusion, reward, reference: MaskedDiffusion, measured: Tensor, *, batch_size: int,
          pool_size: int, sampler, pool_method, local: LocalPool | None, parents: Tensor,
          constraints: Constraints | None, fallback, max_unseen: int | None, fitted_on: Tensor,
          seed: int) -> tuple[Tensor, int]:
    """New, distinct designs ``(P, L)`` sampled from ``model`` (steered by ``pool_method`` when given;
    ``local.fraction`` of them near ``parents``, best first), topped up from ``fallback()`` when fewer
    than ``batch_size``; and how many broke the ``constraints``. With ``max_unseen``, only the designs
    :func:`within_trust` of the reward model's data ``fitted_on (N, L)``, and the local share re-masks
    each position with probability at most ``max(max_unseen, 1) / L``."""
    gen = torch.Generator(device=model.device).manual_seed(seed + 7919)
    pulls = torch.Generator().manual_seed(seed + 104729)  # the pools are on the CPU
    # A gradient-guided pool lends its per-step tilt to samples drawn here directly: the local share
    # (iterative refinement's re-mask and re-denoise, one round) and designs from scratch cut short.
    tilt = tilt_of(pool_method, reward)

    def draw(m: MaskedDiffusion, k: int, ref: MaskedDiffusion | None = None, abandon=None) -> Tensor:
        if pool_method is None:
            with torch.no_grad():
                return m.sample(k, sampler=sampler, generator=gen, ref=ref, abandon=abandon).cpu()
        steered = m if ref is None else m.on_support_of(ref)
        if abandon is None or tilt is None:
            return pool_method(steered, reward, k, sampler=sampler, generator=gen).designs.cpu()
        with torch.no_grad():  # as gradient_guidance draws its designs
            return steered.sample(k, sampler=sampler, generator=gen, guidance=tilt, abandon=abandon).cpu()

    # On the reference's support, where the fine-tuner's roll-ins were drawn (its target is zero off it).
    near = round(local.fraction * pool_size) if local is not None and len(parents) else 0
    pool, rejected = parents[:0].cpu(), 0
    if near:
        if max_unseen is not None:
            # Candidates that re-mask more positions than the trust region allows mostly fall outside
            # it (each substitution can be an unseen pair).
            local = replace(local, remask=min(local.remask, max(max_unseen, 1) / parents.shape[1]))
        pool, rejected = _new_designs(local.draw(model, parents, near, sampler, gen, reference, steer=tilt)
                                      .cpu(), measured, constraints, pulls)
    if near < pool_size:
        abandon = None
        if max_unseen is not None and _trusted(pool, fitted_on, max_unseen) >= batch_size:
            # The local share alone fills the plate inside the region, so its bound will not widen
            # and a design with more unseen pairs is discarded: stop drawing it once it has them (on
            # FLEXS AAV 450-540 every design from scratch, after a few of its steps).
            abandon = _outside(fitted_on, max_unseen, model)
        scratch = draw(model, pool_size - near, reference, abandon)
        if abandon is not None:  # the rows stopped with positions still masked
            scratch = scratch[(scratch != model.mask_id).all(-1)]
        extra, more = _new_designs(scratch, torch.cat([measured, pool]), constraints, pulls)
        pool, rejected = torch.cat([pool, extra]), rejected + more
    # A fine-tuned model can collapse onto designs already measured (FLEXS: all 1,000 samples of a
    # round were). Then the plate is filled with new samples of the fallback (the prior) rather than
    # stalling the campaign.
    source = None
    for _ in range(MAX_TOP_UPS):
        if len(pool) >= batch_size:
            break
        source = source or (fallback() if fallback is not None else reference)
        extra, more = _new_designs(draw(source, pool_size), torch.cat([measured, pool]), constraints, pulls)
        pool, rejected = torch.cat([pool, extra]), rejected + more
    if len(pool) == 0:
        raise ValueError(f"no new design in {MAX_TOP_UPS + 1} pools of {pool_size} samples"
                         + (" that meets the constraints (relax them)"
                            if constraints is not None and constraints.active else "")
                         + ": new designs are rare under the model (a campaign begun with a larger"
                         + " seiko.pool_size draws more)")
    if max_unseen is not None:
        pool = within_trust(pool, fitted_on, max_unseen, batch_size)
    return pool, rejected


MAX_TOP_UPS = 3  # pools drawn from the reference when the fine-tuned model yields too few new designs


def _new_designs(pool: Tensor, measured: Tensor, constraints: Constraints | None,
                 generator: torch.Generator) -> tuple[Tensor, int]:
    """The distinct rows of ``pool (P, L)``, pulled near the constraints' parent, that are not rows of
    ``measured`` and meet the ``constraints``, in order; and how many samples broke them."""
    rejected = 0
    if constraints is not None and constraints.active:
        pool = constraints.pull_to_parent(pool, generator)
        ok = constraints.satisfied(pool)
        rejected, pool = int((~ok).sum()), pool[ok]
    return unmeasured(pool, measured), rejected


def run_seiko(
    oracle: Callable[[Tensor], Tensor],
    initial: SequenceDataset,
    pretrained: MaskedDiffusion,
    make_reward_model: Callable[[], object],
    finetune: Callable[..., tuple[MaskedDiffusion, list[dict]]],
    *,
    rounds: int,
    batch_size: int,
    kl_to: str,
    infeasible: str,
    seed: int = 0,
    progress: bool = False,
    **round_kwargs,
) -> list[QueryBatch]:
    """Closed-loop SEIKO: ``rounds`` plates of ``batch_size`` designs measured by ``oracle``.

    Args:
        oracle: LongTensor ``(N, L)`` -> values ``(N,)`` (``-inf`` = infeasible): plays the lab.
        initial: the measured starting designs.
        pretrained: the pretrained diffusion model (round 1's reference).
        make_reward_model: builds a fresh unfitted reward model each round.
        finetune: the fine-tuner (see :func:`seiko_round`).
        rounds, batch_size: the query budget is ``rounds * batch_size``.
        kl_to: ``"previous"`` (leash to the last round's model) or ``"pretrained"``.
        infeasible: how measured-infeasible designs enter the fit (see :func:`feasible_rows`).
        seed: base seed; round r uses ``seed * 1000 + r``.
        round_kwargs: passed to :func:`seiko_round` (c, alpha, acquisition, pool_size, ...).

    Returns:
        One :class:`QueryBatch` per round, in order.
    """
    if kl_to not in ("previous", "pretrained"):
        raise ValueError(f"kl_to must be 'previous' or 'pretrained', got {kl_to!r}")
    tokens, values = initial.tokens, initial.labels.float()
    reference = pretrained
    batches: list[QueryBatch] = []
    for r in progress_bar(range(rounds), desc="SEIKO rounds", progress=progress):
        data = feasible_rows(tokens, values, initial.alphabet, infeasible)
        result = seiko_round(reference, data, make_reward_model(), finetune, batch_size=batch_size,
                             exclude=tokens, fallback=lambda: pretrained, seed=seed * 1000 + r,
                             **round_kwargs)
        chosen = result.selection.tokens
        measured = oracle(chosen).float().cpu()
        # Checked here, where the oracle is named: next round's fit would refuse it anyway, and the
        # last round's would slip into the batches (best_so_far skips NaN).
        check_measured(measured, "run_seiko: the oracle's values")
        batches.append(QueryBatch(tokens=chosen, values=measured))
        tokens, values = torch.cat([tokens, chosen]), torch.cat([values, measured])
        if kl_to == "previous":
            reference = result.model
    return batches


def best_so_far(initial_best: float, batches: list[QueryBatch]) -> list[float]:
    """Best value after each round (``-inf`` values never count as best), one float per batch."""
    # A NaN initial best (float(labels.max()) of labels holding a NaN) would win every max() after it.
    best, out = (-math.inf if math.isnan(initial_best) else initial_best), []
    for b in batches:
        finite = b.values[torch.isfinite(b.values)]
        if len(finite):
            best = max(best, float(finite.max()))
        out.append(best if math.isfinite(best) else -math.inf)
    return out
