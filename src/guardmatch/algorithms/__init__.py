"""Semi-supervised algorithms as pure, vectorised, checkpointable classes (logits in, loss out).

Formulas, defaults and the deliberate deviations from USB and the official MarginMatch code:
``docs/ALGORITHMS.md``.

>>> algo = build_algorithm("marginmatch", {"delta": 0.997}, num_classes=2, pool_size=10_000)
>>> out = algo.step(logits_lb=..., labels_lb=..., logits_ulb_w=..., logits_ulb_s=..., ulb_ids=..., step=0)
"""

from guardmatch.algorithms.apm import APMTable, pseudo_margins
from guardmatch.algorithms.base import (
    ALGORITHMS,
    AlgorithmConfig,
    Gather,
    SSLAlgorithm,
    StepOutput,
    build_algorithm,
    first_occurrence,
    gather_heads,
    get_algorithm,
    identity_gather,
    load_algorithm_state,
    save_algorithm_state,
)
from guardmatch.algorithms.fixmatch import FixMatch, FixMatchConfig
from guardmatch.algorithms.marginmatch import MarginMatch, MarginMatchConfig
from guardmatch.algorithms.masking import (
    POLICIES,
    ConfidencePolicy,
    FixedThreshold,
    FlexMatchThreshold,
    FreeMatchSAT,
    NoConfidenceMask,
    build_policy,
)
from guardmatch.algorithms.multimatch import MultiMatch, MultiMatchConfig
from guardmatch.algorithms.supervised import Supervised, SupervisedConfig

__all__ = [
    "ALGORITHMS",
    "APMTable",
    "POLICIES",
    "AlgorithmConfig",
    "ConfidencePolicy",
    "FixMatch",
    "FixMatchConfig",
    "FixedThreshold",
    "FlexMatchThreshold",
    "FreeMatchSAT",
    "Gather",
    "MarginMatch",
    "MarginMatchConfig",
    "MultiMatch",
    "MultiMatchConfig",
    "NoConfidenceMask",
    "SSLAlgorithm",
    "StepOutput",
    "Supervised",
    "SupervisedConfig",
    "build_algorithm",
    "build_policy",
    "first_occurrence",
    "gather_heads",
    "get_algorithm",
    "identity_gather",
    "load_algorithm_state",
    "pseudo_margins",
    "save_algorithm_state",
]
