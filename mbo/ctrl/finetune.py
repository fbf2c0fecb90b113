"""CTRL fine-tuning: reward log p̂(c | x), KL weight 1 to the pretrained model, c drawn per sample.

With reward γ·log p̂(c | x) and KL weight 1 the optimum for each condition is
p*(x | c) ∝ p_pre(x) · p̂(c | x)^γ (γ = 1: the Bayes posterior under p_pre). Several factors multiply
(their log-probs add), assuming they are conditionally independent given x; so each factor's
classifier may be trained on a different labeled file.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from mbo.caller_state import trains
from mbo.ctrl.conditional import make_conditional
from mbo.ctrl.conditions import ConditionSampler, Factor
from mbo.data.alphabet import one_hot
from mbo.diffusion.masked import MaskedDiffusion
from mbo.diffusion.samplers import Sampler


class ConditionLogProb(nn.Module):
    """γ · Σ_f log p̂_f(c_f | x) over the factors a condition names (null factors add 0).

    Args:
        factors: the factors, in encoding order.
        classifiers: factor name -> module mapping ``(B, L, V)`` to log-probs ``(B, C_f)``.
        gamma: guidance strength γ.
    """

    def __init__(self, factors: Sequence[Factor], classifiers: Mapping[str, nn.Module],
                 gamma: float = 1.0) -> None:
        super().__init__()
        missing = [f.name for f in factors if f.name not in classifiers]
        if missing:
            raise ValueError(f"no classifier for factor(s) {missing}")
        self.factors = list(factors)
        self.classifiers = nn.ModuleList(classifiers[f.name] for f in self.factors)
        self.gamma = float(gamma)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        """``x (B, L, V)`` soft one-hot, ``cond`` LongTensor ``(B, F)`` -> ``(B,)``."""
        total = torch.zeros(x.shape[0], device=x.device)
        for j, (f, clf) in enumerate(zip(self.factors, self.classifiers, strict=True)):
            named = cond[:, j] != f.null
            if named.any():
                logp = clf(x)  # (B, C_f)
                picked = logp.gather(1, cond[:, j].clamp(max=f.num_classes - 1)[:, None]).squeeze(1)
                total = total + torch.where(named, picked, 0.0)
        return self.gamma * total


def nfe_backprop(iterations: int, batch_size: int, sampling_steps: int, backprop_steps: int) -> int:
    """Denoiser evaluations (rows × passes) of a reward-backprop run: model and reference forward at
    every step, plus a backward (counted as 2 forwards) through the last ``backprop_steps``."""
    return iterations * batch_size * (2 * sampling_steps + 2 * min(backprop_steps, sampling_steps))


def nfe_vidd(iterations: int, batch_size: int, sampling_steps: int, states_per_trajectory: int,
             vocab_size: int) -> int:
    """Denoiser evaluations (rows × passes) of a VIDD run, at most: model and reference at every step
    of the roll-ins; per target state the prior's step, one completion per token tried (≤ V), and a
    forward and backward (2) of the model."""
    return iterations * batch_size * (2 * sampling_steps + states_per_trajectory * (vocab_size + 3))


@trains(frozen_args=("pretrained", "reward"))
def finetune_ctrl(pretrained: MaskedDiffusion, reward: ConditionLogProb, conditions: ConditionSampler,
                  finetune: Callable[..., tuple[MaskedDiffusion, list[dict]]], *, seed: int = 0,
                  progress: bool = False) -> tuple[MaskedDiffusion, list[dict]]:
    """Fine-tune a conditional copy of ``pretrained`` towards p_pre(x) · p̂(c | x)^γ for every c.

    Args:
        pretrained: the unconditional model (unchanged; the KL reference).
        reward: the condition log-prob (γ inside).
        conditions: draws the conditions of each batch (a user's list or the label marginals).
        finetune: a fine-tuner of :mod:`mbo.finetune` with its settings bound (the ``ctrl``
            config group's ``finetune``), called as ``finetune(model, reward, alpha=1,
            condition_sampler=…, seed=…, progress=…)``: the KL weight is fixed to 1.

    Returns:
        The conditional model (``sample(n, cond=...)`` with ``cond`` LongTensor ``(n, F)``) and the
        per-iteration history.
    """
    start = make_conditional(pretrained, [f.num_classes for f in reward.factors])
    if any(t.device != pretrained.device for t in (*reward.parameters(), *reward.buffers())):
        # A copy: Module.to moves in place, which left the caller's classifiers on the prior's device.
        reward = copy.deepcopy(reward).to(pretrained.device)
    return finetune(start, reward, alpha=1.0, condition_sampler=conditions, seed=seed, progress=progress)


@torch.no_grad()
def ctrl_objective(model: MaskedDiffusion, pretrained: MaskedDiffusion, reward: ConditionLogProb,
                   code: Tensor, pretrained_reward: Tensor, n: int = 128,
                   sampler: Sampler | int | str | None = None,
                   generator: torch.Generator | None = None) -> dict[str, float]:
    """How far a CTRL model is from its own optimum for one condition.

    CTRL maximizes J(θ) = E_θ[γ·log p̂(c|x)] − KL(p_θ ‖ p_pre); J ≤ log Z = log E_pre[p̂(c|x)^γ], with
    equality only at the target p_pre·p̂^γ / Z, and log Z − J = KL(p_θ ‖ target) (trajectory
    level, so it bounds the KL of the samples). Reward and KL are estimated from ``n`` trajectories
    of ``sampler`` (the KL exactly per step), log Z from pretrained samples.

    Args:
        model: the conditional model (``sample(..., cond=...)``).
        pretrained: the reference p_pre.
        reward: the reward the model was trained on, γ·Σ log p̂(c | x) (γ inside).
        code: the condition, LongTensor ``(F,)``.
        pretrained_reward: ``(N,)`` that reward on N samples of the pretrained model.

    Returns:
        ``objective`` J, ``kl`` (mean trajectory KL to p_pre), ``log_z`` and ``gap`` = log Z − J.
    """
    rows = code.to(model.device).expand(n, -1)
    traj = model.sample(n, sampler=sampler, generator=generator, ref=pretrained, return_trajectory=True,
                        cond=rows)
    r = reward(one_hot(traj.x0, model.vocab_size), rows)
    kl = traj.kls.sum(0)
    objective = (r - kl).mean().item()
    log_z = (torch.logsumexp(pretrained_reward.double(), 0) - math.log(len(pretrained_reward))).item()
    return {"objective": objective, "kl": kl.mean().item(), "log_z": log_z, "gap": log_z - objective}
