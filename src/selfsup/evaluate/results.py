"""Running several probes on frozen features, and the summary table.

The probes themselves (:mod:`~selfsup.evaluate.knn`, :mod:`~selfsup.evaluate.linear`, ...) build
on :mod:`selfsup.evaluate.common`; this module sits above them.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from selfsup.errors import ConfigError
from selfsup.evaluate.common import (  # noqa: F401  (re-exported for the probes' users)
    PROBES, ArrayLike, ProbeResult, check_probe_inputs, features_numpy, features_tensor, labels_numpy, pick_best,
    stratified_split,
)
from selfsup.evaluate.fewshot import MIN_PER_CLASS, fewshot_probe
from selfsup.evaluate.knn import knn_evaluate
from selfsup.evaluate.linear import linear_probe
from selfsup.evaluate.retrieval import retrieval_map_at_r
from selfsup.evaluate.svm import svm_protocol


# ----------------------------------------------------------------------------------------------
# Running several probes, and the summary table
# ----------------------------------------------------------------------------------------------


def probe_runners(linear_batch_norm: bool = False, fewshot_min_per_class: int = MIN_PER_CLASS) -> dict[str, Any]:
    """Probe name -> function ``(train_x, train_y, test_x, test_y, seed=) -> ProbeResult``;
    ``linear_batch_norm``: the linear probe is MAE's (BatchNorm without affine parameters, SGD);
    ``fewshot_min_per_class``: labels per class the few-label fraction settings keep at least."""
    linear = functools.partial(linear_probe, batch_norm=True) if linear_batch_norm else linear_probe
    runners: dict[str, Any] = {"knn": knn_evaluate, "linear": linear, "svm": svm_protocol}
    # A shot count larger than a small class is left out (and listed) rather than stopping a run's evaluation.
    runners["fewshot"] = functools.partial(
        fewshot_probe, skip_infeasible_shots=True, min_per_class=fewshot_min_per_class
    )
    runners["retrieval"] = retrieval_map_at_r
    return runners


def check_probe_names(probes: tuple[str, ...] | list[str]) -> None:
    """Raise :class:`ConfigError` naming any probe that :func:`probe_runners` does not know."""
    runners = probe_runners()
    unknown = [p for p in probes if p not in runners]
    if unknown:
        raise ConfigError(
            f"unknown probe(s) {', '.join(map(repr, unknown))}; choose from {', '.join(runners)} "
            "(fine-tuning and the risk decomposition are options: --finetune, --risk)"
        )


def evaluate_features(
    train_x: ArrayLike,
    train_y: ArrayLike,
    test_x: ArrayLike,
    test_y: ArrayLike,
    probes: tuple[str, ...] | list[str] = PROBES,
    seed: int = 0,
    linear_batch_norm: bool = False,
    fewshot_min_per_class: int = MIN_PER_CLASS,
) -> dict[str, ProbeResult]:
    """Run the named probes on frozen features, each with its default hyperparameter grid.

    Args:
        train_x: ``[N_train, D]`` float features (numpy or torch).
        train_y: ``[N_train]`` integer labels.
        test_x: ``[N_test, D]`` float features.
        test_y: ``[N_test]`` integer labels; used only for the final score.
        probes: any of ``"knn"`` (:func:`selfsup.evaluate.knn_evaluate`), ``"linear"``
            (:func:`selfsup.evaluate.linear_probe`), ``"svm"`` (TS2Vec's SVM protocol,
            :func:`selfsup.evaluate.svm.svm_protocol`), ``"fewshot"`` (the linear probe on 1%,
            10% and k-shot label subsets, :func:`selfsup.evaluate.fewshot.fewshot_probe`) and
            ``"retrieval"`` (mAP@R, :func:`selfsup.evaluate.retrieval.retrieval_map_at_r`).
        seed: seed of the held-out validation split of train.
        linear_batch_norm: the ``"linear"`` probe puts a BatchNorm without affine parameters in
            front of a linear layer trained by mini-batch SGD, as MAE's
            (:func:`selfsup.evaluate.linear.sgd_linear_probe`); the few-label and risk probes
            keep the L-BFGS probe.
        fewshot_min_per_class: labels per class the ``"fewshot"`` fraction settings keep at least.

    Returns:
        ``{probe name: ProbeResult}`` in the order of ``probes``.

    Raises:
        ConfigError: for an unknown probe name.
        DataError: for malformed inputs (see the individual probes).
    """
    runners = probe_runners(linear_batch_norm, fewshot_min_per_class)
    if isinstance(probes, str):
        probes = (probes,)
    check_probe_names(probes)
    # Check and convert once; the probes re-check cheaply.
    tx, ty = features_tensor(train_x, "train_x"), labels_numpy(train_y, "train_y")
    vx, vy = features_tensor(test_x, "test_x"), labels_numpy(test_y, "test_y")
    check_probe_inputs(tx, ty, vx, vy)
    return {p: runners[p](tx, ty, vx, vy, seed=seed) for p in dict.fromkeys(probes)}


def _format_cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict) and "mean" in value:  # over random draws: "mean±std%"
        mean, std = float(value["mean"]), float(value.get("std", math.nan))
        return f"{_percent(mean)}±{_percent(std)}%"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(number):
        return "nan"
    if column.lower().startswith("rankme"):
        return f"{number:.1f}"
    return f"{_percent(number)}%"


def _percent(number: float) -> str:
    """``0.953`` -> ``"95.3"``; a value that rounds to zero prints ``0.0``, never ``-0.0``."""
    text = f"{100.0 * number:.1f}"
    return "0.0" if text == "-0.0" else text


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """Render ``{row name: {column: value}}`` as an aligned plain-text table.

    Columns appear in order of first appearance across rows. Values in a column whose name starts
    with ``"rankme"`` are shown with one decimal; every other value is an accuracy (or error,
    or mAP@R) in ``[0, 1]`` shown as a percentage with one decimal (``0.953`` -> ``95.3%``); a
    ``{"mean": m, "std": s}`` cell (several random draws) is shown as ``95.3±0.4%``. Missing cells
    show ``-``.

    Example::

        >>> print(format_table({"pretrained": {"knn": 0.95, "rankme": 40.12}, "raw input": {"knn": 0.9}}))
                      knn  rankme
        pretrained  95.0%    40.1
        raw input   90.0%       -
    """
    columns: list[str] = list(dict.fromkeys(col for values in rows.values() for col in values))
    header = ["", *columns]
    body = [[str(name), *(_format_cell(c, values.get(c)) for c in columns)] for name, values in rows.items()]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:])]
        return "  ".join([first, *rest]).rstrip()

    return "\n".join(line(r) for r in [header, *body])
