"""The CTRL pipeline (``mbo-run mode=ctrl``): classifiers from offline labels → conditional fine-tuning →
designs per condition.

Writes into the output directory ``designs_<condition>.csv`` (one per requested condition: of
``oversample × n_designs`` distinct draws of the conditional model, the ``n_designs`` the classifiers
rate most likely to meet the condition, best first, with ids ``<condition>_0001``..., and on every row
the run's provenance as ``mbo-run`` writes it: run, seed, settings and checkpoints),
``metrics.json`` (classifier calibration, per-condition metrics with each condition's ``target``: its
objective J, KL and log Z and the gap log Z − J in nats, timings), ``history.json`` and the
fine-tuned model ``ctrl_model.safetensors`` (its config records the factors and the pretrained prior it
was fine-tuned from). With ``ctrl.model_path`` set to such a file, fine-tuning is skipped and the saved
model samples the requested conditions (classifiers are refit for metrics); a model fine-tuned from
another prior than the run's is refused.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate, to_absolute_path
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from mbo import jsonfile
from mbo.atomic import atomic_write_text
from mbo.checkpoint import CheckpointError, read_config, save_checkpoint, weights_sha256
from mbo.config import SettingsError, build_task, progress_bars, task_data
from mbo.ctrl.classifier import EnsembleClassifier, calibration
from mbo.ctrl.conditions import (
    ConditionSampler,
    Factor,
    condition_name,
    encode_condition,
    parse_condition,
    satisfies,
)
from mbo.ctrl.finetune import ConditionLogProb, ctrl_objective, finetune_ctrl
from mbo.ctrl.sampling import ranked_draws
from mbo.data.alphabet import Alphabet, one_hot
from mbo.data.dataset import SequenceDataset
from mbo.data.io import DataError, read_csv, write_csv
from mbo.designs import check_design_space, design_ids
from mbo.device import resolve_device, set_threads
from mbo.diffusion.cache import cache_key, cache_path, pretrained_diffusion
from mbo.diffusion.denoiser import ConditionalDenoiser
from mbo.diffusion.pretrain import check_training_memory, load_diffusion
from mbo.evaluate import mean_pairwise_hamming
from mbo.provenance import provenance
from mbo.tasks.tfbind8 import TFBind8

log = logging.getLogger("mbo-run")


class LandscapeOracle:
    """A TFBind8 landscape that scores sequences in the task's tokens.

    The landscape indexes its table by DNA tokens in its own letter order (``ACGT``); a task whose
    alphabet holds the same letters in another order (a CSV task with ``task.alphabet=TGCA``) numbers
    them differently, and its token 0 scored as the landscape's token 0 gave every label, true score
    and satisfied fraction of the run for other sequences than the ones designed.

    Args:
        landscape: the factor's landscape.
        alphabet: the task's alphabet: the landscape's letters, in any order.
        factor: the factor's name, for the refusal.

    Raises:
        ValueError: the task's letters are not the landscape's (RNA, a protein or custom alphabet).
    """

    def __init__(self, landscape: TFBind8, alphabet: Alphabet, factor: str):
        ours, theirs = alphabet.letters, landscape.alphabet.letters
        if sorted(ours) != sorted(theirs):
            # U read as T is no refusal of a typo: the tables are a protein's binding to DNA, and which
            # RNA sequence stands for a DNA 8-mer is the user's call, made by writing it in DNA letters.
            rna = (" (a TF-binding table measured DNA: to score RNA as its DNA, write T for U and read it "
                   "with task.alphabet=dna)" if sorted(ours.replace("U", "T")) == sorted(theirs) else "")
            raise ValueError(f"ctrl factor {factor!r}: landscape {landscape.landscape} scores DNA in the "
                             f"letters {theirs}, and the task's alphabet is {ours}{rna}; use a task over "
                             f"those letters or label the factor from a csv")
        self.landscape = landscape
        self.to_landscape = torch.tensor([theirs.index(c) for c in ours])  # (V,) task token -> landscape

    def oracle(self, tokens: Tensor) -> Tensor:
        """The landscape's float32 score ``(N,)`` of task tokens ``(N, L)``, on their device."""
        self.landscape.check_tokens(tokens)
        return self.landscape.oracle(self.to_landscape.to(tokens.device)[tokens.long()])

    def full_labels(self) -> Tensor:
        """Every row of the landscape's table: float64 ``(65,792,)``."""
        return self.landscape.full_dataset().labels.double()


