"""CTRL: conditions, classifier, zero-init conditional denoiser, samplers and a tiny mbo-run mode=ctrl."""

import csv
import json
import logging
import math
from functools import partial
from types import SimpleNamespace

import pytest
import torch

from experiments.run import check_settings
from mbo.checkpoint import CheckpointError, read_config, save_checkpoint, weights_sha256
from mbo.config import SettingsError, compose_config
from mbo.ctrl import (
    ConditionalDenoiser,
    ConditionLogProb,
    ConditionSampler,
    EnsembleClassifier,
    Factor,
    calibration,
    condition_name,
    ctrl_objective,
    encode_condition,
    finetune_ctrl,
    make_conditional,
    parse_condition,
    ranked_draws,
    rejection_select,
    sample_cfg,
    sample_classifier_guided,
    satisfies,
)
from mbo.ctrl.pipeline import check_prior, fit_classifier, run_ctrl
from mbo.data.alphabet import one_hot
from mbo.data.io import DataError
from mbo.diffusion import MaskedDiffusion, TransformerDenoiser, load_masked_diffusion, masked
from mbo.finetune import finetune_backprop, finetune_vidd

V, L = 4, 6
FACTORS = [Factor("A", (0.5, 0.9)), Factor("B", (0.5, 0.9))]


def tiny_diffusion(seed=0):
    torch.manual_seed(seed)
    return MaskedDiffusion(TransformerDenoiser(V, L, dim=16, depth=1, heads=2), V, L).eval()


def tiny_classifier(seed=0):
    torch.manual_seed(seed)
    return EnsembleClassifier(L, V, 3, num_members=2, hidden_dims=(8,)).eval()


def random_states(n, gen):
    x = torch.randint(0, V, (n, L), generator=gen)
    return torch.where(torch.rand(n, L, generator=gen) < 0.5, V, x)


# ------------------------------------------------------------------------------------- conditions
def test_factor_classes_condition_encoding_and_satisfaction():
    f = FACTORS[0]
    assert f.classify(torch.tensor([0.1, 0.5, 0.7, 0.9, 0.95])).tolist() == [0, 0, 1, 1, 2]
    assert parse_condition("A=high, B=low") == {"A": "high", "B": "low"}
    code = encode_condition(FACTORS, "A=high")
    assert code.tolist() == [2, 3] and condition_name(FACTORS, code) == "A-high"
    code = encode_condition(FACTORS, {"A": "high", "B": "low"})
    assert condition_name(FACTORS, code) == "A-high_B-low"
    labels = torch.tensor([[0.95, 0.1], [0.95, 0.6], [0.2, 0.1]])
    assert satisfies(FACTORS, labels, code).tolist() == [True, False, False]
    with pytest.raises(ValueError, match="unknown factor"):
        encode_condition(FACTORS, "C=high")
    with pytest.raises(ValueError, match="no class 'top'"):
        encode_condition(FACTORS, "A=top")
    with pytest.raises(ValueError, match="FACTOR=CLASS"):
        parse_condition("A high")
    with pytest.raises(ValueError, match="increase"):
        Factor("A", (0.9, 0.5))


def test_condition_sampler_list_and_marginal():
    gen = torch.Generator().manual_seed(0)
    codes = torch.stack([encode_condition(FACTORS, "A=high,B=low"), encode_condition(FACTORS, "B=high")])
    drawn = ConditionSampler(FACTORS, conditions=codes, drop_prob=0.2)(500, gen)
    rows = {tuple(r) for r in drawn.tolist()}
    assert rows == {(2, 0), (3, 2), (3, 3)}
    marg = ConditionSampler(FACTORS, marginals=[torch.tensor([0, 0, 2]), torch.tensor([1])],
                            drop_prob=0.0)(300, gen)
    assert set(marg[:, 0].tolist()) == {0, 2} and set(marg[:, 1].tolist()) == {1}


