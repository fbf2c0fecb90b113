"""Choosing the pessimism c and the KL weight α from the offline data alone (no oracle), by a held-out rerun.

A lab has no oracle to tune c or α on. The offline data can stage the question instead: fit the reward
model on the lower part of the labels (the "probe"), run a cheap version of the design pipeline
against the probe's conservative reward for each candidate (c, α), and score each run's designs with a
model fitted on ALL the data (the "judge"), which has seen the held-out upper part the probe has not.
The pair whose designs the judge rates best is the one that finds the better, unseen region without
being fooled by the probe's errors there. Ties go to the smaller c (less pessimism, more novelty), then
to the larger α (a shorter leash on the prior: the same judged quality nearer the pretrained manifold).

The pipeline here is an inference-time method (any of :mod:`mbo.guidance` that takes ``alpha``, SVDD-PM
by default in the config) run at the candidate α: it aims at the same target p_pre·exp(r_c/α) as the
fine-tuners, so a choice costs one extra model fit and one method run per candidate, not a fine-tuning
each. The judge scores designs by its mean in label units.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from conservative.rewards import PessimisticReward, ScaledReward, label_scale
from mbo.config import SettingsError  # a ValueError; the apps exit 2 on it
from mbo.data.alphabet import one_hot
from mbo.data.dataset import SequenceDataset
from mbo.method_settings import finite_number


def trial_name(c: float, alpha: float) -> str:
    """The key of one candidate in :func:`choose_c_alpha`'s report, e.g. ``"c=3,alpha=0.1"``."""
    return f"c={c:g},alpha={alpha:g}"


def probe_rows(labels: Tensor, holdout: float) -> Tensor:
    """Bool ``(N,)``: the rows the probe is fitted on, every label ``(N,)`` at or below the
    ``1 − holdout`` quantile (the top ``holdout`` is what it must find).

    Raises:
        ValueError: ``holdout`` is not a number in (0, 1) (``auto.holdout`` in the app's settings).
    """
    if not (finite_number(holdout) and 0 < holdout < 1):
        # 0 held nothing out (the probe saw the top it was to find) and past 1 torch.quantile raised.
        raise SettingsError(f"auto.holdout (the top fraction of labels the probe does not see) must lie in "
                            f"(0, 1), got {holdout!r}")
    y = labels.double()
    return y <= torch.quantile(y, 1.0 - float(holdout))


def choose_c_alpha(pretrained, dataset: SequenceDataset, make_model: Callable[[], object], judge,
                   method: Callable, c_grid: Sequence[float], alpha_grid: Sequence[float],
                   holdout: float = 0.2, n: int = 64, seed: int = 0,
                   exclude: Tensor | None = None,
                   conservative: Callable[..., nn.Module] = PessimisticReward) -> tuple[float, float, dict]:
    """The (c, α) of ``c_grid × alpha_grid`` whose designs a judge fitted on all data rates best (see
    the module docstring). A grid of one value fixes that setting.

    Args:
        pretrained: the pretrained ``MaskedDiffusion`` the designs are drawn from.
        dataset: the offline data (labels ``(N,)``).
        make_model: builds a fresh unfitted reward model (the app's ``reward_model`` group).
        judge: a reward model already fitted on all of ``dataset`` (its ``mean_std`` scores designs).
        method: an inference-time method ``(diffusion, reward, n, *, alpha, generator) -> AlignmentResult``.
        c_grid: candidate values of c (in units of the probe's std), e.g. ``[0, 3, 10]``.
        alpha_grid: candidate KL weights α ≥ 0 (in units of the probe's label std), e.g. ``[0.03, 0.1]``.
        holdout: the top fraction of labels the probe does not see.
        n: designs per candidate.
        seed: seeds the probe's fit and each run (the same for every candidate, so they differ only in
            (c, α)).
        exclude: sequences not to count as designs (e.g. the offline data).
        conservative: builds the reward ``conservative(model, c=c)`` the c of the grid weighs (the
            run's own, penalty included, so the chosen c means there what it meant here).

    Returns:
        ``(c, alpha, report)``: the chosen pair and, per candidate (:func:`trial_name`), the judge's
        median and mean of its designs.
    """
    if not c_grid or not alpha_grid:
        raise ValueError("choose_c_alpha: the grid of candidate c or alpha values is empty")
    if min(alpha_grid) < 0:
        raise ValueError(f"choose_c_alpha: alpha must be >= 0, got {min(alpha_grid)}")
    lower = dataset.subset(probe_rows(dataset.labels, holdout))
    probe = make_model().fit(lower, seed=seed)
    scale = label_scale(lower.labels)
    seen = set() if exclude is None else {tuple(r) for r in exclude.tolist()}
    report: dict[str, dict[str, float]] = {}
    best: tuple[float, float, float] | None = None
    for c in sorted(float(v) for v in c_grid):
        reward = ScaledReward(conservative(probe, c=c), scale)
        for alpha in sorted((float(v) for v in alpha_grid), reverse=True):
            gen = torch.Generator(device=pretrained.device).manual_seed(seed)
            designs = method(pretrained, reward, n, alpha=alpha, generator=gen).designs
            keep = torch.tensor([tuple(r) not in seen for r in designs.cpu().tolist()], dtype=torch.bool)
            designs = designs[keep.to(designs.device)]
            with torch.no_grad():  # a candidate that only copies the offline data finds nothing: last
                mean = (judge.mean_std(one_hot(designs.cpu(), pretrained.vocab_size))[0].double().cpu()
                        if len(designs) else torch.full((1,), -math.inf, dtype=torch.float64))
            median = float(mean.median())
            if math.isnan(median):  # it would lose every comparison, and (0, 0) came back off the grid
                raise ValueError(f"choose_c_alpha: the judge scores the designs of {trial_name(c, alpha)} "
                                 "NaN; it cannot rank the candidates")
            report[trial_name(c, alpha)] = {"c": c, "alpha": alpha, "judged_median": median,
                                            "judged_mean": float(mean.mean()), "designs": len(designs)}
            # The median is what the benchmarks report; strictly better is needed to pay for more
            # pessimism or a looser leash.
            if best is None or median > best[0] + 1e-12:
                best = (median, c, alpha)
    return best[1], best[2], report
