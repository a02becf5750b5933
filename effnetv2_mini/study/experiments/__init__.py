"""The paper's experiments as library functions, one per table or claim, each returning a typed
result that records its own conditions (:mod:`.results`). The notebooks call these; the
report reads their results.

=================================  ================================================  ==========
paper                              function                                          notebook
=================================  ================================================  ==========
Tables 4, 7 (params, FLOPs)        :func:`.architecture.architecture`                01
Section 5.1 recipe, Table 7 top-1  :func:`.training.train_model`                     02
Table 2 (batch vs image size)      :func:`.efficiency.table2_memory`                 03
Table 3 (fused stages)             :func:`.efficiency.table3_fused_stages`           03
Section 3.2 per-stage speed        :func:`.efficiency.per_stage_speed`               03
Scaling: speed across models       :func:`.efficiency.scaling_speed`                 03
Section 3.3 NAS                    :func:`.search.nas_search`                        04
Table 5 (size x RandAugment)       :func:`.progressive.table5_grid`                  05
Progressive speed-up, ablations    :func:`.progressive.progressive_comparison`       05
Table 8 (transfer)                 :func:`.transfer.transfer`                        06
Fig. 1a, Tables 7, 10, 12 (time)   :func:`.faster.time_to_accuracy`                  (bench)
Table 11 (V2-Bx vs V1-Bx speed)    :func:`.faster.table11_speed`                     (bench)
=================================  ================================================  ==========
"""

from .architecture import ArchitectureResult, architecture
from .efficiency import (
                         PerStageResult,
                         ScalingResult,
                         Table2Result,
                         Table3Result,
                         per_stage_speed,
                         scaling_speed,
                         table2_memory,
                         table3_fused_stages,
)
from .faster import Table11Result, TimeToAccuracyResult, table11_speed, time_to_accuracy
from .progressive import ProgressiveResult, Table5Result, progressive_comparison, table5_grid
from .results import Conditions, Result, load_results, save_results
from .search import NasResult, nas_search
from .training import TrainingResult, train_model
from .transfer import TransferResult, transfer

__all__ = ["architecture", "train_model", "table2_memory", "table3_fused_stages", "per_stage_speed",
           "scaling_speed", "nas_search", "table5_grid", "progressive_comparison", "transfer",
           "Conditions", "Result", "save_results", "load_results", "ArchitectureResult",
           "TrainingResult", "Table2Result", "Table3Result", "PerStageResult", "ScalingResult",
           "NasResult", "Table5Result", "ProgressiveResult", "TransferResult", "time_to_accuracy",
           "table11_speed", "TimeToAccuracyResult", "Table11Result"]
