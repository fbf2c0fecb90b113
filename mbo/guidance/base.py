"""What every alignment method returns, and the bookkeeping they share: call counting, checks, chunking.

All methods of :mod:`mbo.guidance` steer a pretrained :class:`~mbo.diffusion.masked.MaskedDiffusion`
towards p*(x) ∝ p_pre(x)·exp(r(x)/α) at sampling time, without training the diffusion model. Their
cost is counted in two currencies, because the two can differ by orders of magnitude in price:

- reward calls: sequences scored by the reward (a lab assay, an oracle, a reward model);
- network calls: sequences passed through the denoiser (rows of its input batch).

A :class:`CallCounter` counts both inside one method run: rewards through :meth:`CallCounter.score`
and :meth:`CallCounter.reward`, the denoiser with a forward hook (so every path into the network is
counted, the model's own :meth:`~mbo.diffusion.masked.MaskedDiffusion.sample` included).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from mbo.caller_state import evaluating
from mbo.data.alphabet import one_hot
from mbo.diffusion.masked import LOG_ZERO, MaskedDiffusion, inference_parts
from mbo.diffusion.samplers import Sampler, get_sampler
from mbo.method_settings import check_count

Reward = Callable[[Tensor], Tensor]
"""Float one-hot ``(B, L, V)`` -> ``(B,)``: hard one-hots, soft ones (differentiated) in gradient guidance."""


@dataclass
class AlignmentResult:
    """The designs of one method run and what they cost.

    Attributes:
        designs: LongTensor ``(n, L)``, tokens in ``[0, V)``, on the diffusion model's device.
        rewards: ``(n,)``, the reward of each returned design (float32).
        reward_calls: sequences scored by the reward (the final designs' scores included).
        network_calls: sequences passed through the denoiser (rows of its forward batches).
        seconds: wall time of the run.
        info: method-specific diagnostics (plain numbers), e.g. SMC's resampling rate.
    """

    designs: Tensor
    rewards: Tensor
    reward_calls: int
    network_calls: int
    seconds: float
    info: dict[str, float] = field(default_factory=dict)


class CallCounter:
    """Counts reward and denoiser calls of one method run; use as a context manager.

    Args:
        diffusion: the pretrained model; a forward hook on ``diffusion.denoiser`` counts its rows
            while the context is open, and the model is in eval mode meanwhile (its modes restored
            on exit).
        reward: the reward callable the method was given.
        batch_size: at most this many sequences per reward call (None: all at once); bounds memory,
            never changes a score.
    """

    def __init__(self, diffusion: MaskedDiffusion, reward: Reward, batch_size: int | None = None) -> None:
        self.diffusion = diffusion
        self._reward = reward
        self.batch_size = batch_size
        self.reward_calls = 0
        self.network_calls = 0
        self._start = 0.0
        self._hook = None
        self._modes = None

    def __enter__(self) -> CallCounter:
        def count(module, args, output):
            self.network_calls += int(args[0].shape[0])

        self._hook = self.diffusion.denoiser.register_forward_hook(count)
        # The method reads the network as deterministic (dropout off) whatever mode the caller left it
        # in; the caller's mode is restored on exit.
        self._modes = evaluating(*self.diffusion.policy_networks())
        self._modes.__enter__()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self._hook.remove()
        self._modes.__exit__(None, None, None)

    def reward(self, x: Tensor) -> Tensor:
        """The reward of float (soft) one-hot ``x (B, L, V)``: ``(B,)``, counted, gradients kept."""
        out = check_reward_output(self._reward(x), x)
        self.reward_calls += int(x.shape[0])
        return out

    @torch.no_grad()
    def score(self, x: Tensor) -> Tensor:
        """The reward of designs ``x`` as float32 ``(B,)`` on ``x``'s device.

        Args:
            x: LongTensor tokens ``(B, L)``, or float (soft) one-hots ``(B, L, V)``.

        Raises:
            ValueError: the reward is not finite somewhere (the methods compare, subtract and
                exponentiate rewards; map infeasible designs to a large negative finite number).
        """
        v = self.diffusion.vocab_size
        size = self.batch_size or max(len(x), 1)
        parts = [self.reward(one_hot(chunk, v) if chunk.dim() == 2 else chunk).detach().float().to(x.device)
                 for chunk in x.split(size)]
        out = torch.cat(parts) if parts else torch.empty(0, device=x.device)
        return check_finite(out)

    def result(self, designs: Tensor, rewards: Tensor, **info: float) -> AlignmentResult:
        """An :class:`AlignmentResult` with the counts so far and the time since entering."""
        return AlignmentResult(designs=designs, rewards=rewards, reward_calls=self.reward_calls,
                               network_calls=self.network_calls,
                               seconds=time.perf_counter() - self._start, info=dict(info))


# ------------------------------------------------------------------------------------------- checks
def check_reward_output(out, x: Tensor) -> Tensor:
    """``out``, the reward of ``x (B, L, V)``, if it is a tensor ``(B,)``; else a ValueError. A reward
    of shape (B, 1) or a scalar would broadcast against the sampler's (B,) terms into wrong numbers."""
    if not isinstance(out, Tensor) or out.shape != (x.shape[0],):
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"reward must map (B, L, V) to (B,); got {got} for B = {x.shape[0]}")
    return out


