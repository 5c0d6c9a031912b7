"""Evaluation of frozen, precomputed embeddings: kNN and linear probes, few-label probes,
retrieval (mAP@R), the risk decomposition, RankMe, a summary table; fine-tuning; and the
gradient-boosted-trees baseline on raw features.

Probes take ``(train_x, train_y, test_x, test_y)`` arrays (numpy or torch) and never see a model;
hyperparameters are chosen on a held-out part of the train set only. Fine-tuning
(:func:`finetune_evaluate`) is the exception that takes the encoder and raw samples, since it
changes (a copy of) the encoder. (:mod:`selfsup.evaluate.run`,
which embeds data with an encoder, is not imported here to keep this package light.)
"""

from __future__ import annotations

from selfsup.evaluate.fewshot import draw_labelled_subset, fewshot_probe
from selfsup.evaluate.finetune import finetune_evaluate
from selfsup.evaluate.knn import knn_evaluate, knn_predict
from selfsup.evaluate.linear import linear_probe, sgd_linear_probe
from selfsup.evaluate.rankme import rankme, singular_values
from selfsup.evaluate.results import PROBES, ProbeResult, evaluate_features, format_table, stratified_split
from selfsup.evaluate.retrieval import average_precision_at_r, retrieval_map_at_r
from selfsup.evaluate.risk import risk_decomposition
from selfsup.evaluate.trees import gbdt_fewshot, gbdt_probe

__all__ = [
    "PROBES",
    "ProbeResult",
    "average_precision_at_r",
    "draw_labelled_subset",
    "evaluate_features",
    "fewshot_probe",
    "finetune_evaluate",
    "format_table",
    "gbdt_fewshot",
    "gbdt_probe",
    "knn_evaluate",
    "knn_predict",
    "linear_probe",
    "rankme",
    "retrieval_map_at_r",
    "risk_decomposition",
    "sgd_linear_probe",
    "singular_values",
    "stratified_split",
]