def distinct_rows(tokens: Tensor, labels: Tensor, how: str, alphabet: Alphabet, where: str
                  ) -> tuple[Tensor, Tensor]:
    """One row per distinct sequence of ``tokens (N, L)``, ``labels (N,)`` combined by ``how`` (as the
    task's own replicates are, ``task.replicates``): a sequence on two rows could otherwise sit in the
    classifier's training rows and in the held-out ones it is calibrated on. Returns ``(M, L)``, ``(M,)``.
    """
    merged, n_merged = SequenceDataset(tokens, alphabet, labels).merge_replicates(how)
    if n_merged:
        log.info("%s: merged %d replicate rows into %d distinct sequences (%s of their labels)", where,
                 n_merged, len(merged), how)
    return merged.tokens, merged.labels


def labeled_factor(spec, task, seed: int) -> tuple[Factor, Tensor, Tensor, LandscapeOracle | None]:
    """One factor's ``(Factor, tokens (N, L), labels (N,), oracle or None)`` from its config.

    With ``landscape``: ``n_labels`` rows drawn uniformly without replacement from the task's
    pretraining corpus, labeled by that landscape's oracle; class edges are percentiles of the
    landscape's full table. With ``csv``: the file's rows and ``label_column``; edges are percentiles
    of those labels. Either way one row per distinct sequence: replicates are merged as the task's
    ``replicates`` setting says (``mean`` for a task without one).
    """
    if (spec.get("landscape") is None) == (spec.get("csv") is None):
        raise ValueError(f"ctrl factor {spec.name!r}: give exactly one of `landscape` or `csv`")
    how = getattr(task, "replicates", "mean")
    oracle = None
    if spec.get("landscape") is not None:
        land = spec.landscape
        oracle = LandscapeOracle(TFBind8(land if "/" not in str(land) else to_absolute_path(land)),
                                 task.alphabet, str(spec.name))
        corpus = task.pretrain_corpus()
        gen = torch.Generator().manual_seed(seed)
        n = min(int(spec.n_labels), len(corpus))
        tokens = corpus[torch.randperm(len(corpus), generator=gen)[:n]]
        # A corpus may hold a sequence twice (TFBind8's palindromes are both strands): same score.
        tokens, labels = distinct_rows(tokens, oracle.oracle(tokens).double(), how, task.alphabet,
                                       f"ctrl factor {spec.name!r}")
        reference = oracle.full_labels()
    else:
        path = to_absolute_path(spec.csv)
        data = read_csv(path, task.alphabet, label_columns=spec.label_column,
                        length=task.length, length_source=f"the length of task {task.name}")
        tokens, labels = distinct_rows(data.tokens, data.labels.double(), how, task.alphabet, path)
        reference = labels
    edges = tuple(float(np.percentile(reference.numpy(), p)) for p in spec.percentiles)
    factor = Factor(str(spec.name), edges, tuple(str(c) for c in spec.classes))
    return factor, tokens, labels, oracle


def read_factors(cfg: DictConfig, task) -> list[tuple[Factor, Tensor, Tensor, LandscapeOracle | None]]:
    """Each of ``cfg.ctrl.factors`` with its labeled rows (as :func:`labeled_factor`), checked against
    the conditions asked for: every input of a CTRL run that is read before any training."""
    try:
        labeled = [labeled_factor(spec, task, seed=cfg.seed + 1000 * (j + 1))
                   for j, spec in enumerate(cfg.ctrl.factors)]
    except DataError:
        raise
    # Class edges that tie (labels too few-valued for the percentiles asked), a landscape unknown or
    # not there: refused as a task's landscape is.
    except (ValueError, OSError) as err:
        raise SettingsError(f"ctrl.factors: {' '.join(str(err).split())}") from None
    check_classes_labeled(cfg.ctrl.conditions, labeled)
    return labeled


def check_classes_labeled(conditions, labeled) -> None:
    """Refuse a condition that asks for a class none of its factor's labeled rows is in: the
    classifier could never learn it (``labeled``: :func:`labeled_factor`'s results)."""
    counts = {f.name: torch.bincount(f.classify(y), minlength=f.num_classes).tolist()
              for f, _, y, _ in labeled}
    for f, tokens, _, _ in labeled:
        if len(tokens) < 2:
            raise SettingsError(f"ctrl factor {f.name!r}: {len(tokens)} labeled row(s); the classifier needs "
                                "at least 2 (one held out)")
    for text in conditions:
        for name, cls in parse_condition(text).items():
            factor = next(f for f, *_ in labeled if f.name == name)
            if counts[name][factor.classes.index(cls)] == 0:
                raise SettingsError(
                    f"ctrl.conditions: {text!r}: no labeled row of factor {name!r} is in class {cls!r} "
                    f"(class counts {dict(zip(factor.classes, counts[name], strict=True))}); label more "
                    "rows (n_labels) or move its percentiles")