def check_finite(out: Tensor) -> Tensor:
    """``out``, rewards ``(B,)``, if every one is finite; else a ValueError saying how many are not."""
    bad = ~torch.isfinite(out.detach())
    if bool(bad.any()):
        raise ValueError(f"reward is not finite for {int(bad.sum())} of {len(out)} sequences; map "
                         f"infeasible designs (-inf) to a large negative finite number")
    return out


def checked_reward(reward: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """``reward`` with its output checked by :func:`check_reward_output` and :func:`check_finite`
    (extra arguments, such as a condition, pass through). The fine-tuners subtract, average and
    exponentiate rewards: one -inf or NaN made every one of them stop with "fine-tuning diverged"
    (or, RWR, silently zero a sample's weight), blaming the training instead of the reward."""
    def checked(x: Tensor, *args) -> Tensor:
        return check_finite(check_reward_output(reward(x, *args), x))
    return checked


def check_inputs(diffusion: MaskedDiffusion, n, batch_size, where: str) -> int:
    """Check what every method takes; returns ``n``."""
    if not isinstance(diffusion, MaskedDiffusion):
        raise ValueError(f"{where}: diffusion must be a MaskedDiffusion, got {type(diffusion).__name__}")
    if batch_size is not None:
        check_count(batch_size, "batch_size", where)
    return check_count(n, "n", where)


def resolve_sampler(diffusion: MaskedDiffusion, sampler: Sampler | int | str | None) -> Sampler:
    """The given sampler, else the model's default."""
    return diffusion.sampler if sampler is None else get_sampler(sampler)


def gumbel(shape: torch.Size | tuple[int, ...], device: torch.device,
           generator: torch.Generator | None) -> Tensor:
    """Standard Gumbel noise from ``generator``: argmax(log w + G) is a draw ∝ w (Gumbel-max)."""
    u = torch.rand(shape, dtype=torch.float32, device=device, generator=generator)
    return -torch.log((-torch.log(u.clamp_min(1e-20))).clamp_min(1e-20))


def best_distinct(xs: Tensor, scores: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """The ``n`` highest-scoring distinct rows of ``xs``, best first (fewer if fewer are distinct).

    Args:
        xs: LongTensor ``(B, L)``; a row may repeat (it then keeps its highest score).
        scores: ``(B,)``.

    Returns:
        ``(rows (m, L), their scores (m,))``, m = min(n, distinct rows); ties in the order of the rows'
        tokens, so the pick is deterministic.
    """
    rows, inverse = torch.unique(xs, dim=0, return_inverse=True)
    best = torch.full((len(rows),), -torch.inf, dtype=scores.dtype, device=scores.device)
    best = best.scatter_reduce(0, inverse, scores, "amax")
    order = torch.sort(best, descending=True, stable=True).indices[:n]
    return rows[order], best[order]


# -------------------------------------------------------------------------------- network helpers
def all_masked(diffusion: MaskedDiffusion, n: int) -> Tensor:
    """The start state of the reverse process: LongTensor ``(n, L)`` of MASK."""
    return torch.full((n, diffusion.length), diffusion.mask_id, dtype=torch.long, device=diffusion.device)


def clean_log_probs(diffusion: MaskedDiffusion, x: Tensor) -> Tensor:
    """log x̂ of fully unmasked ``x (B, L)`` without the network: carry-over only, ``(B, L, V)``
    (0 at the token, ``LOG_ZERO`` elsewhere, as :meth:`MaskedDiffusion.x0_log_probs` gives it)."""
    hot = torch.nn.functional.one_hot(x, diffusion.vocab_size).bool()
    # float32 as the network's log-probs are (a scalar where() takes torch's default dtype).
    return torch.zeros(hot.shape, dtype=torch.float32, device=x.device).masked_fill(~hot, LOG_ZERO)


def x0_log_probs(diffusion: MaskedDiffusion, xt: Tensor, batch_size: int | None) -> Tensor:
    """The denoiser's log x̂_θ(x_t) ``(B, L, V)`` for tokens ``xt (B, L)``, at most ``batch_size`` rows
    at a time, in the parts :func:`~mbo.diffusion.masked.inference_parts` allows (the network is
    deterministic at sampling time, so chunking never changes the result)."""
    chunks = [chunk[p] for chunk in (xt.split(batch_size) if batch_size else (xt,))
              for p in inference_parts(len(chunk), diffusion.length, xt.device)]
    parts = [diffusion.policy_log_probs(diffusion.encode(chunk)) for chunk in chunks]
    if not parts:
        return torch.empty(0, diffusion.length, diffusion.vocab_size, device=xt.device)
    return torch.cat(parts)


def refresh_log_probs(diffusion: MaskedDiffusion, xs: Tensor, changed: Tensor, parent: Tensor,
                      batch_size: int | None) -> Tensor:
    """log x̂(x_s) ``(B, L, V)`` after a step, calling the network only where it must.

    Args:
        xs: LongTensor ``(B, L)``, the states after the step.
        changed: bool ``(B,)``, rows where the step unmasked something (elsewhere x_s = x_t, so the
            parent's prediction stands).
        parent: ``(B, L, V)``, log x̂(x_t) of the states before the step.

    Rows that changed and are now fully unmasked need no network (carry-over only).
    """
    out = parent.clone()
    done = ~(xs == diffusion.mask_id).any(-1)
    net = changed & ~done
    if bool(net.any()):
        out[net] = x0_log_probs(diffusion, xs[net], batch_size)
    fin = changed & done
    if bool(fin.any()):
        out[fin] = clean_log_probs(diffusion, xs[fin])
    return out
