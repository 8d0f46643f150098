"""Label-free layer diagnostics: which cut looks best without labels?

Probing needs labels; these per-cut measures need only the pooled features a
sweep already extracted (and, for invariance, one extra forward pass):

* spectral (`spectral`): RankMe (Garrido et al. 2023), alpha-ReQ (Agrawal et
  al. 2022), stable rank, NESum (He & Ozay 2022), each from D x D matrices;
* `cka`: linear CKA between cuts and between models (Kornblith et al. 2019);
* `invariance`: how much each training augmentation moves a cut's features;
* `selection`: does a metric find the validation-best cut of a sweep?
* `figures`: Plotly views for the app.

    from gr_explorer.diagnostics import compute_diagnostics, metric_vs_accuracy
    diag = compute_diagnostics(model, result.features[model.name], dataset.train_images, metrics=METRICS)
    metric_vs_accuracy(result.table, diag.metrics)
"""

from ..errors import DiagnosticError
from .cka import CKA_COLUMNS, cka_between_models, cka_matrix, cka_pairs, cka_table
from .compute import (
           DEFAULT_METRICS,
           METRIC_COLUMNS,
           METRICS,
           Diagnostics,
           compute_diagnostics,
           validate_metrics,
)
from .invariance import AUGMENTATIONS, augmentation_invariance, invariance_scores
from .moments import DEFAULT_MEMORY_BUDGET
from .selection import DIRECTIONS, metric_vs_accuracy
from .spectral import alpha_req, rankme, spectral_metrics, trace_ratio

__all__ = ["AUGMENTATIONS", "CKA_COLUMNS", "DEFAULT_MEMORY_BUDGET", "DEFAULT_METRICS", "DIRECTIONS", "DiagnosticError",
           "Diagnostics", "METRICS", "METRIC_COLUMNS", "alpha_req", "augmentation_invariance", "cka_between_models",
           "cka_matrix", "cka_pairs", "cka_table", "compute_diagnostics", "invariance_scores", "metric_vs_accuracy",
           "rankme", "spectral_metrics", "trace_ratio", "validate_metrics"]
