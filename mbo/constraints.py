"""Constraints a lab puts on designs, as one object every sampler honors.

- Per position (:meth:`Constraints.allowed_mask`): fixed letters (a promoter's flanks; ``fixed`` is a
  pattern with ``.`` for free positions, or a parent with a mutable region) and allowed letters per
  position. These enter the sampler itself: :meth:`Constraints.policy` masks the denoiser's
  prediction at every reverse step (:mod:`mbo.diffusion.policy`), so the prior, every fine-tuner and
  every inference-time method draws only allowed tokens, and their KL terms are exact for the
  constrained policy. Baselines that mutate sequences repair their proposals with
  :meth:`Constraints.project`.
- Global (:meth:`Constraints.satisfied`): forbidden motifs (on both strands for DNA and RNA, e.g. a
  restriction site ``GAATTC``), a GC-content window, and a maximum Hamming distance to a parent. A
  design that breaks one is rejected and drawn again; no method returns it, and callers report how
  many were rejected.

An impossible set of constraints (an empty position, a fixed letter outside the allowed ones, a GC
window the allowed letters cannot reach, a forbidden motif the fixed letters spell, a parent too far
from the fixed letters) is refused by :meth:`Constraints.check` with one sentence saying which.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import Tensor

from mbo.data.alphabet import Alphabet
from mbo.diffusion.policy import restrict

_COMPLEMENT = {"dna": str.maketrans("ACGT", "TGCA"), "rna": str.maketrans("ACGU", "UGCA")}


class ConstraintError(ValueError):
    """The constraints cannot all hold, or do not fit the design space."""


@dataclass
class Constraints:
    """Rules every design of length ``length`` over ``alphabet`` must meet (all optional).

    Args:
        alphabet, length: the design space.
        fixed: a pattern of ``length`` characters, a letter where the position is fixed and ``.``
            where it is free (``ACGT....GG``).
        allowed: position (0-based) -> the letters allowed there.
        forbidden_motifs: subsequences no design may contain; for DNA and RNA their reverse
            complements too (a restriction site is cut on either strand).
        gc: ``(low, high)``, the allowed fraction of G and C letters (DNA and RNA only).
        parent: a sequence designs must stay close to; ``max_mutations``: at most this many positions
            differ from it.
    """

    alphabet: Alphabet
    length: int
    fixed: str | None = None
    allowed: Mapping[int, str] = field(default_factory=dict)
    forbidden_motifs: Sequence[str] = ()
    gc: tuple[float, float] | None = None
    parent: str | None = None
    max_mutations: int | None = None

    def __post_init__(self) -> None:
        # Values of the wrong kind are named here, not met as a TypeError deep inside (a bare string of
        # motifs would be read letter by letter).
        if not isinstance(self.allowed or {}, Mapping):
            raise ConstraintError(f"constraints.allowed must map positions to letters ({{0: AC, 7: GT}}), "
                                  f"got {self.allowed!r}")
        allowed = {}
        for k, v in dict(self.allowed or {}).items():
            if isinstance(k, bool) or not isinstance(k, int | str) or not str(k).lstrip("-").isdigit():
                raise ConstraintError(f"constraints.allowed: position {k!r} is not an integer")
            if not isinstance(v, str):
                raise ConstraintError(f"constraints.allowed[{k}] must be letters in one word (AC), got {v!r}")
            allowed[int(k)] = v
        self.allowed = allowed
        if isinstance(self.forbidden_motifs, str) or not isinstance(self.forbidden_motifs or [], Sequence):
            raise ConstraintError(f"constraints.forbidden_motifs must be a list ([GAATTC]), got "
                                  f"{self.forbidden_motifs!r}")
        self.forbidden_motifs = [str(m) for m in (self.forbidden_motifs or [])]
        if self.gc is not None:
            ok = isinstance(self.gc, Sequence) and not isinstance(self.gc, str) and len(self.gc) == 2
            if not ok or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in self.gc):
                raise ConstraintError(f"constraints.gc must be [low, high], two numbers, got {self.gc!r}")
            self.gc = (float(self.gc[0]), float(self.gc[1]))
        if self.max_mutations is not None and (isinstance(self.max_mutations, bool)
                                               or not isinstance(self.max_mutations, int)):
            raise ConstraintError(f"constraints.max_mutations must be an integer, got {self.max_mutations!r}")
        self.check()

    # ---------------------------------------------------------------------------------------- checks
    @property
    def active(self) -> bool:
        """Whether any rule is set."""
        return bool(self.fixed or self.allowed or self.forbidden_motifs or self.gc is not None
                    or self.max_mutations is not None)

    def check(self) -> None:
        """Raise :class:`ConstraintError` (one sentence) unless every rule fits and they can all hold."""
        a, n = self.alphabet, self.length
        if self.fixed is not None:
            if len(self.fixed) != n:
                raise ConstraintError(f"constraints.fixed has {len(self.fixed)} characters; the designs have "
                                      f"length {n} (use '.' for free positions)")
            bad = sorted({c for c in self.fixed if c != "." and c not in a.letters})
            if bad:
                raise ConstraintError(f"constraints.fixed has letters {bad} outside the alphabet {a.letters}")
        for pos, letters in self.allowed.items():
            if not 0 <= pos < n:
                raise ConstraintError(f"constraints.allowed: position {pos} is outside 0..{n - 1}")
            bad = sorted(set(letters) - set(a.letters))
            if bad:
                raise ConstraintError(f"constraints.allowed[{pos}]: letters {bad} are not in {a.letters}")
        mask = self.allowed_mask()
        empty = (~mask.any(-1)).nonzero().flatten().tolist()
        if empty:
            raise ConstraintError(f"no letter is allowed at position(s) {empty} (counted from 0): "
                                  "constraints.fixed, constraints.allowed and the task's own required "
                                  "letters disagree there")
        for m in self.forbidden_motifs:
            if not m or set(m) - set(a.letters):
                raise ConstraintError(f"constraints.forbidden_motifs: {m!r} is not a word over {a.letters}")
        if (self.gc is not None) and a.name not in _COMPLEMENT:
            raise ConstraintError(f"constraints.gc needs a DNA or RNA alphabet, got {a.name!r}")
        # A one-letter motif bans its letter everywhere (with its complement, on both strands).
        banned = {m for m in self._motifs() if len(m) == 1}
        left = mask & ~torch.tensor([c in banned for c in a.letters])
        empty = (~left.any(1)).nonzero().flatten().tolist()
        if empty:
            raise ConstraintError(f"the forbidden motifs {sorted(banned)} (on both strands) leave no "
                                  f"letter at position(s) {empty[:10]}: no design can meet the rules")
        if self.gc is not None:
            lo, hi = self.gc
            if not 0.0 <= lo <= hi <= 1.0:
                raise ConstraintError(f"constraints.gc must be [low, high] within [0, 1], got {[lo, hi]}")
            # Of the letters the motifs leave: forbidding G (so C) leaves no GC at all.
            gc_idx = [a.letters.index(c) for c in "GC"]
            can_gc = left[:, gc_idx].any(-1)
            can_at = (left.sum(-1) > left[:, gc_idx].sum(-1))
            least, most = int((~can_at).sum()), int(can_gc.sum())
            if not any(lo * n - 1e-9 <= k <= hi * n + 1e-9 for k in range(least, most + 1)):
                but = f" but the forbidden {sorted(banned)}" if banned else ""
                raise ConstraintError(f"constraints.gc {[lo, hi]} cannot be met: the allowed letters{but} "
                                      f"give {least} .. {most} G or C of {n} "
                                      f"({least / n:.2f} .. {most / n:.2f})")
        if (self.parent is None) != (self.max_mutations is None):
            raise ConstraintError("constraints.parent and constraints.max_mutations go together")
        if self.parent is not None:
            if len(self.parent) != n or set(self.parent) - set(a.letters):
                raise ConstraintError(f"constraints.parent must be a length-{n} sequence over {a.letters}")
            if self.max_mutations < 0:
                raise ConstraintError(f"constraints.max_mutations must be >= 0, got {self.max_mutations}")
            parent = a.encode(self.parent)
            forced = int((~mask[torch.arange(n), parent]).sum())
            if forced > self.max_mutations:
                raise ConstraintError(f"the parent differs from the fixed / allowed letters at {forced} "
                                      f"positions, more than max_mutations = {self.max_mutations}")
            if self.gc is not None:  # each mutation moves the GC count by one at most
                own = sum(self.parent.count(c) for c in "GC")
                near = range(max(least, own - self.max_mutations), min(most, own + self.max_mutations) + 1)
                if not any(lo * n - 1e-9 <= k <= hi * n + 1e-9 for k in near):
                    raise ConstraintError(f"constraints.gc {[lo, hi]} cannot be met within max_mutations "
                                          f"= {self.max_mutations} of the parent, which has {own} G or C "
                                          f"of {n}")
        # The letters no design can change: fixed ones, and positions where only one letter is allowed.
        only = mask.sum(-1) == 1
        settled = "".join(a.letters[int(mask[i].nonzero()[0])] if only[i] else "\0" for i in range(n))
        for m in self._motifs():
            if m in settled:
                raise ConstraintError(f"the fixed or only allowed letters themselves contain the forbidden "
                                      f"motif {m!r}")
        if self.parent is not None and self.max_mutations == 0 and not bool(self.satisfied(
                a.encode(self.parent)[None])[0]):
            raise ConstraintError("with constraints.max_mutations = 0 the only design is the parent, and "
                                  "it breaks the other rules")

    def _motifs(self) -> list[str]:
        table = _COMPLEMENT.get(self.alphabet.name)
        out = list(self.forbidden_motifs)
        if table is not None:
            out += [m.translate(table)[::-1] for m in self.forbidden_motifs]
        return sorted(set(out))

    # ---------------------------------------------------------------------------------- per position
    def allowed_mask(self) -> Tensor:
        """Bool ``(L, V)``: which tokens each position may take."""
        a, n = self.alphabet, self.length
        mask = torch.ones(n, a.size, dtype=torch.bool)
        if self.fixed is not None:
            for i, c in enumerate(self.fixed):
                if c != ".":
                    mask[i] = False
                    mask[i, a.letters.index(c)] = True
        for pos, letters in self.allowed.items():
            keep = torch.zeros(a.size, dtype=torch.bool)
            keep[[a.letters.index(c) for c in letters]] = True
            mask[pos] &= keep
        return mask

    def policy(self):
        """A :data:`~mbo.diffusion.policy.PolicyTransform` restricting every position to its allowed
        tokens (None when no per-position rule is set)."""
        if self.fixed is None and not self.allowed:
            return None
        mask = self.allowed_mask()

        def constrained(log_probs: Tensor) -> Tensor:
            return restrict(log_probs, mask.to(log_probs.device))

        return constrained

    def pull_to_parent(self, tokens: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``tokens (N, L)`` within ``max_mutations`` of the parent: of each row's mutations, those the
        allowed letters force are kept, and of the rest as many as the budget leaves, chosen at random;
        the others go back to the parent's letter. Unchanged without a parent rule.

        A sampled design is almost never near a given parent (6,257 of 6,400 TFBind8 samples were more
        than 3 mutations from one), so rejection alone would leave no design; this keeps a sample's
        choices where the rule allows them."""
        if self.parent is None:
            return tokens
        parent = self.alphabet.encode(self.parent).to(tokens.device)
        positions = torch.arange(self.length, device=tokens.device)
        forced = ~self.allowed_mask().to(tokens.device)[positions, parent]
        free = (tokens != parent) & ~forced
        budget = self.max_mutations - int(forced.sum())
        score = torch.rand(tokens.shape, generator=generator).to(tokens.device)
        rank = torch.where(free, score, -1.0).argsort(-1, descending=True).argsort(-1)
        return torch.where(forced | (free & (rank < budget)), tokens, parent)

    def project(self, tokens: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """``tokens (N, L)`` with every disallowed token replaced by a random allowed one (for
        baselines that mutate freely); allowed tokens are kept."""
        mask = self.allowed_mask().to(tokens.device)
        ok = mask[torch.arange(self.length, device=tokens.device), tokens]
        if bool(ok.all()):
            return tokens
        score = torch.rand((*tokens.shape, self.alphabet.size), generator=generator).to(tokens.device)
        pick = torch.where(mask, score, -1.0).argmax(-1)
        return torch.where(ok, tokens, pick)

    def repair(self, tokens: Tensor, generator: torch.Generator | None = None, max_moves: int | None = None
               ) -> Tensor:
        """``tokens (N, L)`` moved into the valid set where a short walk finds it: :meth:`project`, then
        for each row that still breaks a global rule, up to ``max_moves`` (default L) single-letter
        changes, each the allowed one that lowers :meth:`violation` most (ties at random). Rows that
        already meet every rule are returned unchanged; a row the walk cannot fix still breaks a rule,
        so callers keep only :meth:`satisfied` rows."""
        out = self.project(tokens.long().cpu(), generator)
        mask = self.allowed_mask()
        n = self.length
        pos, tok = mask.nonzero(as_tuple=True)  # every allowed (position, letter)
        for i in (self.violation(out) > 0).nonzero().flatten().tolist():
            row = out[i]
            for _ in range(max_moves or n):
                current = float(self.violation(row[None])[0])
                if current == 0:
                    break
                moves = row.repeat(len(pos), 1)
                moves[torch.arange(len(pos)), pos] = tok
                score = self.violation(moves) + 1e-3 * torch.rand(len(pos), generator=generator)
                best = int(score.argmin())
                if float(score[best]) >= current:
                    break  # a local minimum: no single change helps
                row = moves[best]
            out[i] = row
        return out

    # ---------------------------------------------------------------------------------------- global
    def satisfied(self, tokens: Tensor) -> Tensor:
        """Bool ``(N,)``: the designs ``(N, L)`` that meet every rule, per position and global."""
        return self.violation(tokens) == 0

    def violation(self, tokens: Tensor) -> Tensor:
        """Float ``(N,)``: how far each design ``(N, L)`` is from meeting the rules, 0 when it does —
        disallowed letters + letters outside the GC window + motif occurrences + mutations beyond
        ``max_mutations``, so a local search can walk into the valid set."""
        tokens = tokens.long().cpu()
        n = self.length
        out = (~self.allowed_mask()[torch.arange(n), tokens]).sum(-1).float()
        a = self.alphabet
        if self.gc is not None:
            gc_tokens = torch.tensor([a.letters.index("G"), a.letters.index("C")])
            gc = torch.isin(tokens, gc_tokens).sum(-1).float()
            lo, hi = self.gc[0] * n - 1e-9, self.gc[1] * n + 1e-9
            out += (lo - gc).clamp(min=0).ceil() + (gc - hi).clamp(min=0).ceil()
        if self.parent is not None:
            out += ((tokens != a.encode(self.parent)).sum(-1) - self.max_mutations).clamp(min=0).float()
        motifs = self._motifs()
        if motifs:
            seqs = a.decode(tokens) if len(tokens) else []
            seqs = [seqs] if isinstance(seqs, str) else seqs
            out += torch.tensor([sum(s.startswith(m, i) for m in motifs for i in range(len(s)))
                                 for s in seqs], dtype=torch.float)
        return out

    def describe(self) -> str:
        """The rules in one line, for logs and reports."""
        parts = []
        if self.fixed is not None:
            parts.append(f"fixed {self.fixed}")
        if self.allowed:
            parts.append("allowed " + ", ".join(f"{k}:{v}" for k, v in sorted(self.allowed.items())))
        if self.forbidden_motifs:
            parts.append(f"forbidden motifs {self._motifs()}")
        if self.gc is not None:
            parts.append(f"GC in [{self.gc[0]:g}, {self.gc[1]:g}]")
        if self.parent is not None:
            parts.append(f"at most {self.max_mutations} mutations from {self.parent}")
        return "; ".join(parts) or "none"


def constraints_from_settings(settings: Mapping | None, alphabet: Alphabet, length: int,
                              required: Mapping[int, str] | None = None) -> Constraints:
    """The ``constraints`` config node (keys as :class:`Constraints`'s arguments) for a design space.

    ``required``: position -> the letters the task itself allows there (:meth:`Task.required_letters`,
    e.g. a conserved region the oracle scores ``-inf`` when broken). A user's ``allowed`` entry at the
    same position keeps only the letters both allow.
    """
    s = {k: OmegaConf.to_container(v) if isinstance(v, DictConfig | ListConfig) else v
         for k, v in dict(settings or {}).items()}
    # The user's values as given, so a value of the wrong kind is named (Constraints checks them)...
    user = Constraints(alphabet, length, allowed=s.get("allowed") or {},
                       forbidden_motifs=s.get("forbidden_motifs") or [], gc=s.get("gc"))
    allowed = dict(user.allowed)
    for pos, letters in (required or {}).items():  # ...then the task's required letters joined in
        allowed[pos] = "".join(c for c in allowed.get(pos, letters) if c in letters)
    return Constraints(alphabet, length, fixed=s.get("fixed"), allowed=allowed,
                       forbidden_motifs=user.forbidden_motifs, gc=user.gc,
                       parent=s.get("parent"), max_mutations=s.get("max_mutations"))
