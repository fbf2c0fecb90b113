"""Masked discrete diffusion (MDLM-style) around a denoiser network, with a swappable schedule and sampler.

Tokens are ``0..V-1``; MASK is token ``V``. At time ``t`` every token is masked independently with
probability 1 − α_t (:mod:`mbo.diffusion.schedule`). The denoiser predicts a distribution x̂_θ(x_t)
over the V real tokens per position; unmasked positions are carried over unchanged. A reverse step
unmasks some masked positions (which ones: :mod:`mbo.diffusion.samplers`, policy-free) and draws their
tokens from x̂_θ(x_t) (the policy).

The network is a separate object (lucidrains/denoising-diffusion-pytorch style): ``loss = diffusion(x0)``,
``diffusion.sample(n)``. As in diffusers' schedulers, :meth:`MaskedDiffusion.step` takes the
denoiser's log-probs rather than calling the network, so one loop serves plain sampling, guidance
(a hook that edits the log-probs, :data:`Guidance`), exact per-step KLs to a reference model, and the
inference-time and fine-tuning algorithms built on single steps.

Exactness: with the true conditionals the continuous-time NELBO equals −log p(x_0) (every unmasking
order factorizes the joint), so NELBO minus the data's entropy is the model's distance from the truth.
"""

from __future__ import annotations

import functools
import inspect
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mbo.caller_state import evaluating
from mbo.diffusion.policy import LOG_ZERO, PolicyTransform, on_support
from mbo.diffusion.samplers import Sampler, get_sampler
from mbo.diffusion.schedule import Schedule, get_schedule
from mbo.progress import progress_bar

DEFAULT_SAMPLING_STEPS = 32
"""Grid steps of :meth:`MaskedDiffusion.sample` unless told: with L = 8 two given positions unmask in
the same step (and so are drawn independently) with probability 1/32."""

# Position pairs per denoiser pass: the attention scores are (rows, heads, L, L), so a pass over many
# long sequences goes in parts of at most this many rows × L² (a part's score tensor is 256 MiB with 4
# heads). Sampling 1,024 candidates at L = 300 in one pass would hold 1.4 GiB per score tensor.
PAIRS_PER_PASS = 1 << 24