# ------------------------------------------------------------------------------------- classifier
def test_classifier_learns_a_simple_rule_and_reports_calibration():
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, V, (300, L), generator=gen)
    classes = torch.where(tokens[:, 0] == 0, 2, torch.where(tokens[:, 0] == 1, 1, 0))
    x = one_hot(tokens, V)
    clf = EnsembleClassifier(L, V, 3, num_members=2, hidden_dims=(16,))
    clf.fit(x[:240], classes[:240], steps=60, lr=3e-2, validation=(x[240:], classes[240:]))
    t = clf.fit_temperature(x[240:], classes[240:])
    assert 0.099 < t < 10.01
    logp = clf(x[240:])
    assert torch.allclose(logp.exp().sum(-1), torch.ones(60), atol=1e-5)
    cal = calibration(logp, classes[240:])
    assert cal["accuracy"] > 0.9 and 0 <= cal["ece"] <= 1 and set(cal) >= {"nll", "brier", "ece_classwise"}
    soft = torch.full((2, L, V), 1.0 / V, requires_grad=True)
    clf(soft)[:, 2].sum().backward()
    assert soft.grad is not None and torch.isfinite(soft.grad).all()
    with pytest.raises(ValueError, match="classes must lie"):
        clf.fit(x[:4], torch.tensor([0, 1, 2, 3]))


def test_condition_log_prob_adds_named_factors_only():
    ca, cb = tiny_classifier(0), tiny_classifier(1)
    reward = ConditionLogProb(FACTORS, {"A": ca, "B": cb}, gamma=2.0)
    x = one_hot(torch.randint(0, V, (5, L)), V)
    with torch.no_grad():
        both = reward(x, encode_condition(FACTORS, "A=high,B=low").expand(5, -1))
        only_a = reward(x, encode_condition(FACTORS, "A=high").expand(5, -1))
        none = reward(x, torch.tensor([[3, 3]]).expand(5, -1))
        torch.testing.assert_close(both, 2.0 * (ca(x)[:, 2] + cb(x)[:, 0]))
        torch.testing.assert_close(only_a, 2.0 * ca(x)[:, 2])
    assert (none == 0).all()


# -------------------------------------------------------------------------- conditional denoiser
def test_zero_init_conditional_model_equals_pretrained_before_training():
    pre = tiny_diffusion()
    cond_model = make_conditional(pre, [3, 3])
    gen = torch.Generator().manual_seed(1)
    xt = pre.encode(random_states(16, gen))
    conds = torch.tensor([[0, 1], [2, 3], [3, 3], [1, 0]]).repeat(4, 1)
    with torch.no_grad():
        ref = pre.x0_log_probs(xt)
        assert torch.equal(cond_model.x0_log_probs(xt, conds), ref)
        assert torch.equal(cond_model.x0_log_probs(xt), ref)
        x0 = pre.sample(4, sampler=4, generator=torch.Generator().manual_seed(3))
        assert torch.equal(cond_model.elbo(x0, generator=torch.Generator().manual_seed(2), cond=conds[:4]),
                           pre.elbo(x0, generator=torch.Generator().manual_seed(2)))
    a = pre.sample(8, sampler=4, generator=torch.Generator().manual_seed(5))
    b = cond_model.sample(8, sampler=4, generator=torch.Generator().manual_seed(5),
                          cond=torch.tensor([2, 0]).expand(8, -1))
    assert torch.equal(a, b)
    assert all(p is not q for p, q in zip(pre.parameters(), cond_model.parameters(), strict=False))


def test_null_row_stays_zero_and_condition_rows_train():
    model = make_conditional(tiny_diffusion(), [3, 3]).train()
    x0 = torch.randint(0, V, (8, L))
    cond = torch.tensor([[0, 3], [2, 1]]).repeat(4, 1)
    model.loss(x0, generator=torch.Generator().manual_seed(0), cond=cond).backward()
    emb = model.denoiser.embeddings[0].weight
    assert emb.grad[3].abs().sum() == 0 and emb.grad[0].abs().sum() > 0
    with pytest.raises(ValueError, match="cond must be"):
        model.denoiser(model.encode(x0), torch.zeros(8, dtype=torch.long))


def test_conditional_denoiser_rebuilds_from_config():
    den = ConditionalDenoiser(TransformerDenoiser(V, L, dim=16, depth=1, heads=2), [3, 2])
    again = ConditionalDenoiser(**den.config)
    again.load_state_dict(den.state_dict())
    assert again.config == den.config and again.null_condition.tolist() == [3, 2]


