"""p̂(c | x): a deep-ensemble classifier on clean sequences, with temperature scaling and calibration.

Each member is a small MLP on the flattened (soft) one-hot; the ensemble's probability is the mean of
the members' softmaxes (deep ensembles are better calibrated than one net), and a single temperature,
fitted on held-out rows, corrects what remains. ``reward_models.networks.EnsembleMLP`` has a scalar
head, so the K-member multi-class stack is written out here in the same batched style.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mbo.caller_state import trains
from mbo.progress import progress_bar


class EnsembleClassifier(nn.Module):
    """K MLP classifiers ``(B, L, V) -> C`` classes evaluated in one batched pass.

    Args:
        length, vocab_size: L and V of the one-hot input.
        num_classes: C.
        num_members: K.
        hidden_dims: hidden widths (SiLU, so gradients w.r.t. a soft one-hot are smooth).
    """

    def __init__(self, length: int, vocab_size: int, num_classes: int, num_members: int = 4,
                 hidden_dims: tuple[int, ...] = (64, 64)) -> None:
        super().__init__()
        if num_classes < 2 or num_members < 1:
            raise ValueError("EnsembleClassifier needs num_classes >= 2 and num_members >= 1")
        self.config = dict(length=length, vocab_size=vocab_size, num_classes=num_classes,
                           num_members=num_members, hidden_dims=list(hidden_dims))
        self.length, self.vocab_size, self.num_classes = length, vocab_size, num_classes
        dims = (length * vocab_size, *hidden_dims, num_classes)
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for d_in, d_out in itertools.pairwise(dims):
            bound = 1.0 / math.sqrt(d_in)  # nn.Linear's default, drawn per member
            self.weights.append(nn.Parameter(torch.empty(num_members, d_in, d_out).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(num_members, 1, d_out).uniform_(-bound, bound)))
        # Temperature scaling, fitted after training (a buffer: not touched by the optimizer).
        self.register_buffer("log_temperature", torch.zeros(()))

    def member_logits(self, x: Tensor) -> Tensor:
        """``x (B, L, V)`` (soft allowed) -> logits ``(K, B, C)`` before temperature."""
        if x.dim() != 3 or x.shape[1:] != (self.length, self.vocab_size):
            raise ValueError(f"EnsembleClassifier expects (B, {self.length}, {self.vocab_size}), "
                             f"got {tuple(x.shape)}")
        h = x.flatten(1).unsqueeze(0).expand(len(self.weights[0]), -1, -1)
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = torch.baddbmm(b, h, w)
            if i < len(self.weights) - 1:
                h = F.silu(h)
        return h

    def log_probs(self, x: Tensor) -> Tensor:
        """log p̂(c | x) for every class: ``(B, L, V) -> (B, C)`` (differentiable in ``x``)."""
        logp = torch.log_softmax(self.member_logits(x) / self.log_temperature.exp(), dim=-1)
        return torch.logsumexp(logp, dim=0) - math.log(logp.shape[0])

    def forward(self, x: Tensor) -> Tensor:
        """Same as :meth:`log_probs`."""
        return self.log_probs(x)

    @trains()
    def fit(self, x: Tensor, classes: Tensor, steps: int = 300, lr: float = 3e-3,
            weight_decay: float = 1e-2, seed: int = 0, progress: bool = False,
            validation: tuple[Tensor, Tensor] | None = None,
            check_every: int = 10) -> EnsembleClassifier:
        """Full-batch cross-entropy training of every member (each on its own bootstrap resample).

        Args:
            x: one-hot ``(N, L, V)``.
            classes: LongTensor ``(N,)`` in ``[0, C)``.
            validation: optional held-out ``(x, classes)``: the weights with the lowest held-out NLL
                (checked every ``check_every`` steps) are kept (early stopping), since a fixed step
                count overfits small label sets and underfits large ones.
        """
        if classes.dim() != 1 or len(classes) != len(x) or len(x) == 0:
            raise ValueError(f"need x (N, L, V) and classes (N,) with N > 0, got {tuple(x.shape)}, "
                             f"{tuple(classes.shape)}")
        if int(classes.min()) < 0 or int(classes.max()) >= self.num_classes:
            raise ValueError(f"classes must lie in [0, {self.num_classes}), got "
                             f"[{int(classes.min())}, {int(classes.max())}]")
        gen = torch.Generator().manual_seed(seed)
        k = len(self.weights[0])
        boot = torch.randint(len(x), (k, len(x)), generator=gen).to(x.device)  # (K, N)
        xb = x.flatten(1)[boot].view(k, len(x), self.length, self.vocab_size)
        yb = classes[boot]
        opt = torch.optim.AdamW(self.parameters(), lr=lr, weight_decay=weight_decay)
        self.train()
        best_nll, best_state = math.inf, None
        for step in progress_bar(range(steps), desc="classifier", progress=progress, leave=False):
            if validation is not None and step % check_every == 0:
                with torch.no_grad():
                    nll = F.nll_loss(self.log_probs(validation[0]), validation[1]).item()
                if nll < best_nll:
                    best_nll, best_state = nll, {k: v.clone() for k, v in self.state_dict().items()}
            h = xb.flatten(2)
            for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
                h = torch.baddbmm(b, h, w)
                if i < len(self.weights) - 1:
                    h = F.silu(h)
            loss = F.cross_entropy(h.flatten(0, 1), yb.flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if validation is not None:
            with torch.no_grad():
                nll = F.nll_loss(self.log_probs(validation[0]), validation[1]).item()
            if nll >= best_nll:
                self.load_state_dict(best_state)
        return self.eval()

    @torch.no_grad()
    def fit_temperature(self, x: Tensor, classes: Tensor) -> float:
        """Set the temperature minimizing held-out NLL (log grid over [0.1, 10]); returns it."""
        logits = self.member_logits(x)
        best, best_t = math.inf, 1.0
        for t in torch.logspace(-1.0, 1.0, 41).tolist():
            logp = torch.logsumexp(torch.log_softmax(logits / t, -1), 0) - math.log(logits.shape[0])
            nll = F.nll_loss(logp, classes).item()
            if nll < best:
                best, best_t = nll, t
        self.log_temperature.fill_(math.log(best_t))
        return best_t


def calibration(log_probs: Tensor, classes: Tensor, bins: int = 10) -> dict[str, float]:
    """Calibration of predicted class probabilities.

    Args:
        log_probs: ``(N, C)`` predicted log-probabilities.
        classes: LongTensor ``(N,)`` true classes.

    Returns:
        ``accuracy``, ``nll`` (nats), ``brier`` (multi-class, summed over classes), ``ece`` (expected
        calibration error of the top-class confidence over ``bins`` equal-width bins) and
        ``ece_classwise`` (mean over classes of the one-vs-rest ECE of p̂(c | x), the number that
        matters for a reward log p̂(c | x) on a rare class).
    """
    probs = log_probs.exp().double()
    n, c = probs.shape
    onehot = F.one_hot(classes, c).double()
    conf, pred = probs.max(1)
    out = {"n": n, "accuracy": (pred == classes).double().mean().item(),
           "nll": F.nll_loss(log_probs.double(), classes).item(),
           "brier": ((probs - onehot) ** 2).sum(1).mean().item(),
           "ece": _ece(conf, (pred == classes).double(), bins)}
    out["ece_classwise"] = sum(_ece(probs[:, j], onehot[:, j], bins) for j in range(c)) / c
    return out


def _ece(conf: Tensor, hit: Tensor, bins: int) -> float:
    idx = (conf * bins).long().clamp(max=bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.double().mean().item() * abs(conf[sel].mean().item() - hit[sel].mean().item())
    return total
