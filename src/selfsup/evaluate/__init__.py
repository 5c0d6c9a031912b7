"""Evaluation of frozen, precomputed embeddings: kNN and linear probes, RankMe, a summary table.

Probes take ``(train_x, train_y, test_x, test_y)`` arrays (numpy or torch) and never see a model;
hyperparameters are chosen on a held-out part of the train set only. (:mod:`selfsup.evaluate.run`,
which embeds data with an encoder, is not imported here to keep this package light.)
"""

from __future__ import annotations

from selfsup.evaluate.knn import knn_evaluate, knn_predict
from selfsup.evaluate.linear import linear_probe
from selfsup.evaluate.rankme import rankme, singular_values
from selfsup.evaluate.results import PROBES, ProbeResult, evaluate_features, format_table, stratified_split

__all__ = [
    "PROBES",
    "ProbeResult",
    "evaluate_features",
    "format_table",
    "knn_evaluate",
    "knn_predict",
    "linear_probe",
    "rankme",
    "singular_values",
    "stratified_split",
]
