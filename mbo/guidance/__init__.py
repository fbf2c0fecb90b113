"""Inference-time alignment of a pretrained masked diffusion model to a reward, without training it.

Every method targets p*(x) ∝ p_pre(x)·exp(r(x)/α) by steering the pretrained sampler, and has one
signature: ``method(diffusion, reward, n, *, <settings>, generator=None, progress=False)`` ->
:class:`AlignmentResult` (designs, their rewards, reward and network calls, seconds). The reward maps
float one-hot ``(B, L, V)`` to ``(B,)``; only gradient guidance needs it differentiable. Settings have
no Python defaults: they live in the ``method`` config group (``mbo/conf/method/*.yaml``).

- :func:`best_of_n`: N pretrained samples per design, keep the best.
- :func:`svdd_pm` / :func:`svdd_rollout` / :func:`svdd_mc`: SVDD (arXiv 2408.08252), M candidates per
  step kept by a lookahead reward, the reward of a pretrained completion, or a learned value.
- :func:`smc`: sequential Monte Carlo with K particles per design (arXiv 2501.09685).
- :func:`gradient_guidance`: tilt each step by the reward's gradient (:func:`reward_guidance` hook).
- :func:`iterative_refinement`: re-mask and re-denoise with SVDD, keep improvements (arXiv 2502.14944).
"""

from mbo.guidance.base import AlignmentResult, CallCounter
from mbo.guidance.best_of_n import best_of_n
from mbo.guidance.gradient import gradient_guidance, reward_guidance
from mbo.guidance.refinement import iterative_refinement
from mbo.guidance.smc import smc
from mbo.guidance.svdd import select_candidates, svdd_denoise, svdd_mc, svdd_pm, svdd_rollout
from mbo.guidance.values import ValueNetwork, fit_value_network, lookahead, rollout

__all__ = [
    "AlignmentResult",
    "CallCounter",
    "ValueNetwork",
    "best_of_n",
    "fit_value_network",
    "gradient_guidance",
    "iterative_refinement",
    "lookahead",
    "reward_guidance",
    "rollout",
    "select_candidates",
    "smc",
    "svdd_denoise",
    "svdd_mc",
    "svdd_pm",
    "svdd_rollout",
]