def fit_classifier(factor: Factor, tokens: Tensor, labels: Tensor, vocab: int, cfg, seed: int,
                   device: torch.device) -> tuple[EnsembleClassifier, dict]:
    """Fit p̂(c | x) for one factor on (1 − holdout) of its rows; temperature and calibration on the
    rest. Returns the classifier and its held-out calibration before and after temperature scaling."""
    classes = factor.classify(labels)
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(tokens), generator=gen)
    n_hold = min(max(1, round(cfg.holdout * len(tokens))), len(tokens) - 1)  # one row each at least
    hold, train = perm[:n_hold], perm[n_hold:]
    x = one_hot(tokens, vocab).to(device)
    classes = classes.to(device)
    clf = EnsembleClassifier(tokens.shape[1], vocab, factor.num_classes, cfg.members,
                             tuple(cfg.hidden_dims)).to(device)
    clf.fit(x[train], classes[train], steps=cfg.steps, lr=cfg.lr, seed=seed,
            validation=(x[hold], classes[hold]))
    with torch.no_grad():
        before = calibration(clf(x[hold]), classes[hold])
        temperature = clf.fit_temperature(x[hold], classes[hold])
        after = calibration(clf(x[hold]), classes[hold])
    counts = torch.bincount(classes.cpu(), minlength=factor.num_classes).tolist()
    return clf, {"n_labels": len(tokens), "class_counts": dict(zip(factor.classes, counts, strict=True)),
                 "edges": list(factor.edges), "temperature": temperature,
                 "holdout_before_temperature": before, "holdout_after_temperature": after}


@torch.no_grad()
def condition_metrics(designs: Tensor, code: Tensor, factors, reward: ConditionLogProb,
                      oracles: list, pretrained, vocab: int) -> dict:
    """Per-condition metrics of ``designs (N, L)``: classifier belief, truth (where oracles exist),
    diversity, uniqueness, naturalness (mean ELBO under the pretrained model, nats per sequence)."""
    device = pretrained.device
    cond = code.to(device).expand(len(designs), -1)
    out = {"n": len(designs), "unique": len({tuple(r) for r in designs.tolist()}),
           "diversity": mean_pairwise_hamming(designs),
           "pred_log_p": reward(one_hot(designs, vocab).to(device), cond).mean().item(),
           # A fixed generator: the same designs get the same ELBO estimate in every run.
           "naturalness": pretrained.elbo(designs.to(device), n_samples=8,
                                          generator=torch.Generator(device).manual_seed(0)).mean().item()}
    if all(o is not None for o in oracles):
        true = torch.stack([o.oracle(designs).double() for o in oracles], dim=1)
        out["frac_satisfied"] = satisfies(factors, true, code).double().mean().item()
        for f, col in zip(factors, true.T, strict=True):
            out[f"true_{f.name}_mean"] = col.mean().item()
    return out


def factor_spec(factors) -> dict:
    """What a CTRL checkpoint records of its factors: each one's classes and their edges, by name."""
    return {f.name: {"classes": list(f.classes), "edges": list(f.edges)} for f in factors}


def load_ctrl_model(path: str, factors, device: torch.device, settings: DictConfig, task,
                    corpus: Tensor | None = None):
    """A fine-tuned CTRL model saved by an earlier run (``ctrl_model.safetensors``) for ``task``'s
    sequences, checked against the configured factors (names, classes and their edges) so a condition
    index means the same class it was trained for, and against the pretrained prior the run would use
    (its cache key: ``task``'s pretraining ``corpus`` and the ``diffusion`` ``settings``), which its KL,
    gap and naturalness are measured against; with the sampler and min-p rule of the ``settings`` (a
    checkpoint holds neither). The prior's weights are compared by :func:`check_prior` once it is
    loaded."""
    model = load_diffusion(path, settings, device=device, vocab_size=task.alphabet.size, length=task.length)
    den = model.denoiser
    want = [f.num_classes for f in factors]
    if not isinstance(den, ConditionalDenoiser):
        raise DataError(path, "is an unconditional model (mbo-run's finetuned.safetensors?), not a CTRL "
                              "model (ctrl_model.safetensors)")
    if den.num_classes != want:
        raise DataError(path, f"CTRL model has classes per factor {den.num_classes}, the config needs {want}")
    config = read_config(path)
    stored, spec = config.get("factors"), factor_spec(factors)
    if stored is not None and stored != spec:
        raise DataError(path, f"CTRL model was trained for the factors {stored}, the config defines {spec}")
    corpus = task_data(task)[1] if corpus is None else corpus
    key = cache_key(corpus, task.alphabet.size, settings)
    prior = config.get("prior")
    if not isinstance(prior, dict):
        raise CheckpointError(f"{path}: CTRL model records no pretrained prior it was fine-tuned from (saved "
                              "before models recorded it); fine-tune it again (drop ctrl.model_path)")
    if prior.get("key") != key:
        raise CheckpointError(f"{path}: CTRL model was fine-tuned from another pretrained prior "
                              f"({prior.get('key')}) than this run's ({key}: task {task.name}'s corpus and "
                              "the diffusion settings); use the task and diffusion settings it was "
                              "fine-tuned with, or fine-tune again (drop ctrl.model_path)")
    return model