def sequence_parts(n: int, length: int, rows_each: int = 1) -> list[slice]:
    """Slices of ``n`` sequences of ``length`` to pass through the denoiser together, each sequence
    bringing ``rows_each`` rows (a trajectory's steps, a relaxed chain's steps with gradients): each
    part brings at most :data:`PAIRS_PER_PASS` position pairs (and at least one sequence)."""
    return _slices(n, PAIRS_PER_PASS // (max(1, rows_each) * length * length))


def _slices(n: int, per: int) -> list[slice]:
    """``n`` rows in consecutive slices of ``per`` (at least 1)."""
    per = max(1, per)
    return [slice(i, min(i + per, n)) for i in range(0, n, per)]


# Tokens (rows × L) per CPU pass without gradient. On 2 threads a pass of 2k–16k tokens cost 3.7–5.7 µs
# per token (one noisy cell aside) and one of 64k–128k tokens 6.1–10.1, at L = 8 to 128
# (experiments/results/denoiser_parts_tokens.md); the large passes also spent much more time in the
# kernel, likely allocating their activations afresh. A GPU is left to the memory bound alone, since it
# gains from every row it is given.
TOKENS_PER_PASS = 1 << 14


def inference_parts(n: int, length: int, device: torch.device) -> list[slice]:
    """:func:`sequence_parts` for a deterministic forward pass without gradient (sampling, ELBOs,
    guidance): on CPU each part also brings at most :data:`TOKENS_PER_PASS` tokens. The parts give what
    one pass would."""
    per = PAIRS_PER_PASS // (length * length)
    return _slices(n, min(per, TOKENS_PER_PASS // length) if device.type == "cpu" else per)


Guidance = Callable[[Tensor, Tensor, Tensor], Tensor]
"""A hook ``(xt LongTensor (B, L), log_x0 (B, L, V), rows LongTensor (B,)) -> log-probs (B, L, V)``
applied to the denoiser's prediction before each step draws its tokens (normalized over V; carry-over
positions must stay). :meth:`MaskedDiffusion.sample` calls it with only the rows that draw a token at
that step; ``rows`` are their indices among the ``n`` sequences, for a hook with per-row state."""




def _evaluating_models(method: Callable) -> Callable:
    """``method`` of a :class:`MaskedDiffusion` run under :func:`evaluating` the networks its policy
    reads and its ``ref`` argument."""
    signature = inspect.signature(method)

    @functools.wraps(method)
    def run(self, *args, **kwargs):
        ref = signature.bind(self, *args, **kwargs).arguments.get("ref")
        with evaluating(*self.policy_networks(), ref):
            return method(self, *args, **kwargs)

    return run


def _safe_log(x: Tensor) -> Tensor:
    # clamp first: the gradient of log at 0 is inf, and where() would turn inf * 0 into nan.
    return torch.where(x > 0, torch.log(x.clamp_min(torch.finfo(x.dtype).tiny)), LOG_ZERO)


def _gumbel(shape: torch.Size, device: torch.device, generator: torch.Generator | None) -> Tensor:
    """Standard Gumbel noise; argmax(log p + G) is a draw from p (Gumbel-max)."""
    u = torch.rand(shape, dtype=torch.float32, device=device, generator=generator)
    return -torch.log((-torch.log(u.clamp_min(1e-20))).clamp_min(1e-20))


@dataclass
class StepOutput:
    """Result of one reverse step t -> s for a batch of B sequences of length L over V tokens.

    Attributes:
        xs: LongTensor ``(B, L)``, the next state (MASK = V where still masked).
        x0_probs: ``(B, L, V)``, the predicted clean distribution x̂_θ(x_t) (carry-over applied).
        log_prob: ``(B,)``, Σ over positions unmasked at this step of log x̂_θ(x_t)_i[token]
            (the policy part; the unmask decisions are policy-free and left out).
        kl: ``(B,)``, exact KL of this step's policy to the reference's given x_t (zeros without one).
    """

    xs: Tensor
    x0_probs: Tensor
    log_prob: Tensor
    kl: Tensor


@dataclass
class Trajectory:
    """A batch of reverse trajectories from all-MASK (t = 1) to clean (t = 0).

    Attributes:
        states: LongTensor ``(steps + 1, n, L)``; ``states[k]`` is the state after ``k`` steps,
            ``states[0]`` all MASK, ``states[-1]`` the samples.
        log_probs: ``(steps, n)``, policy log-prob of the step ``states[k] -> states[k + 1]``.
        kls: ``(steps, n)``, exact per-step KL to the reference (zeros without one).
    """

    states: Tensor
    log_probs: Tensor
    kls: Tensor

    @property
    def x0(self) -> Tensor:
        """The final samples, LongTensor ``(n, L)``."""
        return self.states[-1]


class MaskedDiffusion(nn.Module):
    """Masked diffusion process around a denoiser network.

    Args:
        denoiser: module mapping float ``(B, L, V+1)`` to logits ``(B, L, V)``.
        vocab_size: V, the number of real tokens; ``mask_id = V``.
        length: L.
        eps: smallest diffusion time used by the training loss (its weight w(t) stays bounded).
        schedule: the noise schedule α_t, a :class:`~mbo.diffusion.schedule.Schedule` or its name.
        sampler: the default sampler of :meth:`sample` and :meth:`sample_relaxed` (a
            :class:`~mbo.diffusion.samplers.Sampler`, a number of grid steps, or ``"first_hitting"``).
        policy: a transform of the prediction into the distribution tokens are drawn from (min-p
            truncation, per-position constraints: :mod:`mbo.diffusion.policy`); None draws from the
            prediction itself. Not part of the checkpoint: how to sample is the caller's choice.
    """

    def __init__(self, denoiser: nn.Module, vocab_size: int, length: int, eps: float = 1e-3,
                 schedule: Schedule | str = "linear",
                 sampler: Sampler | int | str = DEFAULT_SAMPLING_STEPS,
                 policy: PolicyTransform | None = None) -> None:
        super().__init__()
        cfg = getattr(denoiser, "config", None)
        if isinstance(cfg, dict) and (
            cfg.get("vocab_size", vocab_size) != vocab_size or cfg.get("length", length) != length
        ):
            raise ValueError(
                f"denoiser is built for vocab_size={cfg.get('vocab_size')}, length={cfg.get('length')}"
                f" but the diffusion has vocab_size={vocab_size}, length={length}"
            )
        # The loss draws t in [eps, 1] and weighs by w(t) (1/t when linear): eps <= 0 can draw t = 0
        # (0 · inf = NaN), a negative eps gives negative weights, and eps >= 1 times past 1 (mask
        # probabilities above 1), all silently wrong losses.
        if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not 0.0 < eps < 1.0:
            raise ValueError(f"eps must be a number in (0, 1), got {eps!r}")
        self.denoiser = denoiser
        self.vocab_size = vocab_size
        self.length = length
        self.mask_id = vocab_size
        self.eps = eps
        self.schedule = get_schedule(schedule)
        self.sampler = get_sampler(sampler)
        self.policy = policy

    @property
    def config(self) -> dict:
        """Everything needed to rebuild this object (denoiser class and kwargs included)."""
        return {
            "kind": "MaskedDiffusion",
            "vocab_size": self.vocab_size,
            "length": self.length,
            "eps": self.eps,
            "schedule": self.schedule.name,
            "denoiser_class": type(self.denoiser).__name__,
            "denoiser": dict(getattr(self.denoiser, "config", {})),
        }

    @property
    def device(self) -> torch.device:
        """Where the denoiser's weights live (CPU for a denoiser without parameters or buffers)."""
        # Not next(self.parameters()): a parameter-free denoiser (a fixed or exact-conditional model
        # for diagnostics) would raise a bare StopIteration from every method.
        return next((t.device for t in chain(self.parameters(), self.buffers())), torch.device("cpu"))

    @property
    def dtype(self) -> torch.dtype:
        """The float dtype of the denoiser's input (its first float weight; torch's default without)."""
        return next((t.dtype for t in chain(self.parameters(), self.buffers()) if t.is_floating_point()),
                    torch.get_default_dtype())

    # ----------------------------------------------------------------------------------------- utils
    def _check_tokens(self, x: Tensor, name: str, allow_mask: bool) -> None:
        if x.dtype != torch.long or x.dim() != 2 or x.shape[1] != self.length:
            raise ValueError(
                f"{name} must be a LongTensor (B, {self.length}), got {x.dtype} {tuple(x.shape)}"
            )
        hi = self.vocab_size if allow_mask else self.vocab_size - 1
        if x.numel() and (x.min() < 0 or x.max() > hi):
            raise ValueError(f"{name} has tokens outside [0, {hi}]")

    def encode(self, xt: Tensor) -> Tensor:
        """Tokens ``(B, L)`` (MASK = V allowed) to the denoiser's float input ``(B, L, V+1)``."""
        return F.one_hot(xt, self.vocab_size + 1).to(self.dtype)

    def x0_log_probs(self, xt: Tensor, cond: Tensor | None = None) -> Tensor:
        """log x̂_θ(x_t) with carry-over.

        Args:
            xt: float ``(B, L, V+1)``, one-hot or soft (token channels plus MASK channel V).
            cond: optional condition ``(B, ...)`` passed to a conditional denoiser as its second
                argument (``mbo.ctrl``); None calls the denoiser with ``xt`` alone.

        Returns:
            ``(B, L, V)`` log-probabilities, never MASK. At a fully masked position this is the
            denoiser's log-softmax; at an unmasked position the carried (one-hot or soft) token
            distribution, with log 0 replaced by ``LOG_ZERO`` (finite; exp gives 0). A position that is
            partly masked (soft mask channel m) gets the mixture m·x̂ + (token channels).
        """
        logits = self.denoiser(xt) if cond is None else self.denoiser(xt, cond)
        logp = torch.log_softmax(logits.float(), dim=-1)
        m = xt[..., self.vocab_size :].float()
        tokens = xt[..., : self.vocab_size].float()
        if not xt.requires_grad and bool(((m == 0) | (m == 1)).all()):
            # Hard mask channel: select, which keeps the denoiser's log-softmax precision.
            return torch.where(m.bool(), logp, _safe_log(tokens))
        return torch.logaddexp(_safe_log(m) + logp, _safe_log(tokens))

    def policy_log_probs(self, xt: Tensor, cond: Tensor | None = None) -> Tensor:
        """The log-probabilities a reverse step draws from: :meth:`x0_log_probs` through
        :attr:`policy` (unchanged without one). Every sampler, guidance method and fine-tuner uses
        these, so a policy rule (constraints, truncation) holds for all of them and KLs are between
        the transformed policies. Shapes as :meth:`x0_log_probs`."""
        log_x0 = self.x0_log_probs(xt, cond)
        return log_x0 if self.policy is None else self.policy(log_x0)

    def policy_networks(self) -> tuple[nn.Module, ...]:
        """The modules :meth:`policy_log_probs` runs: this model (an on-support view adds its
        reference, which is not a submodule)."""
        return (self,)

    def on_support_of(self, ref: MaskedDiffusion) -> MaskedDiffusion:
        """This model drawing only the tokens ``ref``'s policy can draw, wherever it is sampled.

        :meth:`sample` takes ``ref`` for that, but an inference-time method of :mod:`mbo.guidance`
        reads :meth:`policy_log_probs` itself; the view applies
        :func:`~mbo.diffusion.policy.on_support` there, so every method steering a fine-tuned model
        keeps to its reference's support (the fine-tuner's target p_ref·exp(r/α) is zero off it).
        The view shares this model's denoiser and settings; ``ref`` is not one of its parameters.
        """
        return _OnSupport(self, ref)

    # ------------------------------------------------------------------------------------- training
    def _sample_times(self, n: int, device: torch.device, generator: torch.Generator | None) -> Tensor:
        # Stratified ("antithetic") times: one uniform offset, n evenly spaced strata on [eps, 1].
        u = torch.rand((), dtype=torch.float32, device=device, generator=generator)
        t = (u + torch.arange(n, dtype=torch.float32, device=device) / n) % 1.0
        return self.eps + (1.0 - self.eps) * t

    def _nelbo_terms(self, x0: Tensor, generator: torch.Generator | None,
                     cond: Tensor | None = None) -> Tensor:
        """Per-row NELBO estimates ``(B,)`` (nats per sequence) with one stratified t per row."""
        b = x0.shape[0]
        t = self._sample_times(b, x0.device, generator)
        p_mask = self.schedule.mask_prob(t)[:, None]
        masked = torch.rand(x0.shape, dtype=torch.float32, device=x0.device, generator=generator) < p_mask
        xt = torch.where(masked, torch.full_like(x0, self.mask_id), x0)
        logp = self.x0_log_probs(self.encode(xt), cond)
        nll = -logp.gather(-1, x0[..., None]).squeeze(-1)
        return self.schedule.weigh((nll * masked).sum(-1), t)

    def loss(self, x0: Tensor, generator: torch.Generator | None = None,
             cond: Tensor | None = None) -> Tensor:
        """NELBO per token, E_t[w(t) Σ_{i masked} −log x̂_θ(x_t)_i[x0_i]] / L (w = 1/t when linear).

        Args:
            x0: LongTensor ``(B, L)`` of clean tokens.
            generator: optional RNG for t and the masks.
            cond: optional condition ``(B, ...)`` for a conditional denoiser.

        Returns:
            Scalar (nats per token), a stochastic upper bound on −log p_θ(x0) / L.
        """
        self._check_tokens(x0, "x0", allow_mask=False)
        if not len(x0):  # its mean would be NaN
            raise ValueError("loss: x0 has no rows")
        return self._nelbo_terms(x0, generator, cond).mean() / self.length

    def forward(self, x0: Tensor, generator: torch.Generator | None = None,
                cond: Tensor | None = None) -> Tensor:
        """Same as :meth:`loss`."""
        return self.loss(x0, generator, cond)

    @torch.no_grad()
    def elbo(self, x0: Tensor, n_samples: int = 16, generator: torch.Generator | None = None,
             cond: Tensor | None = None) -> Tensor:
        """Monte Carlo evidence lower bound on log p_θ(x0) per sequence ("naturalness").

        Args:
            x0: LongTensor ``(B, L)``.
            n_samples: times t per sequence (stratified over [eps, 1]).
            cond: optional condition ``(B, ...)`` for a conditional denoiser.

        Returns:
            ``(B,)`` lower bound in nats per sequence (divide by L for per token).
        """
        self._check_tokens(x0, "x0", allow_mask=False)
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"elbo: n_samples must be an integer >= 1, got {n_samples!r}")
        b = x0.shape[0]
        if b == 0:
            return torch.zeros(0, device=x0.device)
        rep = x0.repeat_interleave(n_samples, dim=0)
        # Stratify within each sequence: rows b*n .. b*n+n-1 get n evenly spaced times.
        u = torch.rand((b, 1), dtype=torch.float32, device=x0.device, generator=generator)
        t = (u + torch.arange(n_samples, dtype=torch.float32, device=x0.device) / n_samples) % 1.0
        t = (self.eps + (1.0 - self.eps) * t).reshape(-1)
        p_mask = self.schedule.mask_prob(t)[:, None]
        masked = torch.rand(rep.shape, dtype=torch.float32, device=x0.device, generator=generator) < p_mask
        xt = torch.where(masked, torch.full_like(rep, self.mask_id), rep)
        rep_cond = None if cond is None else cond.repeat_interleave(n_samples, dim=0)
        inp = self.encode(xt)
        # B·n rows in parts (the noise is drawn above, so the parts give what one pass would).
        nll = torch.cat([-self.x0_log_probs(inp[p], None if rep_cond is None else rep_cond[p])
                         .gather(-1, rep[p, :, None]).squeeze(-1)
                         for p in inference_parts(len(rep), self.length, rep.device)])
        terms = self.schedule.weigh((nll * masked).sum(-1), t)
        return -terms.view(b, n_samples).mean(1)

    # ------------------------------------------------------------------------------------- sampling
    def step(
        self,
        xt: Tensor,
        log_x0: Tensor,
        unmask: Tensor,
        unmask_prob: float | Tensor | None = None,
        log_ref: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> StepOutput:
        """One reverse step: the positions in ``unmask`` get tokens drawn from ``exp(log_x0)``.

        Args:
            xt: LongTensor ``(B, L)``, MASK = V.
            log_x0: ``(B, L, V)`` log x̂(x_t): the denoiser's prediction (:meth:`x0_log_probs`),
                possibly edited by guidance. It carries gradients into ``log_prob`` and ``kl``.
            unmask: bool ``(B, L)``, the masked positions that unmask now (a sampler's draw).
            unmask_prob: the probability of each masked position unmasking now (the sampler's: a
                float or ``(B, L)``); needed for ``kl``.
            log_ref: ``(B, L, V)`` the reference model's log x̂_ref(x_t) for the exact per-step KL.
            generator: optional RNG for the token draws.

        Returns:
            :class:`StepOutput`; ``kl`` is Σ_{i masked} P(i unmasks)·KL(x̂_i ‖ x̂_ref,i), zeros
            without ``log_ref``.
        """
        self._check_tokens(xt, "xt", allow_mask=True)
        _check_log_x0(log_x0, xt, self.vocab_size, "step")
        if unmask.dtype != torch.bool or unmask.shape != xt.shape:
            raise ValueError(f"step: unmask must be a bool tensor of shape {tuple(xt.shape)}, got "
                             f"{unmask.dtype} {tuple(unmask.shape)}")
        masked = xt == self.mask_id
        if (unmask & ~masked).any():
            raise ValueError("step: unmask marks a position that is not masked; a drawn token is never "
                             "redrawn")
        tokens = (log_x0.detach() + _gumbel(log_x0.shape, xt.device, generator)).argmax(-1)
        xs = torch.where(unmask, tokens, xt)
        log_prob = (log_x0.gather(-1, tokens[..., None]).squeeze(-1) * unmask).sum(-1)
        if log_ref is None:
            kl = torch.zeros(xt.shape[0], device=xt.device)
        else:
            if unmask_prob is None:
                raise ValueError("step: the KL to a reference needs unmask_prob")
            kl = _step_kl(log_x0, log_ref, masked, unmask_prob)
        return StepOutput(xs=xs, x0_probs=log_x0.exp(), log_prob=log_prob, kl=kl)

    def log_prob_of_step(self, xt: Tensor, xs: Tensor, cond: Tensor | None = None,
                         ref: MaskedDiffusion | None = None) -> Tensor:
        """Policy log-prob ``(B,)`` of the given transition xt -> xs under the current weights.

        Σ over positions masked in ``xt`` and unmasked in ``xs`` of log x̂_θ(x_t)_i[xs_i]; the same
        quantity as :attr:`StepOutput.log_prob` (for PPO ratios). With ``ref``, the policy is kept to
        the tokens ``ref``'s policy can draw, as :meth:`sample` with that ``ref`` draws.

        Raises:
            ValueError: ``xs`` changes a position that was already unmasked in ``xt`` (impossible).
        """
        self._check_tokens(xt, "xt", allow_mask=True)
        self._check_tokens(xs, "xs", allow_mask=True)
        masked = xt == self.mask_id
        if bool(((xs != xt) & ~masked).any()):
            raise ValueError("xs changes positions that are already unmasked in xt")
        unmask = masked & (xs != self.mask_id)
        inp = self.encode(xt)
        log_x0 = self.policy_log_probs(inp, cond)
        if ref is not None:
            with torch.no_grad():
                log_ref = ref.policy_log_probs(inp.to(ref.dtype))
            log_x0 = on_support(log_x0, log_ref)
        idx = torch.where(unmask, xs, 0)
        return (log_x0.gather(-1, idx[..., None]).squeeze(-1) * unmask).sum(-1)

    def _sampler(self, sampler: Sampler | int | str | None) -> Sampler:
        return self.sampler if sampler is None else get_sampler(sampler)

    @_evaluating_models
    @torch.no_grad()
    def sample(
        self,
        n: int,
        sampler: Sampler | int | str | None = None,
        generator: torch.Generator | None = None,
        ref: MaskedDiffusion | None = None,
        return_trajectory: bool = False,
        progress: bool = False,
        cond: Tensor | None = None,
        guidance: Guidance | None = None,
        x_start: Tensor | None = None,
        abandon: Callable[[Tensor], Tensor] | None = None,
    ) -> Tensor | Trajectory:
        """Ancestral sampling from all-MASK (or a partly masked ``x_start``) to clean.

        Args:
            n: number of sequences.
            sampler: which positions each step unmasks: a :class:`~mbo.diffusion.samplers.Sampler`,
                a number of grid steps, or ``"first_hitting"``; default this model's ``sampler``.
            generator: optional RNG (on this model's device).
            ref: reference model; per-step KLs are recorded in the trajectory, and tokens the
                reference's policy cuts are never drawn (:func:`~mbo.diffusion.policy.on_support`).
            return_trajectory: return a :class:`Trajectory` instead of the samples.
            progress: show a tqdm bar over steps.
            cond: optional condition ``(n, ...)`` for a conditional denoiser.
            guidance: optional hook editing the denoiser's log-probs before each draw (:data:`Guidance`;
                called with the rows that draw a token at that step).
            x_start: LongTensor ``(n, L)`` with MASK = V: start here instead of all-MASK; only its
                masked positions are drawn (re-masking and re-denoising part of a design), and the
                loop ends once nothing is masked.
            abandon: maps the states ``(n, L)`` after each step to bool ``(n,)``: the rows it marks
                draw nothing more and skip the network (a caller that will discard them anyway, e.g.
                designs already outside a trust region, saves their cost). They are returned with
                MASK (= V) left at their undrawn positions; the other rows are drawn exactly as
                without it. Not with ``return_trajectory``.

        Returns:
            LongTensor ``(n, L)`` with tokens in [0, V) (MASK only in abandoned rows), or a
            :class:`Trajectory`.
        """
        if abandon is not None and return_trajectory:
            raise ValueError("sample: abandon and return_trajectory exclude each other (a trajectory's "
                             "per-step KL needs every row)")
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"sample: n must be an integer >= 0, got {n!r}")
        if x_start is not None and len(x_start) != n:
            raise ValueError(f"sample: x_start has {len(x_start)} rows for n = {n}")
        sampler = self._sampler(sampler)
        steps = sampler.num_steps(self.length)
        if x_start is None:
            xt = torch.full((n, self.length), self.mask_id, dtype=torch.long, device=self.device)
        else:
            self._check_tokens(x_start, "x_start", allow_mask=True)
            xt = x_start.to(self.device)
        states, log_probs, kls = [xt], [], []
        every = torch.arange(len(xt), device=xt.device)
        alive = torch.ones(len(xt), dtype=torch.bool, device=xt.device)
        for k in progress_bar(range(steps), progress=progress, desc="sampling", leave=False):
            masked = xt == self.mask_id
            if x_start is not None and not bool((masked & alive[:, None]).any()):
                break
            unmask, prob = sampler.unmask(masked, k, self.schedule, generator)
            unmask = unmask & alive[:, None]
            # A row that unmasks nothing this step stays as it is, so the network skips it: most rows
            # of most steps when few positions are masked (a re-masked design) or the grid has more
            # steps than L. The trajectory's per-step KL counts every masked position, so it needs all.
            active = unmask.any(-1)
            some = not return_trajectory and not bool(active.all())
            rows = every[active] if some else every
            xt_in, cond_in = (xt[rows], None if cond is None else cond[rows]) if some else (xt, cond)
            if not len(rows):
                # Nothing draws this step; the step still draws its noise, as above.
                log_x0 = torch.zeros((len(xt), self.length, self.vocab_size), device=xt.device)
                log_ref, some = None, False
            else:
                inp = self.encode(xt_in)
                # In parts: the network is deterministic here, so the parts give what one pass would.
                parts = inference_parts(len(inp), self.length, inp.device)
                log_x0 = torch.cat([self.policy_log_probs(inp[p], None if cond_in is None else cond_in[p])
                                    for p in parts])
                if guidance is not None:
                    guided = guidance(xt_in, log_x0, rows)
                    _check_log_x0(guided, xt_in, self.vocab_size, "a guidance hook")
                    # A tilt may raise any token, but not one the policy cut (a constraint's letter,
                    # min-p): a strong one would otherwise draw it.
                    log_x0 = on_support(guided, log_x0)
                if ref is None:
                    log_ref = None
                else:
                    ref_inp = inp.to(ref.dtype)
                    log_ref = torch.cat([ref.policy_log_probs(ref_inp[p]) for p in parts])
                if log_ref is not None:
                    log_x0 = on_support(log_x0, log_ref)
            if some:
                # Skipped rows draw no token; their noise is still drawn, so a seed gives the same
                # designs whichever rows were skipped.
                log_x0 = log_x0.new_zeros((len(xt), *log_x0.shape[1:])).index_copy(0, rows, log_x0)
            out = self.step(xt, log_x0, unmask, prob, log_ref if return_trajectory else None, generator)
            xt = out.xs
            if abandon is not None:
                alive &= ~abandon(xt).to(alive.device)
            if return_trajectory:
                states.append(xt)
                log_probs.append(out.log_prob)
                kls.append(out.kl)
        if not return_trajectory:
            return xt
        return Trajectory(states=torch.stack(states), log_probs=torch.stack(log_probs),
                          kls=torch.stack(kls))

    def sample_relaxed(
        self,
        n: int,
        sampler: Sampler | int | str | None = None,
        tau: float = 1.0,
        backprop_steps: int = 1,
        ref: MaskedDiffusion | None = None,
        generator: torch.Generator | None = None,
        hard: bool = False,
        cond: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Differentiable sampling for reward backprop (Gumbel-softmax on the token choice).

        The unmask decision is policy-free and drawn by the sampler as in :meth:`sample`; the token
        drawn at an unmasking position is relaxed to softmax((log x̂_θ + G) / τ) (with ``hard=True``:
        a straight-through one-hot whose gradient is the soft one's). Soft states are fed back to the
        denoiser as float ``(n, L, V+1)``. Gradients flow only through the last ``backprop_steps``
        steps: earlier steps run without gradient and their states are detached (truncated backprop).

        Args:
            n: number of sequences.
            sampler: as in :meth:`sample`.
            tau: Gumbel-softmax temperature.
            backprop_steps: K, steps (counted from the end) that carry gradients; 0 = none.
            ref: reference model for the exact per-step KL; tokens its policy cuts are never drawn
                (:func:`~mbo.diffusion.policy.on_support`). Its input is the (soft) state, so the KL
                has gradient through the state; freeze ``ref`` (``requires_grad_(False)``) to keep
                gradient out of its weights.
            generator: optional RNG.
            hard: straight-through hard one-hot samples.
            cond: optional condition ``(n, ...)`` for a conditional denoiser (not passed to ``ref``).

        Returns:
            ``(x0_soft, kl)``: float ``(n, L, V)`` rows summing to 1, and ``(n,)`` the summed exact
            per-step KL to ``ref`` (zeros without one); both differentiable through the last K steps.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"sample_relaxed: n must be an integer >= 1, got {n!r}")
        if not tau > 0:  # NaN too, which would give NaN samples
            raise ValueError(f"tau must be > 0, got {tau}")
        sampler = self._sampler(sampler)
        steps = sampler.num_steps(self.length)
        v = self.vocab_size
        device = self.device
        # In the denoiser's dtype, and the KL in float32 as the log-probs are, whatever torch's default.
        state = torch.zeros(n, self.length, v + 1, dtype=self.dtype, device=device)
        state[..., v] = 1.0
        kl_total = torch.zeros(n, dtype=torch.float32, device=device)
        for k in range(steps):
            with_grad = steps - k <= backprop_steps and torch.is_grad_enabled()
            if not with_grad:
                state = state.detach()
            with torch.set_grad_enabled(with_grad):
                log_x0 = self.policy_log_probs(state, cond)
                if ref is not None:
                    log_ref = ref.policy_log_probs(state.to(ref.dtype))
                    log_x0 = on_support(log_x0, log_ref)
                masked = state[..., v] > 0.5
                unmask, prob = sampler.unmask(masked, k, self.schedule, generator)
                gumbel = _gumbel(log_x0.shape, device, generator)
                y = torch.softmax((log_x0 + gumbel) / tau, dim=-1)
                if hard:
                    y_hard = F.one_hot(y.argmax(-1), v).to(y.dtype)
                    y = y_hard - y.detach() + y
                new_tokens = torch.where(unmask[..., None], y, state[..., :v])
                new_mask = torch.where(unmask, 0.0, state[..., v])
                if ref is not None:
                    kl_total = kl_total + _step_kl(log_x0, log_ref, masked, prob)
                state = torch.cat([new_tokens, new_mask[..., None]], dim=-1)
        return state[..., :v], kl_total


class _OnSupport(MaskedDiffusion):
    """:meth:`MaskedDiffusion.on_support_of`'s view: ``model``'s denoiser and settings, its policy
    restricted to where ``ref``'s is not cut."""

    def __init__(self, model: MaskedDiffusion, ref: MaskedDiffusion) -> None:
        super().__init__(model.denoiser, model.vocab_size, model.length, model.eps, model.schedule,
                         model.sampler, model.policy)
        # A plain attribute, not a submodule: the view's parameters (what a fine-tuner would train,
        # what a checkpoint would hold) stay the model's own.
        self.__dict__["ref"] = ref

    def policy_networks(self) -> tuple[nn.Module, ...]:
        return (self, self.ref)

    def policy_log_probs(self, xt: Tensor, cond: Tensor | None = None) -> Tensor:
        log_x0 = super().policy_log_probs(xt, cond)
        return on_support(log_x0, self.ref.policy_log_probs(xt.to(self.ref.dtype)))


def _check_log_x0(log_x0: Tensor, xt: Tensor, vocab_size: int, where: str) -> None:
    """Refuse log-probs that are not ``(B, L, V)`` for ``xt (B, L)``: a wider tensor would draw MASK as a
    letter, a narrower one never the last letter."""
    want = (*xt.shape, vocab_size)
    if tuple(log_x0.shape) != want:
        raise ValueError(f"{where}: log_x0 must have shape (B, L, V) = {want}, got {tuple(log_x0.shape)}")


def _step_kl(log_x0: Tensor, log_ref: Tensor, masked: Tensor, unmask_prob: float | Tensor) -> Tensor:
    """Exact KL ``(B,)`` of one step's policy to the reference's given x_t: the unmask choice is the
    same for both, so KL_t = Σ_{i masked} P(i unmasks)·KL(x̂_θ,i ‖ x̂_ref,i). ``unmask_prob`` is one
    number when it is the same for every masked position (a grid step), else ``(B, L)``."""
    per_pos = (log_x0.exp() * (log_x0 - log_ref)).sum(-1)
    if isinstance(unmask_prob, Tensor):
        return (unmask_prob * per_pos * masked).sum(-1)
    return unmask_prob * (per_pos * masked).sum(-1)
