import pytest
import RNA as vienna
import torch

from mbo.data.alphabet import RNA
from mbo.tasks import InverseFolding
from mbo.tasks import inverse_folding as inv

TINY = dict(corpus_size=40, offline_size=8, min_mfe_probability=0.5)


def test_reward_is_one_minus_normalized_base_pair_distance(tmp_path):
    task = InverseFolding("eterna100:1", **TINY, cache_dir=tmp_path)
    assert task.target == "(((((......)))))" and task.length == 16 and task.name == "inverse_folding_eterna1"
    x = RNA.encode_batch(["GGGGGGGGGGGCCCCC", "AAAAAAAAAAAAAAAA", "GGGGGAAAAAACCCUC"])
    by_hand = [1 - vienna.bp_distance(vienna.fold(s)[0], task.target) / 16 for s in RNA.decode(x)]
    assert task.oracle(x).tolist() == by_hand and task.oracle(x).dtype == torch.float64
    assert task.is_solved(x).tolist() == [True, False, by_hand[2] == 1.0]
    assert by_hand[1] == 1 - 5 / 16  # no pairs: the target's 5 pairs are missing
    assert task.label_range() == (0.0, 1.0)


@pytest.mark.parametrize("puzzle", sorted(inv.ETERNA100_SHORT))
def test_shipped_eterna_solutions_solve_their_puzzles(puzzle):
    _, _, structure, solution = inv.ETERNA100_SHORT[puzzle]
    assert inv.check_structure(structure) == structure and vienna.fold(solution)[0] == structure


@pytest.mark.skipif(vienna.__version__ != inv.TARGETS_VIENNARNA,
                    reason="the shipped targets were folded with another ViennaRNA release")
def test_random_targets_regenerate():
    targets = inv.random_targets()
    assert tuple(targets) == inv.RANDOM_TARGETS
    assert [len(t) for t in targets] == [30, 35, 40, 45, 50] * 4
    assert all(2 * t.count("(") >= 0.3 * len(t) for t in targets)


def test_corpus_is_well_folded_and_cached(tmp_path, monkeypatch):
    task = InverseFolding("eterna100:8", **TINY, cache_dir=tmp_path)
    corpus = task.pretrain_corpus()
    assert corpus.shape == (40, 12)
    probs = inv.mfe_probabilities(RNA.decode(corpus))
    assert min(probs) >= 0.5
    off = task.offline_dataset()
    assert len(off) == 8 and off.labels.tolist() == task.oracle(off.tokens).tolist()
    assert len(list(tmp_path.glob("rnafold-corpus-L12-n48-p0.5-seed0-*.npz"))) == 1
    # A second task of the same length loads the cache instead of folding again.
    monkeypatch.setattr(inv, "well_folded_sequences", lambda *a, **k: pytest.fail("rebuilt the cache"))
    other = InverseFolding("((((....))))", **TINY, cache_dir=tmp_path)
    assert torch.equal(other.pretrain_corpus(), corpus) and other.name == "inverse_folding_custom_L12"

    # A broken entry (empty, truncated, letters out of range) is folded again, not used or crashed on.
    (entry,) = tmp_path.glob("rnafold-corpus-*.npz")
    good = entry.read_bytes()
    monkeypatch.undo()
    import numpy as np
    for broken in (b"", good[: len(good) // 2], None):
        if broken is None:
            np.savez_compressed(entry, tokens=np.full((48, 12), 200, dtype=np.uint8))
        else:
            entry.write_bytes(broken)
        rebuilt = InverseFolding("((((....))))", **TINY, cache_dir=tmp_path).pretrain_corpus()
        assert torch.equal(rebuilt, corpus)


def test_inverse_fold_baseline_is_reproducible_and_solves_a_hairpin(tmp_path):
    task = InverseFolding("eterna100:1", **TINY, cache_dir=tmp_path)
    designs, dist = inv.inverse_fold_baseline(task, 3, seed=5)
    again, _ = inv.inverse_fold_baseline(task, 3, seed=5)
    assert designs.shape == (3, 16) and torch.equal(designs, again)
    assert bool(task.is_solved(designs).all()) and dist.tolist() == [0.0, 0.0, 0.0]


def test_bad_targets():
    with pytest.raises(ValueError, match="closes nothing"):
        InverseFolding("(...)))")
    with pytest.raises(ValueError, match="unclosed"):
        InverseFolding("((...)")
    with pytest.raises(ValueError, match=r"0\.\.19"):
        InverseFolding(20)
    with pytest.raises(ValueError, match="unknown Eterna100 puzzle"):
        InverseFolding("eterna100:2")
    with pytest.raises(ValueError, match="dot-bracket"):
        InverseFolding("((xx))")
    # ViennaRNA folds no hairpin loop under 3 unpaired bases: such a target cannot be reached.
    with pytest.raises(ValueError, match="pair at positions 4 and 6 encloses 1 unpaired"):
        InverseFolding("....(.)....")
    assert InverseFolding("((...))").target == "((...))"
    with pytest.raises(ValueError, match=r"task.corpus_size must be an integer, got 500.7"):
        InverseFolding(corpus_size=500.7)


def test_a_corpus_too_rare_to_draw_is_refused_not_folded_for_hours(tmp_path):
    with pytest.raises(ValueError, match=r"of 4,096 random 30-mers .* need over 1,000,000 more"):
        inv.well_folded_sequences(30, 3000, 0.99, seed=0)


def test_the_corpus_is_cached_where_the_run_caches(tmp_path):
    from mbo.config import compose_config

    cfg = compose_config("config", ["task=inverse_folding", f"cache_dir={tmp_path}"])
    assert cfg.task.cache_dir == str(tmp_path)
