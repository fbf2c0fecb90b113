"""Active learning: SEIKO rounds, batch selection with BoTorch acquisition functions, and the on-disk
campaign store behind ``mbo-campaign`` (see :mod:`mbo.active.campaign`)."""

from mbo.active.seiko import QueryBatch, RoundResult, best_so_far, feasible_rows, run_seiko, seiko_round
from mbo.active.selection import ACQUISITIONS, Selection, select_batch, unmeasured

__all__ = ["ACQUISITIONS", "QueryBatch", "RoundResult", "Selection", "best_so_far", "feasible_rows",
           "run_seiko", "seiko_round", "select_batch", "unmeasured"]