def prior_identity(corpus: Tensor, vocab: int, settings: DictConfig, cache_dir, name: str) -> dict:
    """What a CTRL checkpoint records of the pretrained prior it was fine-tuned from: its cache key
    (corpus and ``diffusion`` settings) and the sha256 of its weights, as cached in ``cache_dir`` under
    ``name`` (:func:`~mbo.diffusion.cache.pretrained_diffusion`'s)."""
    return {"key": cache_key(corpus, vocab, settings),
            "sha256": weights_sha256(cache_path(corpus, vocab, settings, cache_dir, name=name))}


def check_prior(path, prior: dict) -> None:
    """Warn when the CTRL model at ``path`` was fine-tuned from other weights than the run's prior
    ``prior`` (:func:`prior_identity`): the same corpus and recipe (:func:`load_ctrl_model` checked
    the key) pretrained again elsewhere (another device or thread count) gives slightly other
    weights, against which its KL and gap are then measured. A model moved from a GPU machine to a
    laptop stays usable."""
    stored = read_config(path).get("prior") or {}
    if stored.get("sha256") != prior["sha256"]:
        log.warning("%s: the CTRL model was fine-tuned from the same recipe's prior with other weights "
                    "(%s, this run's %s: pretrained again elsewhere); its KL and target gap are measured "
                    "against this run's", path, str(stored.get("sha256"))[:12], prior["sha256"][:12])


def check_ctrl_design_space(cfg: DictConfig, task) -> None:
    """Refuse more designs per condition than sequences of the task exist. The offline data's are not
    left out: a condition's designs may be sequences already measured (``include_offline`` plays no
    part)."""
    check_design_space(int(cfg.n_designs), task.alphabet.size, task.length, None)


