"""Gradient guidance for a differentiable reward: tilt each step's token distribution by ∇r(x̂_0).

With x̂_0 = exp(log x̂_θ(x_t)) (soft, carry-over applied), each step draws its tokens from
softmax(log x̂_θ(x_t) + λ·∂r(x̂_0)/∂x̂_0): the first-order (Taylor) estimate of how r changes when a
position takes each token, a differentiable stand-in for the soft value, λ = scale/α. One reward
gradient per step and no extra network call; the reward must accept soft one-hots and be
differentiable in them. :func:`reward_guidance` is the hook any sampler can take (CTRL's classifier
guidance is this hook with r = log p̂(c | x) and λ = γ).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

from mbo.diffusion.masked import Guidance, MaskedDiffusion
from mbo.diffusion.policy import LOG_ZERO
from mbo.diffusion.samplers import Sampler
from mbo.guidance.base import AlignmentResult, CallCounter, Reward, check_inputs, resolve_sampler
from mbo.method_settings import check_method_settings


def reward_guidance(reward: Reward, strength: float) -> Guidance:
    """A :data:`~mbo.diffusion.masked.Guidance` hook: ``log x̂ -> log_softmax(log x̂ + λ·∇r(x̂))``.

    Args:
        reward: differentiable map float (soft) one-hot ``(B, L, V)`` -> ``(B,)``.
        strength: λ; 0 returns the prediction unchanged (and never calls the reward).

    Only the tokens the policy can draw (log-prob above ``LOG_ZERO / 2``) are tilted and renormalized;
    the others stay at ``LOG_ZERO``, however strong the tilt: a constraint's cut letter, a min-p cut
    and the other tokens of a carried-over position are never raised. (Tilting every token and
    renormalizing, a tilt over 1e4 nats, e.g. α = 1e-4 or a reward on a 1e6 scale, pushed the drawable
    tokens below ``LOG_ZERO`` and the sampler drew a cut letter.) The tilt is taken relative to the
    best drawable token's gradient, so an overflowing ``strength`` (α → 0) gives the argmax of the
    gradient, never NaN.

    Raises (when called):
        ValueError: the reward is not differentiable in its input, or its gradient is not finite.
    """
    if strength == 0:
        return lambda xt, log_x0, rows: log_x0

    def guided(xt: Tensor, log_x0: Tensor, rows: Tensor) -> Tensor:
        # Out of a caller's torch.inference_mode() too: there enable_grad() alone records no graph, and
        # a differentiable reward was refused as "not differentiable".
        with torch.inference_mode(False), torch.enable_grad():
            x0_hat = log_x0.detach().exp().requires_grad_(True)
            out = reward(x0_hat)
            if not out.requires_grad:
                raise ValueError("gradient guidance needs a reward differentiable in its (soft one-hot) "
                                 "input; use svdd_pm, smc or best_of_n for a black-box reward")
            (grad,) = torch.autograd.grad(out.sum(), x0_hat, allow_unused=True)
        if grad is None:  # the reward ignores its input: nothing to tilt
            return log_x0
        if not bool(torch.isfinite(grad).all()):
            raise ValueError("gradient guidance: the reward's gradient is not finite at the posterior mean "
                             "(soft one-hots); use svdd_pm, smc or best_of_n for such a reward")
        return tilted(log_x0, grad, strength)

    return guided


def tilted(log_x0: Tensor, grad: Tensor, strength: float) -> Tensor:
    """``log_softmax(log x̂ + λ·grad)`` over the tokens ``log_x0 (B, L, V)`` can draw, ``LOG_ZERO`` at the
    others; ``grad (B, L, V)``, λ = ``strength`` > 0 (any size: it is capped at the dtype's largest
    number, and the tilt is ≤ 0, so it overflows only to -inf, never to NaN)."""
    drawable = log_x0 > LOG_ZERO / 2
    grad = grad.to(log_x0.dtype)
    top = torch.where(drawable, grad, -torch.inf).amax(-1, keepdim=True)
    lam = min(float(strength), torch.finfo(log_x0.dtype).max)
    tilt = lam * torch.where(drawable, grad - top, 0.0)  # <= 0; 0 at the best drawable token
    out = torch.log_softmax(torch.where(drawable, log_x0 + tilt, -torch.inf), dim=-1)
    return torch.where(drawable, out.clamp_min(LOG_ZERO), LOG_ZERO)


@torch.no_grad()
def gradient_guidance(diffusion: MaskedDiffusion, reward: Reward, n: int, *, alpha: float, scale: float,
                      sampler: Sampler | int | str | None = None, generator: torch.Generator | None = None,
                      batch_size: int | None = None, progress: bool = False) -> AlignmentResult:
    """Pretrained sampling with every step tilted by (scale/α)·∇r(x̂_0) (:func:`reward_guidance`).

    Args:
        diffusion: the pretrained model (unchanged).
        reward: differentiable float (soft) one-hot ``(B, L, V)`` -> ``(B,)``.
        n: designs.
        alpha: temperature of the target p* ∝ p_pre·exp(r/α), in the reward's units (> 0).
        scale: multiplies the first-order tilt ∇r/α (it under- or overshoots the exact soft value;
            0 is plain pretrained sampling, draw for draw).
        sampler, generator, progress: as in :func:`~mbo.guidance.svdd.svdd_pm`.
        batch_size: at most this many sequences per reward call when scoring the final designs.

    Returns:
        :class:`~mbo.guidance.base.AlignmentResult` with the designs' rewards.

    Budget (S = the sampler's steps): reward calls ≤ n·S gradient evaluations (none when scale = 0) + n
    final scores; network calls ≤ n·S, as plain sampling (a step skips the designs that unmask
    nothing; = with the first-hitting sampler).
    """
    where = "gradient_guidance"
    n = check_inputs(diffusion, n, batch_size, where)
    check_method_settings(where, {"alpha": alpha, "scale": scale})
    alpha = float(alpha)
    sampler = resolve_sampler(diffusion, sampler)
    with CallCounter(diffusion, reward, batch_size) as counter:
        hook = reward_guidance(counter.reward, float(scale) / alpha)
        designs = diffusion.sample(n, sampler=sampler, generator=generator, progress=progress,
                                   guidance=hook)
        return counter.result(designs, counter.score(designs))


def tilt_of(method: Callable | None, reward: Reward) -> Guidance | None:
    """The per-step tilt a bound :func:`gradient_guidance` (``functools.partial``, as Hydra's
    ``_partial_`` builds it) applies for ``reward``, as a hook any sampling loop can take (a campaign's
    local share completes re-masked designs with it); None for any other method."""
    if not (isinstance(method, functools.partial) and method.func is gradient_guidance):
        return None
    kw = method.keywords
    check_method_settings("gradient_guidance", kw)
    return reward_guidance(reward, float(kw["scale"]) / float(kw["alpha"]))