# ----------------------------------------------------------------------------------- samplers
def test_classifier_guidance_with_zero_strength_is_the_pretrained_sampler():
    pre = tiny_diffusion()
    clf = tiny_classifier()
    a = pre.sample(8, sampler=4, generator=torch.Generator().manual_seed(0))
    b = sample_classifier_guided(pre, lambda x: clf(x)[:, 2], 8, sampler=4, gamma=0.0,
                                 generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    strong = sample_classifier_guided(pre, lambda x: 50.0 * x[:, :, 0].sum(-1), 16, sampler=4, gamma=1.0,
                                      generator=torch.Generator().manual_seed(0))
    assert (strong == 0).double().mean() > 0.9  # a reward for token 0 everywhere


def test_cfg_sampling_and_rejection_selection(monkeypatch):
    model = make_conditional(tiny_diffusion(), [3, 3])
    code = torch.tensor([2, 3])
    x = sample_cfg(model, code, 6, sampler=4, weight=1.5, generator=torch.Generator().manual_seed(0))
    assert x.shape == (6, L) and x.max() < V
    monkeypatch.setattr(masked, "TOKENS_PER_PASS", 1)  # both passes one sequence at a time: the same draws
    assert torch.equal(x, sample_cfg(model, code, 6, sampler=4, weight=1.5,
                                     generator=torch.Generator().manual_seed(0)))
    pool = torch.arange(10)[:, None].expand(10, L) % V
    log_acc = torch.tensor([0.0, -1e9, 0.0, -1e9, -1e9, -2.0, -1e9, -1e9, -1e9, -1e9])
    chosen, accepted = rejection_select(pool, log_acc, 4, generator=torch.Generator().manual_seed(0))
    assert accepted in (2, 3) and len(chosen) == 4
    assert torch.equal(chosen[:2], pool[[0, 2]])
    with pytest.raises(ValueError, match="n must be between 1 and the pool's 10 rows, got 11"):
        rejection_select(pool, log_acc, 11)
    with pytest.raises(ValueError, match=r"log_accept must be \(10,\), one per pool row, got \(9,\)"):
        rejection_select(pool, log_acc[:9], 4)


@pytest.mark.parametrize(("finetune", "settings"), [
    (finetune_backprop, {"backprop_steps": 4, "tau": 1.0, "hard": True}),
    (finetune_vidd, {"states_per_trajectory": 2}),
])
def test_finetune_ctrl_moves_named_conditions_and_keeps_the_reference(finetune, settings):
    pre = tiny_diffusion()
    before = {k: v.clone() for k, v in pre.state_dict().items()}
    reward = ConditionLogProb(FACTORS, {"A": tiny_classifier(0), "B": tiny_classifier(1)})
    sampler = ConditionSampler(FACTORS, conditions=torch.tensor([[2, 0]]), drop_prob=0.0)
    model, hist = finetune_ctrl(pre, reward, sampler, partial(finetune, iterations=3, batch_size=8, sampler=4,
                                                              lr=3e-3, grad_clip=1.0, **settings))
    assert len(hist) == 3 and all(set(h) >= {"reward", "kl"} for h in hist)
    assert model.denoiser.embeddings[0].weight[2].abs().sum() > 0
    assert all(torch.equal(before[k], v) for k, v in pre.state_dict().items())


class _Repeating:
    """Draws rows 0..k/2-1 of a fixed list, each twice (a model that repeats its designs)."""

    vocab_size = 4
    rows = torch.tensor([[a, b, c] for a in range(4) for b in range(4) for c in range(4)])

    def sample(self, k, sampler, generator, ref, cond):
        half = self.rows[torch.arange(k // 2) % len(self.rows)]
        return torch.cat([half, half])


def test_ranked_draws_keep_the_distinct_draws_of_highest_log_prob_best_first():
    def log_prob(x, codes):  # prefers token 3 at position 1
        assert codes.shape == (len(x), 2)
        return x[:, 1, 3]

    code = torch.tensor([2, 0])
    # Each draw of 32 holds 16 distinct rows, the same ones: one draw and three that add nothing.
    designs, drawn, distinct = ranked_draws(_Repeating(), log_prob, code, n=8, oversample=4)
    assert distinct == 16 and drawn == 4 * 32 and len(torch.unique(designs, dim=0)) == 8
    scores = (designs[:, 1] == 3).float()
    assert scores.tolist() == [1.0] * 4 + [0.0] * 4  # the 4 of 16 with token 3 at position 1 first
    # oversample = 1: the model's own (distinct) draws, ranked.
    own, _, _ = ranked_draws(_Repeating(), log_prob, code, n=8, oversample=1)
    assert sorted(map(tuple, own.tolist())) == sorted(map(tuple, _Repeating.rows[:4].tolist()))


# ------------------------------------------------------------------------------------ mbo-run
TINY = [
    "diffusion.denoiser.dim=16", "diffusion.denoiser.depth=1", "diffusion.denoiser.heads=2",
    "diffusion.pretrain.steps=10", "diffusion.pretrain.batch_size=32",
    # A warmup past the last step is refused; at this lr each step keeps the rate the default warmup
    # (100 steps to 2e-3) gave it.
    "diffusion.pretrain.warmup=10", "diffusion.pretrain.lr=2e-4",
    "n_designs=8", "progress=false", "mode=ctrl",
    "ctrl.factors.0.n_labels=100", "ctrl.factors.1.n_labels=100", "ctrl.classifier.steps=20",
    "ctrl.classifier.members=2", "ctrl.finetune.iterations=2", "ctrl.finetune.batch_size=8",
    "ctrl.conditions=['A=high','A=high,B=low']",
]


def ctrl_config(tmp_path, *overrides):
    return compose_config("config", [*TINY, f"cache_dir={tmp_path / 'cache'}", *overrides])


@pytest.mark.parametrize("finetuner", ["backprop", "vidd"])
def test_mbo_run_ctrl_mode_writes_designs_per_condition(tmp_path, finetuner, caplog):
    out = tmp_path / "run"
    out.mkdir()
    result = run_ctrl(ctrl_config(tmp_path, f"ctrl/finetune={finetuner}"), out)
    assert json.loads((out / "metrics.json").read_text()) == result
    assert set(result["conditions"]) == {"A-high", "A-high_B-low"}
    for name, metrics in result["conditions"].items():
        assert 0.0 <= metrics["frac_satisfied"] <= 1.0 and metrics["n"] == 8
        target = metrics["target"]
        assert target["gap"] == pytest.approx(target["log_z"] - target["objective"]) and target["kl"] >= 0
        with (out / f"designs_{name}.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == 8 and {"sequence", "p_A_high", "p_B_low", "true_A", "true_B"} <= rows[0].keys()
        assert [r["id"] for r in rows] == [f"{name}_{i:04d}" for i in range(1, 9)]
        # The 8 of oversample × 8 distinct draws the classifiers rate most likely to meet the condition.
        assert len({r["sequence"] for r in rows}) == 8 and metrics["distinct_drawn"] >= 8
        cls = {"A-high": [("A", "high")], "A-high_B-low": [("A", "high"), ("B", "low")]}[name]
        rated = [sum(math.log(float(r[f"p_{f}_{c}"])) for f, c in cls) for r in rows]
        assert rated == pytest.approx(sorted(rated, reverse=True), abs=1e-5)
        # What made them, on every row as mbo-run writes it.
        assert {r["model_sha256"] for r in rows} == {weights_sha256(out / "ctrl_model.safetensors")}
        assert rows[0]["method"] == "ctrl" and rows[0]["seed"] == "0" and len(rows[0]["config_sha256"]) == 64
    cal = result["classifiers"]["A"]
    assert cal["n_labels"] == 100 and "ece" in cal["holdout_after_temperature"]
    # Sampling again from the saved model: no fine-tuning, same designs for the same seed.
    again = tmp_path / "again"
    again.mkdir()
    reused = run_ctrl(ctrl_config(tmp_path, f"ctrl/finetune={finetuner}",
                                  f"ctrl.model_path={out / 'ctrl_model.safetensors'}"), again)
    # The loaded model samples with the run's sampler and min-p rule, which the checkpoint does not
    # hold: every metric, its gap to the target included, is the same.
    assert reused["conditions"] == result["conditions"]
    with (out / "designs_A-high.csv").open() as f, (again / "designs_A-high.csv").open() as g:
        first, second = list(csv.DictReader(f)), list(csv.DictReader(g))
    assert [r["sequence"] for r in second] == [r["sequence"] for r in first]
    assert {r["model_sha256"] for r in second} == {first[0]["model_sha256"]}  # the model it loaded
    assert reused["provenance"]["run_id"].endswith("/again")
    # A model trained for other class edges would sample other classes under the same names.
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(DataError, match=r"CTRL model was trained for the factors"):
        run_ctrl(ctrl_config(tmp_path, f"ctrl/finetune={finetuner}", "ctrl.factors.0.percentiles=[40,90]",
                             f"ctrl.model_path={out / 'ctrl_model.safetensors'}",
                             f"cache_dir={tmp_path / 'fresh'}"), other)
    assert not (tmp_path / "fresh").exists()  # refused before any pretraining
    # KL, gap and naturalness are measured against the run's prior: a model fine-tuned from another
    # (another task's corpus, other diffusion settings) is refused, before any pretraining too.
    with pytest.raises(CheckpointError, match=r"fine-tuned from another pretrained prior \([0-9a-f]{16}\) "
                                              r"than this run's \([0-9a-f]{16}: task tfbind8"):
        run_ctrl(ctrl_config(tmp_path, f"ctrl/finetune={finetuner}", "diffusion.denoiser.dim=32",
                             f"ctrl.model_path={out / 'ctrl_model.safetensors'}",
                             f"cache_dir={tmp_path / 'fresh'}"), other)
    assert not (tmp_path / "fresh").exists()
    # The same recipe pretrained again to other weights (another device): said, and used.
    with caplog.at_level(logging.WARNING, logger="mbo-run"):
        check_prior(out / "ctrl_model.safetensors", {"sha256": "0" * 64})
    assert "same recipe's prior with other weights" in caplog.text
    assert "this run's 000000000000" in caplog.text
    # A model saved before models recorded their prior: fine-tune it again.
    old = tmp_path / "old.safetensors"
    settings = {k: v for k, v in read_config(out / "ctrl_model.safetensors").items() if k != "prior"}
    save_checkpoint(old, load_masked_diffusion(out / "ctrl_model.safetensors"), settings)
    with pytest.raises(CheckpointError, match=r"records no pretrained prior .* fine-tune it again"):
        run_ctrl(ctrl_config(tmp_path, f"ctrl/finetune={finetuner}", f"ctrl.model_path={old}",
                             f"cache_dir={tmp_path / 'fresh'}"), other)
    assert not (tmp_path / "fresh").exists() and not list(other.iterdir())


def test_factor_labels_from_a_users_csv(tmp_path):
    from omegaconf import OmegaConf

    from mbo.ctrl.pipeline import labeled_factor
    from mbo.tasks import TFBind8

    gen = torch.Generator().manual_seed(0)
    seqs = ["".join("ACGT"[i] for i in row) for row in torch.randint(0, 4, (40, 8), generator=gen).tolist()]
    path = tmp_path / "b.csv"
    path.write_text("sequence,kd\n" + "".join(f"{s},{i}\n" for i, s in enumerate(seqs)))
    spec = OmegaConf.create({"name": "B", "landscape": None, "csv": str(path), "label_column": "kd",
                             "n_labels": 0, "percentiles": [50, 90], "classes": ["low", "mid", "high"]})
    factor, tokens, labels, oracle = labeled_factor(spec, TFBind8(), seed=0)
    assert oracle is None and tokens.shape == (40, 8) and labels.shape == (40,)
    assert factor.edges == (19.5, 35.1) or factor.edges == pytest.approx((19.5, 35.1))
    assert torch.bincount(factor.classify(labels)).tolist() == [20, 16, 4]
    bad = OmegaConf.merge(spec, {"landscape": "PAX6_REF_R1"})
    with pytest.raises(ValueError, match="exactly one"):
        labeled_factor(bad, TFBind8(), seed=0)


def test_ctrl_objective_is_zero_kl_and_jensen_gap_at_the_pretrained_model():
    pre = tiny_diffusion()
    model = make_conditional(pre, [3, 3]).eval()
    clf = {"A": tiny_classifier(1), "B": tiny_classifier(2)}
    reward = ConditionLogProb(FACTORS, clf, gamma=2.0)
    code = encode_condition(FACTORS, "A=high,B=low")
    with torch.no_grad():
        pool = pre.sample(4000, sampler=8, generator=torch.Generator().manual_seed(0))
        pool_log_p = reward(one_hot(pool, V), code.expand(len(pool), -1)) / 2.0
    out = ctrl_objective(model, pre, reward, code, 2.0 * pool_log_p, n=4000, sampler=8,
                         generator=torch.Generator().manual_seed(1))
    # Before training the conditional model is p_pre: no KL, J = γ·E_pre[log p̂], and the gap is
    # Jensen's log E[p̂^γ] − E[log p̂^γ] > 0.
    assert out["kl"] == pytest.approx(0.0, abs=1e-6)
    assert out["objective"] == pytest.approx(2.0 * pool_log_p.mean().item(), abs=0.05)
    assert out["log_z"] == pytest.approx(torch.logsumexp(2 * pool_log_p.double(), 0).item()
                                         - torch.log(torch.tensor(4000.0)).item())
    assert out["gap"] > 0


def test_a_ctrl_checkpoint_loads_without_importing_mbo_ctrl(tmp_path):
    import subprocess
    import sys

    from mbo.checkpoint import save_checkpoint

    path = tmp_path / "ctrl.safetensors"
    save_checkpoint(path, make_conditional(tiny_diffusion(), [3, 3]))
    code = ("import sys\nfrom mbo.diffusion import load_masked_diffusion\n"
            f"m = load_masked_diffusion({str(path)!r})\n"
            "assert type(m.denoiser).__name__ == 'ConditionalDenoiser'\n"
            "assert 'mbo.ctrl' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_a_condition_on_a_class_no_label_reaches_is_refused_before_training(tmp_path):
    from mbo.config import SettingsError

    # 3 random rows of PAX6: 'high' (above its 90th percentile) is likely empty; seed 0 makes it so.
    cfg = ctrl_config(tmp_path, "ctrl.factors.0.n_labels=3")
    with pytest.raises(SettingsError, match="no labeled row of factor 'A' is in class 'high'"):
        run_ctrl(cfg, tmp_path)
    assert not (tmp_path / "cache").exists()
    with pytest.raises(SettingsError, match=r"ctrl.factors\[0\].n_labels must be an integer >= 2"):
        check_settings(ctrl_config(tmp_path, "ctrl.factors.0.n_labels=1"))


def test_two_valued_labels_for_three_classes_and_a_broken_model_are_one_line(tmp_path):
    from mbo.checkpoint import CheckpointError
    from mbo.config import SettingsError

    seqs = ["".join("ACGT"[i] for i in r) for r in torch.randint(0, 4, (40, 8), generator=torch.Generator()
                                                                  .manual_seed(0)).tolist()]
    path = tmp_path / "assay.csv"
    # A 0/1 assay with 1 in one row of 20: its 50th and 90th percentiles are both 0.
    path.write_text("sequence,bound\n" + "".join(f"{s},{int(i % 20 == 0)}\n" for i, s in enumerate(seqs)))
    cfg = ctrl_config(tmp_path, "ctrl.factors.0.landscape=null", f"ctrl.factors.0.csv={path}",
                      "ctrl.factors.0.label_column=bound")
    with pytest.raises(SettingsError, match=r"class edges must increase strictly.*fewer distinct values"):
        run_ctrl(cfg, tmp_path / "out")
    short = tmp_path / "short.csv"
    short.write_text("sequence,bound\n" + "".join(f"{s[:6]},1\n" for s in seqs))
    from mbo.data.io import DataError
    with pytest.raises(DataError, match=r"expected 8 \(the length of task tfbind8"):
        run_ctrl(ctrl_config(tmp_path, "ctrl.factors.0.landscape=null", f"ctrl.factors.0.csv={short}",
                             "ctrl.factors.0.label_column=bound"), tmp_path / "out3")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"junk\.safetensors"):
        run_ctrl(ctrl_config(tmp_path, f"ctrl.model_path={junk}"), tmp_path / "out2")


def test_an_unconditional_checkpoint_is_named_as_such(tmp_path):
    from mbo.checkpoint import save_checkpoint
    from mbo.ctrl.conditions import Factor
    from mbo.ctrl.pipeline import load_ctrl_model
    from mbo.data.io import DataError
    from tests.guidance import tiny_model

    path = tmp_path / "finetuned.safetensors"
    model = tiny_model()
    save_checkpoint(path, model)
    factors = [Factor("A", (0.5,), ("low", "high"))]
    task = SimpleNamespace(alphabet=SimpleNamespace(size=model.vocab_size), length=model.length)
    with pytest.raises(DataError, match=r"is an unconditional model .* not a CTRL model"):
        load_ctrl_model(str(path), factors, torch.device("cpu"), ctrl_config(tmp_path).diffusion, task)


@pytest.mark.parametrize("settings, problem", [
    # Factor and class names name the designs' files (designs_<factor>-<class>.csv).
    (["ctrl.factors.0.name=A/x", "ctrl.conditions=['A/x=high']"],
     r"ctrl.factors\[0\].name 'A/x' names the designs' files: use only letters, digits"),
    (["ctrl.factors.1.classes=[low,mid,'h i']", "ctrl.conditions=['A=high']"],
     r"ctrl.factors\[1\].classes\[2\] 'h i' names the designs' files"),
    (["ctrl.factors.1.name=A", "ctrl.conditions=['A=high']"],
     r"ctrl.factors\[1\].name 'A' is also ctrl.factors\[0\]'s; factor names must differ"),
    (["ctrl.gamma=nan"], r"ctrl.gamma be > 0 \(finite\), got 0.1 and nan"),
    (["ctrl.gamma=inf"], r"ctrl.gamma be > 0 \(finite\), got 0.1 and inf"),
    (["ctrl.log_z_samples=0"], "ctrl.log_z_samples must be an integer >= 1, got 0"),
    (["ctrl.log_z_samples=-5"], "ctrl.log_z_samples must be an integer >= 1, got -5"),
    (["ctrl.classifier.members=0"], "ctrl.classifier.members must be an integer >= 1, got 0"),
    (["ctrl.classifier.holdout=1.0"], r"ctrl.classifier.holdout must lie in \[0, 1\), got 1.0"),
    (["ctrl.classifier.lr=-1"], "ctrl.classifier.lr must be a finite number > 0, got -1"),
    (["ctrl.classifier.steps=-1"], "ctrl.classifier.steps must be an integer >= 1, got -1"),
    (["ctrl.classifier.hidden_dims=[8,0]"], r"ctrl.classifier.hidden_dims must be integers >= 1"),
    (["ctrl.factors.1.percentiles=[]", "ctrl.factors.1.classes=[all]", "ctrl.conditions=['A=high']"],
     r"ctrl.factors\[1\]: .*\(at least two classes\), got \[\] and \['all'\]"),
    (["ctrl.conditions=['A=high,B=low','B=low,A=high']"],
     r"'B=low,A=high' is the same condition as 'A=high,B=low'"),
])
def test_ctrl_settings_that_cannot_work_are_refused_before_anything_is_read(tmp_path, settings, problem):
    with pytest.raises(SettingsError, match=problem):
        check_settings(ctrl_config(tmp_path, *settings))


def test_a_missing_factor_landscape_is_a_settings_error_before_training(tmp_path):
    # As the task's own landscape: one line (exit 2), nothing pretrained.
    cfg = ctrl_config(tmp_path, f"ctrl.factors.0.landscape={tmp_path / 'nope' / 'X_8mers.txt'}")
    with pytest.raises(SettingsError, match=r"^ctrl.factors: .*X_8mers.txt: no such TF-binding table"):
        run_ctrl(cfg, tmp_path / "out")
    assert not (tmp_path / "cache").exists()


def test_more_designs_than_sequences_exist_are_refused_before_training(tmp_path):
    # Once drawn for up to 50 rounds of oversample × n_designs samples after fine-tuning, then cut short.
    with pytest.raises(SettingsError, match=r"^n_designs=65,537, but only 65,536 sequences of length 8 "
                                            "over 4 letters exist: lower n_designs$"):
        run_ctrl(ctrl_config(tmp_path, "n_designs=65537"), tmp_path / "out")
    assert not (tmp_path / "cache").exists()


def test_a_classifier_keeps_a_training_row_whatever_its_holdout():
    factor = Factor("A", (0.5,), ("low", "high"))
    tokens, labels = torch.tensor([[0] * L, [1] * L]), torch.tensor([0.0, 1.0])
    settings = SimpleNamespace(holdout=0.9, members=1, hidden_dims=[4], steps=2, lr=1e-2)
    _, report = fit_classifier(factor, tokens, labels, V, settings, seed=0, device=torch.device("cpu"))
    assert report["holdout_after_temperature"]["n"] == 1


def factor_spec_for(**fields):
    from omegaconf import OmegaConf

    spec = {"name": "A", "landscape": None, "csv": None, "label_column": "label", "n_labels": 30,
            "percentiles": [50, 90], "classes": ["low", "mid", "high"]}
    return OmegaConf.create({**spec, **fields})


def write_8mers(path, letters, n=40, repeat=1):
    """A CSV of ``n`` random 8-mers over ``letters``, each on ``repeat`` rows with labels i, i+1, i+5..."""
    gen = torch.Generator().manual_seed(0)
    seqs = ["".join(letters[i] for i in row) for row in torch.randint(0, 4, (n, 8), generator=gen).tolist()]
    rows = [f"{s},{i + (0, 1, 5)[r]}\n" for r in range(repeat) for i, s in enumerate(seqs)]
    path.write_text("sequence,label\n" + "".join(rows))
    return path


def test_a_landscape_scores_a_task_written_in_its_letters_in_another_order(tmp_path):
    from mbo.ctrl.pipeline import labeled_factor
    from mbo.data.alphabet import DNA
    from mbo.tasks import CSVTask, TFBind8

    # Token 0 of a TGCA task is T; scored as the landscape's token 0 (A), every label, true score and
    # satisfied fraction was another sequence's.
    task = CSVTask(write_8mers(tmp_path / "tgca.csv", "TGCA"), alphabet="TGCA")
    _, tokens, labels, oracle = labeled_factor(factor_spec_for(landscape="PAX6_REF_R1"), task, seed=0)
    as_dna = DNA.encode_batch(task.alphabet.decode(tokens))
    truth = TFBind8("PAX6_REF_R1").oracle(as_dna)
    assert labels.tolist() == truth.double().tolist()
    assert oracle.oracle(tokens).tolist() == truth.tolist()  # what the designs' true scores are read with
    assert not torch.equal(TFBind8("PAX6_REF_R1").oracle(tokens), truth)


@pytest.mark.parametrize("letters, alphabet, problem", [
    ("ACGU", "rna", r"task's alphabet is ACGU \(a TF-binding table measured DNA: .* write T for U"),
    ("ACDE", "ACDE", r"task's alphabet is ACDE; use a task over those letters"),
    ("ACDE", "protein", r"task's alphabet is ACDEFGHIKLMNPQRSTVWY; use a task"),
])
def test_a_landscape_refuses_a_task_in_other_letters_before_training(tmp_path, letters, alphabet, problem):
    path = write_8mers(tmp_path / "task.csv", letters)
    cfg = ctrl_config(tmp_path, "task=csv", f"task.path={path}", f"task.alphabet={alphabet}")
    with pytest.raises(SettingsError, match=rf"^ctrl.factors: ctrl factor 'A': landscape PAX6_REF_R1 scores "
                                            rf"DNA in the letters ACGT, and the {problem}"):
        run_ctrl(cfg, tmp_path / "out")
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("replicates, offsets", [("mean", 2.0), ("median", 1.0), ("max", 5.0)])
def test_a_factor_csv_merges_replicates_as_the_task_does(tmp_path, replicates, offsets):
    from mbo.ctrl.pipeline import labeled_factor
    from mbo.tasks import CSVTask

    # 40 sequences on 3 rows each: unmerged, one sequence could sit in the classifier's training rows
    # and in the held-out rows it is calibrated on.
    factor_csv = write_8mers(tmp_path / "factor.csv", "ACGT", repeat=3)
    task = CSVTask(write_8mers(tmp_path / "task.csv", "ACGT"), replicates=replicates)
    _, tokens, labels, _ = labeled_factor(factor_spec_for(csv=str(factor_csv)), task, seed=0)
    assert tokens.shape == (40, 8) and len(tokens.unique(dim=0)) == 40
    assert labels.tolist() == [i + offsets for i in range(40)]
    if replicates == "mean":  # a task without the setting merges as the csv task does by default
        from mbo.tasks import TFBind8

        _, _, labels, _ = labeled_factor(factor_spec_for(csv=str(factor_csv)), TFBind8(), seed=0)
        assert labels.tolist() == [i + offsets for i in range(40)]
