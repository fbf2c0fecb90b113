"""Active learning: SEIKO rounds, batch selection with BoTorch acquisition functions, the learners
that query an oracle (GA, GP-BO, AdaLead, random mutagenesis), and ``mbo-campaign``
(:mod:`mbo.active.campaign`)."""

from mbo.active.adalead import adalead
from mbo.active.oracle_baselines import genetic_algorithm, gp_bo
from mbo.active.random_mutagenesis import random_mutagenesis
from mbo.active.seiko import QueryBatch, RoundResult, best_so_far, feasible_rows, run_seiko, seiko_round
from mbo.active.selection import ACQUISITIONS, Selection, select_batch, unmeasured

__all__ = ["ACQUISITIONS", "QueryBatch", "RoundResult", "Selection", "adalead", "best_so_far",
           "feasible_rows", "genetic_algorithm", "gp_bo", "random_mutagenesis", "run_seiko", "seiko_round",
           "select_batch", "unmeasured"]
