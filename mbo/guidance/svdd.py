"""SVDD: soft value-based decoding (Li et al., arXiv 2408.08252), with a lookahead or a learned value.

At every reverse step each design draws M candidate next states x_{t−1}^(1..M) from the pretrained
step (the network is called once for x_t; the M draws differ in the positions unmasked and the tokens
drawn), scores them with a value estimate v, and keeps candidate j with probability ∝ exp(v_j / α)
(α = 0: the best one, SVDD's default). The pretrained model is never changed, and the reward need not
be differentiable.

- :func:`svdd_pm`: v(x_{t−1}) ≈ r(x̂_0(x_{t−1})), the reward of the denoiser's posterior mean at
  the candidate (:func:`~mbo.guidance.values.lookahead`). The network output at the chosen candidate
  is the next step's prediction, so a step costs M network calls per design.
- :func:`svdd_rollout` (SVDD-RO): v(x_{t−1}) = r(x_0), x_0 one pretrained completion of the candidate
  (:func:`~mbo.guidance.values.rollout`). Each design carries the completion of its kept state, and
  one extra candidate per step unmasks the sampler's positions with that completion's tokens: a draw
  from the same pretrained conditional (the completion is a sample of p_pre(· | x_t)) whose value is
  already known, so the kept value never falls and the final design is the best sequence the design
  scored. For a reward whose informative region the posterior mean misses (an oracle that scores
  the most likely completion of a mostly masked state as infeasible), this is the value to use.
  Every completion is a whole sequence with a known reward, so by default it returns the n best
  distinct sequences that any design scored (``keep="best_scored"``) rather than each design's final
  state (``keep="final"``): a design that found a good region leaves several of its completions among
  them, at no reward call. Selecting at every first-hitting step costs each candidate a completion of
  about L/2 network calls at each of L steps, L² in all; by default a design selects at 32 evenly
  spaced steps (``selections``), the candidates running the pretrained steps between them, so the
  reward calls stay fixed and the network calls grow linearly as L grows past 32.
- :func:`svdd_mc`: v = v_φ, a small network regressed on pretrained rollouts first
  (:func:`~mbo.guidance.values.fit_value_network`); sampling then makes no reward call at all.

A candidate that unmasks nothing (possible with a grid sampler) is its parent: it keeps the parent's
prediction and value without a call, so the budgets below are exact for
:class:`~mbo.diffusion.samplers.FirstHittingSampler` and upper bounds for a grid.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from mbo.diffusion.masked import MaskedDiffusion
from mbo.diffusion.samplers import Sampler
from mbo.guidance.base import (
    AlignmentResult,
    CallCounter,
    Reward,
    all_masked,
    best_distinct,
    check_inputs,
    gumbel,
    refresh_log_probs,
    resolve_sampler,
    x0_log_probs,
)
from mbo.guidance.values import advance, fit_value_network, lookahead, predicted_value, rollout
from mbo.method_settings import check_method_settings
from mbo.progress import progress_bar

# (xs (B, L), changed (B,), parent log x̂ (B, L, V), parent value (B,)) -> (log x̂ or None, value (B,))
Evaluate = Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor | None, Tensor]]


def select_candidates(values: Tensor, alpha: float, generator: torch.Generator | None = None) -> Tensor:
    """Index ``(n,)`` of the kept candidate per row of ``values (n, M)``: P(j) ∝ exp(v_j / α).

    α = 0 is the argmax (ties: the first) and draws nothing from the generator; α > 0 draws one
    Gumbel per candidate (Gumbel-max), so α → 0 tends to the argmax (ties: a uniform draw among the
    best). The values enter relative to the row's best and in float64, so v/α never overflows into
    ±inf ties or NaN (1e-300 is 0 in float32: a tiny α once picked a candidate at random or the first).
    """
    if alpha == 0:
        return values.argmax(-1)
    v = values.double()
    scaled = (v - v.amax(-1, keepdim=True)) / float(alpha)  # <= 0, -inf at worst, never NaN
    return (scaled + gumbel(values.shape, values.device, generator).double()).argmax(-1)


def svdd_denoise(diffusion: MaskedDiffusion, xt: Tensor, log_x0: Tensor, value: Tensor, *,
                 candidates: int, alpha: float, sampler: Sampler, evaluate: Evaluate,
                 generator: torch.Generator | None, batch_size: int | None = None,
                 progress: bool = False) -> tuple[Tensor, Tensor]:
    """Complete the masked positions of ``xt`` with SVDD steps; the loop the SVDD methods share.

    Args:
        xt: LongTensor ``(n, L)``, MASK = V (all-MASK, or a partly masked design to re-denoise).
        log_x0: ``(n, L, V)``, log x̂_θ(xt).
        value: ``(n,)``, the value estimate of ``xt``.
        candidates: M draws per design per step.
        alpha: selection temperature (0: argmax).
        sampler: which positions a step unmasks; the loop runs the sampler's steps from its first
            (k = 0) and stops early once nothing is masked.
        evaluate: the value estimate of the ``n·M`` candidates (see :data:`Evaluate`); when it returns
            no log-probs, the kept candidates get theirs from the network (n rows per step).

    Returns:
        ``(designs (n, L), value (n,))``; the value of a fully unmasked design is what ``evaluate``
        said at its last change (with :func:`lookahead`, its reward).
    """
    n, m = xt.shape[0], candidates
    rows = torch.arange(n, device=xt.device) * m
    steps = sampler.num_steps(diffusion.length)
    for k in progress_bar(range(steps), desc="SVDD", progress=progress, leave=False):
        if not bool((xt == diffusion.mask_id).any()):
            break
        cand = xt.repeat_interleave(m, 0)  # (n·M, L): M copies of each design, side by side
        cand_log_x0 = log_x0.repeat_interleave(m, 0)
        unmask, _ = sampler.unmask(cand == diffusion.mask_id, k, diffusion.schedule, generator)
        xs = diffusion.step(cand, cand_log_x0, unmask, generator=generator).xs
        changed = unmask.any(-1)
        new_log_x0, new_value = evaluate(xs, changed, cand_log_x0, value.repeat_interleave(m))
        keep = rows + select_candidates(new_value.view(n, m), alpha, generator)
        xt, value = xs[keep], new_value[keep]
        if new_log_x0 is not None:
            log_x0 = new_log_x0[keep]
        else:
            log_x0 = refresh_log_probs(diffusion, xt, changed[keep], log_x0, batch_size)
    if bool((xt == diffusion.mask_id).any()):
        raise RuntimeError(f"SVDD: the sampler left masked positions after {steps} steps")
    return xt, value


def lookahead_evaluator(diffusion: MaskedDiffusion, counter: CallCounter,
                        batch_size: int | None) -> Evaluate:
    """The SVDD-PM value: r(x̂_0) of each changed candidate (:func:`~mbo.guidance.values.lookahead`)."""
    def evaluate(xs, changed, parent_log_x0, parent_value):
        return lookahead(diffusion, counter, xs, changed, parent_log_x0, parent_value, batch_size)

    return evaluate


@torch.no_grad()
def svdd_pm(diffusion: MaskedDiffusion, reward: Reward, n: int, *, candidates: int, alpha: float,
            sampler: Sampler | int | str | None = None, generator: torch.Generator | None = None,
            batch_size: int | None = None, progress: bool = False) -> AlignmentResult:
    """SVDD-PM: M pretrained candidates per step, kept by the reward of their posterior mean.

    Args:
        diffusion: the pretrained model (unchanged).
        reward: float one-hot ``(B, L, V)`` -> ``(B,)``; finite, need not be differentiable.
        n: designs.
        candidates: M, candidates per design per step.
        alpha: selection temperature in the reward's units; 0 keeps the best candidate.
        sampler: default the model's.
        generator: every random draw.
        batch_size: at most this many sequences per network / reward call (memory only).
        progress: a tqdm bar over steps.

    Returns:
        :class:`~mbo.guidance.base.AlignmentResult`: designs ``(n, L)`` and their exact rewards.

    Budget (S = the sampler's steps; FirstHittingSampler: S = L, exact): reward calls
    ≤ 1 + n·M·S; network calls ≤ 1 + n·M·(S − 1) (the all-MASK start is scored once for all designs;
    a clean candidate needs no network call).
    """
    where = "svdd_pm"
    n = check_inputs(diffusion, n, batch_size, where)
    check_method_settings(where, {"candidates": candidates, "alpha": alpha})
    m, alpha = int(candidates), float(alpha)
    sampler = resolve_sampler(diffusion, sampler)
    with CallCounter(diffusion, reward, batch_size) as counter:
        evaluate = lookahead_evaluator(diffusion, counter, batch_size)
        # The start is the same for every design: one network call and one reward call for all.
        x1 = all_masked(diffusion, 1)
        log_x0 = x0_log_probs(diffusion, x1, batch_size)
        value = predicted_value(counter, log_x0)
        xt, value = svdd_denoise(diffusion, x1.expand(n, -1), log_x0.expand(n, -1, -1), value.expand(n),
                                 candidates=m, alpha=alpha, sampler=sampler, evaluate=evaluate,
                                 generator=generator, batch_size=batch_size, progress=progress)
        return counter.result(xt, value)


@torch.no_grad()
def svdd_rollout(diffusion: MaskedDiffusion, reward: Reward, n: int, *, candidates: int, alpha: float,
                 keep: str, selections: int | None, sampler: Sampler | int | str | None = None,
                 generator: torch.Generator | None = None, batch_size: int | None = None,
                 progress: bool = False) -> AlignmentResult:
    """SVDD-RO: M pretrained candidates per selection, kept by the reward of one pretrained completion each.

    Args:
        diffusion, reward, n, sampler, generator, batch_size, progress: as in :func:`svdd_pm`.
        candidates: M, fresh candidates per design per selection (each costs one reward call); from
            the second selection on, the kept state's completion adds one more, free.
        alpha: selection temperature in the reward's units; 0 keeps the best candidate (ties: a
            fresh one, so a design keeps moving along a plateau of equal rewards).
        keep: which sequences come back. ``"best_scored"``: the n best distinct completions scored
            over the whole run, by all designs together, best first (with fewer than n distinct
            ones, e.g. in a tiny space, the designs' final states fill the rest); on Ehrlich's oracle
            it lifted the median from 0.375 to 0.562 in 5 of 5 seeds at the same calls, for a mean
            pairwise distance of 25.8 instead of 30.6 of 32 letters. ``"final"``: each design's
            kept state, n draws of SVDD-RO's own law (the one to use with α > 0 when the designs
            should be draws aimed at p_pre·exp(r/α) rather than the run's best).
        selections: how many times a design picks among candidates, at evenly spaced sampler steps
            (each candidate runs the pretrained steps up to the next selection, one at a time, so it
            stays an exact draw of the prior); None or ≥ the sampler's steps S: at every step. Fixed
            as L grows, it keeps the reward calls constant and the network calls linear in L, where
            selecting at every first-hitting step costs L reward calls and ~L²/2 network calls per
            candidate.

    Returns:
        :class:`~mbo.guidance.base.AlignmentResult`: designs ``(n, L)`` and their exact rewards (the
        value of a clean state is its own reward).

    Budget (K = min(selections, S), S = the sampler's steps; exact for the first-hitting sampler,
    where S = L): reward calls = n·M·K; network calls = 1 + n·M·Σ_j (s_j + r_j − 1) + n·(K − 2),
    where a candidate of selection j runs s_j ≈ S/K steps and leaves r_j masked positions to its
    completion, and the last term is the kept completion's candidate from the second selection to the
    last but one: about n·M·L·(1 + K/2) at K < L, n·M·L²/2 at K = S = L.
    """
    where = "svdd_rollout"
    n = check_inputs(diffusion, n, batch_size, where)
    check_method_settings(where, {"candidates": candidates, "alpha": alpha, "keep": keep,
                                  "selections": selections})
    m, alpha = int(candidates), float(alpha)
    sampler = resolve_sampler(diffusion, sampler)
    mask = diffusion.mask_id
    with CallCounter(diffusion, reward, batch_size) as counter:
        x = all_masked(diffusion, n)
        log_x0 = x0_log_probs(diffusion, x[:1], batch_size).expand(n, -1, -1)
        completion = value = None
        # The n best distinct completions scored so far (kept merged, so memory stays O(n·M)).
        best, best_value = x[:0], torch.empty(0, device=x.device)
        steps = sampler.num_steps(diffusion.length)
        starts = selection_starts(steps, selections)
        for j in progress_bar(range(len(starts)), desc="SVDD-RO", progress=progress, leave=False):
            if not bool((x == mask).any()):
                break
            k, stop = starts[j], starts[j + 1] if j + 1 < len(starts) else steps
            cand = x.repeat_interleave(m, 0)  # (n·M, L): M copies of each design, side by side
            xs, xs_log_x0 = advance(diffusion, cand, log_x0.repeat_interleave(m, 0), sampler, k, stop,
                                    generator, batch_size)
            done = rollout(diffusion, xs, xs_log_x0, sampler, stop, generator, batch_size)
            scores = counter.score(done)
            if keep == "best_scored":
                best, best_value = best_distinct(torch.cat([best, done]), torch.cat([best_value, scores]), n)
            parts = [t.view(n, m, *t.shape[1:]) for t in (xs, xs_log_x0, done, scores)]
            if completion is not None:
                # The kept completion's tokens at the sampler's positions: a draw from the pretrained
                # steps whose completion (and value) is already known.
                inc = x
                for i in range(k, stop):
                    follow, _ = sampler.unmask(inc == mask, i, diffusion.schedule, generator)
                    inc = torch.where(follow, completion, inc)
                inc_log_x0 = refresh_log_probs(diffusion, inc, (inc != x).any(-1), log_x0, batch_size)
                parts = [torch.cat([p, q[:, None]], 1)
                         for p, q in zip(parts, (inc, inc_log_x0, completion, value), strict=True)]
            states, logs, completions, values = parts
            kept = select_candidates(values, alpha, generator)
            rows = torch.arange(n, device=x.device)
            x, log_x0 = states[rows, kept], logs[rows, kept]
            completion, value = completions[rows, kept], values[rows, kept]
        if bool((x == mask).any()):
            raise RuntimeError(f"{where}: the sampler left masked positions after {steps} steps")
        if keep == "best_scored":
            # A final state is clean, its own completion: one of the scored sequences, so filling with
            # the best of them repeats rows of ``best`` (fewer than n distinct sequences were scored).
            fill = value.argsort(descending=True, stable=True)[: n - len(best)]
            x, value = torch.cat([best, x[fill]]), torch.cat([best_value, value[fill]])
        return counter.result(x, value)


def selection_starts(steps: int, selections: int | None) -> list[int]:
    """The sampler steps (of ``steps``) at which SVDD-RO selects: ``selections`` evenly spaced from 0,
    every step when None or ≥ ``steps``."""
    if selections is None or selections >= steps:
        return list(range(steps))
    return [j * steps // selections for j in range(selections)]  # distinct: steps > selections


@torch.no_grad()
def svdd_mc(diffusion: MaskedDiffusion, reward: Reward, n: int, *, candidates: int, alpha: float,
            rollouts: int, value_steps: int, value_batch_size: int, value_lr: float, value_dim: int,
            value_depth: int, sampler: Sampler | int | str | None = None,
            generator: torch.Generator | None = None, batch_size: int | None = None,
            progress: bool = False) -> AlignmentResult:
    """SVDD-MC: SVDD with a value network v_φ(x_t) ≈ E[r(x_0) | x_t] fitted on pretrained rollouts.

    Args:
        diffusion, reward, n, candidates, alpha, sampler, generator, progress: as in :func:`svdd_pm`.
        batch_size: as in :func:`svdd_pm`, and also the rollouts per sampler call when fitting v_φ: a
            different ``batch_size`` draws other rollouts (from the same distribution), hence another
            v_φ and other designs, as in :func:`~mbo.guidance.best_of_n.best_of_n`.
        rollouts: pretrained trajectories to fit v_φ on (each costs one reward call).
        value_steps, value_batch_size, value_lr: Adam steps, states per step, learning rate.
        value_dim, value_depth: the value network's width and blocks (:class:`ValueNetwork`).

    Returns:
        :class:`~mbo.guidance.base.AlignmentResult`; ``info`` has ``value_loss`` (standardized MSE of
        the fit, 1 = no better than a constant) and ``value_calls`` (rows through v_φ).

    Budget (S = the sampler's steps): reward calls = rollouts + n (the designs' final scores);
    network calls = rollouts·S (the rollouts) + ≤ 1 + n·(S − 1) (the kept candidates' predictions);
    value-network calls ≤ 1 + n·M·S.
    """
    where = "svdd_mc"
    n = check_inputs(diffusion, n, batch_size, where)
    check_method_settings(where, {"candidates": candidates, "alpha": alpha, "rollouts": rollouts,
                                  "value_steps": value_steps, "value_batch_size": value_batch_size,
                                  "value_lr": value_lr, "value_dim": value_dim, "value_depth": value_depth})
    m, alpha = int(candidates), float(alpha)
    sampler = resolve_sampler(diffusion, sampler)
    with CallCounter(diffusion, reward, batch_size) as counter:
        net, fit = fit_value_network(diffusion, counter.reward, rollouts=rollouts, steps=value_steps,
                                     batch_size=value_batch_size, lr=value_lr, dim=value_dim,
                                     depth=value_depth, sampler=sampler, generator=generator,
                                     chunk=batch_size, progress=progress)
        value_calls = 0

        def value_of(x: Tensor) -> Tensor:
            nonlocal value_calls
            value_calls += len(x)
            size = batch_size or max(len(x), 1)
            return torch.cat([net(diffusion.encode(c)) for c in x.split(size)])

        def evaluate(xs, changed, parent_log_x0, parent_value):
            value = parent_value.clone()
            if bool(changed.any()):
                value[changed] = value_of(xs[changed])
            return None, value

        x1 = all_masked(diffusion, 1)
        log_x0 = x0_log_probs(diffusion, x1, batch_size).expand(n, -1, -1)
        value = value_of(x1).expand(n)
        xt, _ = svdd_denoise(diffusion, x1.expand(n, -1), log_x0, value, candidates=m, alpha=alpha,
                             sampler=sampler, evaluate=evaluate, generator=generator,
                             batch_size=batch_size, progress=progress)
        return counter.result(xt, counter.score(xt), value_loss=fit["value_loss"],
                              value_calls=value_calls)


