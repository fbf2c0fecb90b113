"""Design tasks: the Task contract, benchmarks with ground-truth oracles, and users' own CSV files."""

from mbo.tasks.aav import AAVPackaging
from mbo.tasks.base import Task
from mbo.tasks.csv import CSVTask
from mbo.tasks.ehrlich import Ehrlich
from mbo.tasks.flexs_rna import RNABinding
from mbo.tasks.inverse_folding import InverseFolding
from mbo.tasks.tfbind8 import TableFormatError, TFBind8, shipped_landscapes

__all__ = ["CSVTask", "Ehrlich", "TFBind8", "TableFormatError", "Task", "shipped_landscapes"]
__all__ += ["AAVPackaging", "InverseFolding", "RNABinding"]