def run_ctrl(cfg: DictConfig, output_dir: Path) -> dict:
    """The CTRL pipeline for one config (``mbo.conf``'s ``config`` with the ``ctrl`` group); writes its
    outputs into ``output_dir`` and returns the metrics written to ``metrics.json``."""
    set_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    progress = progress_bars(cfg.progress)
    c = cfg.ctrl
    t0 = time.perf_counter()
    timings: dict[str, float] = {}

    task = build_task(cfg.task)
    vocab = task.alphabet.size
    check_ctrl_design_space(cfg, task)
    # Labels first: a condition whose class no labeled row holds is refused before any training.
    labeled = read_factors(cfg, task)
    if not c.get("model_path") and c.finetune.iterations > 0:
        check_training_memory(task.length, cfg.diffusion.denoiser, c.finetune.batch_size, device,
                              "ctrl.finetune.batch_size", what="fine-tuning")
    corpus, cache_dir = task_data(task)[1], to_absolute_path(cfg.cache_dir)
    saved = None
    if c.get("model_path"):  # a file that is not the model asked for is refused before any training
        saved = load_ctrl_model(to_absolute_path(c.model_path), [f for f, *_ in labeled], device,
                                cfg.diffusion, task, corpus=corpus)
    pretrained = pretrained_diffusion(corpus, vocab, cfg.diffusion, cache_dir, name=task.name, device=device,
                                      progress=progress)
    prior = prior_identity(corpus, vocab, cfg.diffusion, cache_dir, task.name)
    if saved is not None:
        check_prior(to_absolute_path(c.model_path), prior)
    timings["pretrain_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    factors, classifiers, oracles, marginals, calib = [], {}, [], [], {}
    for factor, tokens, labels, oracle in labeled:
        clf, report = fit_classifier(factor, tokens, labels, vocab, c.classifier, cfg.seed, device)
        factors.append(factor)
        classifiers[factor.name] = clf
        oracles.append(oracle)
        marginals.append(factor.classify(labels))
        calib[factor.name] = report
        log.info("factor %s: %d labels, classes %s, held-out ECE %.3f", factor.name, len(tokens),
                 report["class_counts"], report["holdout_after_temperature"]["ece"])
    timings["classifiers_s"] = time.perf_counter() - t

    codes = [encode_condition(factors, cond) for cond in c.conditions]
    if c.train_conditions == "list":
        sampler = ConditionSampler(factors, conditions=torch.stack(codes), drop_prob=c.drop_prob)
    elif c.train_conditions == "marginal":
        sampler = ConditionSampler(factors, marginals=marginals, drop_prob=c.drop_prob)
    else:
        raise ValueError(f"ctrl.train_conditions must be 'list' or 'marginal', got {c.train_conditions!r}")
    reward = ConditionLogProb(factors, classifiers, gamma=c.gamma).to(device)

    t = time.perf_counter()
    spec = factor_spec(factors)
    if saved is not None:
        model, history = saved, []
    else:
        model, history = finetune_ctrl(pretrained, reward, sampler, instantiate(c.finetune), seed=cfg.seed,
                                       progress=progress)
        save_checkpoint(output_dir / "ctrl_model.safetensors", model,
                        {**model.config, "factors": spec, "prior": prior}, overwrite=True)
    timings["finetune_s"] = time.perf_counter() - t
    tuned = output_dir / "ctrl_model.safetensors" if saved is None else Path(to_absolute_path(c.model_path))
    made_by = provenance(cfg, output_dir, task, "ctrl", model=tuned)

    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    design_sampler = instantiate(cfg.diffusion.sampler)
    per_condition = {}
    for text, code in zip(c.conditions, codes, strict=True):
        name = condition_name(factors, code)
        # As the other modes pick theirs: of oversample × n_designs distinct draws, the n_designs the
        # classifiers rate most likely to meet the condition (oversample=1: the model's own draws).
        designs, drawn, distinct = ranked_draws(model, reward, code.to(device), cfg.n_designs,
                                                int(cfg.oversample), design_sampler, gen, ref=pretrained)
        per_condition[name] = {"condition": text, "drawn": drawn, "distinct_drawn": distinct,
                               **condition_metrics(designs, code, factors, reward, oracles, pretrained,
                                                   vocab)}
        x = one_hot(designs, vocab).to(device)
        cols = {}
        for f, o in zip(factors, oracles, strict=True):
            with torch.no_grad():
                probs = classifiers[f.name](x).exp().cpu()
            for k, cls in enumerate(f.classes):
                cols[f"p_{f.name}_{cls}"] = probs[:, k].tolist()
            if o is not None:
                cols[f"true_{f.name}"] = o.oracle(designs).tolist()
        cols.update({k: [v] * len(designs) for k, v in made_by.items() if k != "command"})
        # Ids unique across conditions, so one order sheet can hold several files' designs.
        write_csv(output_dir / f"designs_{name}.csv",
                  SequenceDataset(designs, task.alphabet, ids=design_ids(len(designs), prefix=name)),
                  extra_columns=cols, overwrite=True)

    # How far the model is from each condition's target p_pre·p̂^γ / Z (log Z − J, nats; 0 = there),
    # log Z estimated from pretrained draws. Its own generator, so the designs above do not change.
    t = time.perf_counter()
    gen = torch.Generator(device=device).manual_seed(cfg.seed)
    pool = one_hot(pretrained.sample(int(c.log_z_samples), sampler=design_sampler, generator=gen),
                   vocab).to(device)
    for code in codes:
        name = condition_name(factors, code)
        with torch.no_grad():
            pool_reward = reward(pool, code.to(device).expand(len(pool), -1))
        per_condition[name]["target"] = ctrl_objective(model, pretrained, reward, code, pool_reward,
                                                       cfg.n_designs, design_sampler, gen)
    timings["target_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    result = {"task": task.name, "seed": cfg.seed, "mode": "ctrl",
              "factors": spec,
              "classifiers": calib, "conditions": per_condition, "timings": timings,
              "ctrl": OmegaConf.to_container(c, resolve=True), "provenance": made_by}
    atomic_write_text(output_dir / "history.json", jsonfile.dumps(history), overwrite=True)
    # Last: metrics.json marks the run finished (a later run refuses this folder).
    atomic_write_text(output_dir / "metrics.json", jsonfile.dumps(result, indent=2), overwrite=True)
    for name, m in per_condition.items():
        log.info("%s: satisfied %s, diversity %.2f, naturalness %.2f, gap to the target %.2f nats", name,
                 f"{m['frac_satisfied']:.3f}" if "frac_satisfied" in m else "n/a",
                 m["diversity"], m["naturalness"], m["target"]["gap"])
    return result
