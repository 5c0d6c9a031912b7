"""Evaluate a run directory: probes on the frozen encoder beside the baselines.

Every number comes with (1) the same probe on a randomly initialised encoder of the same
architecture and (2) the same probe on the raw inputs, so a reader can tell what pretraining added;
on flat feature vectors (vectors, tables) also (3) gradient-boosted trees on the raw input, the
model a tabular practitioner would use without any representation learning.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfsup.config import RunConfig
from selfsup.data import DatasetSplits, SampleSource, load_dataset
from selfsup.data.loader import iterate, materialize
from selfsup.data.modalities import Modality
from selfsup.errors import ConfigError, DataError
from selfsup.evaluate.common import stratified_split
from selfsup.evaluate.embed import embed_source
from selfsup.evaluate.finetune import finetune_evaluate as finetune_encoder
from selfsup.evaluate.plots import write_training_plot
from selfsup.evaluate.rankme import rankme, singular_values
from selfsup.evaluate.results import check_probe_names, evaluate_features, format_table
from selfsup.evaluate.risk import COLUMNS as RISK_COLUMNS
from selfsup.evaluate.risk import risk_decomposition
from selfsup.evaluate.trees import TREES_COLUMN, TREES_ROW, gbdt_fewshot, gbdt_probe
from selfsup.methods.base import Encoder, Method
from selfsup.rundir import build_method, check_same_shape, load_run, write_metrics


def holdout_split(data: SampleSource, test_fraction: float = 0.2, seed: int = 0) -> tuple[SampleSource, SampleSource]:
    """A stratified train/test split of a labeled dataset that came without a test split."""
    train_idx, test_idx = stratified_split(data.labels.numpy(), test_fraction, seed)
    return data.subset(torch.as_tensor(train_idx)), data.subset(torch.as_tensor(test_idx))


@torch.no_grad()
def raw_features(source: SampleSource, encoder: Encoder, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """The raw-input baseline's features ``[N, F]`` (the modality's: flattened pixels or vectors;
    series standardised as the encoder does with missing values set to 0) and the sample indices,
    read in batches."""
    device = encoder.mean.device
    parts, indices = [], []
    for batch in iterate(source, batch_size):
        x = batch["x"].to(device)
        floats = encoder.modality.to_float(x)
        parts.append(encoder.modality.raw_features(floats, encoder.standardize(x)).float().cpu())
        indices.append(batch["index"])
    return torch.cat(parts), torch.cat(indices)


@torch.no_grad()
def tree_features(
    source: SampleSource, modality: Modality, batch_size: int = 512
) -> tuple[torch.Tensor, torch.Tensor, list[bool] | None]:
    """The trees baseline's features ``[N, F]`` (the modality's :meth:`~Modality.tree_features` of
    the float samples, NaN kept), the sample indices and the categorical columns (None: none),
    read in batches on the CPU."""
    parts, indices, categorical = [], [], None
    for batch in iterate(source, batch_size):
        features, categorical = modality.tree_features(modality.to_float(batch["x"]))
        parts.append(features.float().cpu())
        indices.append(batch["index"])
    return torch.cat(parts), torch.cat(indices), categorical


def trees_choice(config: RunConfig, modality: Modality, trees: bool | None = None) -> bool:
    """Whether the evaluation adds the gradient-boosted-trees row: the caller's choice, else the
    run's ``eval.trees``, where ``"auto"`` means what the modality declares (``tree_baseline``:
    its samples are flat feature vectors)."""
    if trees is not None:
        return bool(trees)
    setting = config.eval.trees
    return bool(type(modality).tree_baseline) if setting == "auto" else bool(setting)


def _add_trees(
    train: SampleSource,
    test: SampleSource,
    modality: Modality,
    results: dict[str, dict[str, Any]],
    chosen: dict[str, dict[str, Any]],
    details: dict[str, dict[str, Any]],
    seed: int,
    fewshot_min_per_class: int | None,
) -> str:
    """The gradient-boosted-trees row (its accuracy, and with ``fewshot_min_per_class`` the
    few-label settings on the few-label probe's subsets), filled in place; returns a note."""
    (train_t, train_i, categorical), (test_t, test_i, _) = (tree_features(part, modality) for part in (train, test))
    train_y, test_y = _labels_at(train, train_i), _labels_at(test, test_i)
    r = gbdt_probe(train_t, train_y, test_t, test_y, categorical=categorical, seed=seed)
    results[TREES_ROW] = {TREES_COLUMN: r.accuracy}
    chosen[TREES_ROW] = {TREES_COLUMN: r.chosen}
    details[TREES_ROW] = {TREES_COLUMN: r.details}
    if fewshot_min_per_class is not None:
        few = gbdt_fewshot(
            train_t, train_y, test_t, test_y, categorical=categorical, seed=seed,
            min_per_class=fewshot_min_per_class, skip_infeasible_shots=True,
        )
        results[TREES_ROW].update(few.columns)
        chosen[TREES_ROW]["fewshot"] = few.chosen
        details[TREES_ROW]["fewshot"] = few.details
    return "; gradient-boosted trees on the raw input (HistGradientBoosting), tuned on a split of train"


def random_init_method(config: RunConfig, like: Method) -> Method:
    """The same architecture as ``like``, freshly initialised with the run's seed."""
    torch.manual_seed(config.train.seed)
    encoder = like.encoder
    return build_method(
        config, encoder.input_shape, encoder.mean, encoder.std, encoder.modality_name, encoder.data_info,
    ).eval()


def evaluation_groups(results: dict[str, dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """The result columns split into ``(title, columns)`` groups: the probes (title ""), few-label
    cells (mean ± std over draws) and the risk-decomposition errors; empty groups left out."""
    columns = list(dict.fromkeys(c for row in results.values() for c in row))
    few_label = [c for c in columns if any(isinstance(row.get(c), dict) for row in results.values())]
    risk = [c for c in columns if c in RISK_COLUMNS.values()]
    main = [c for c in columns if c not in few_label and c not in risk]
    trees = any(c in few_label for c in results.get(TREES_ROW, {}))
    models = f"linear probe, or the trees themselves in the {TREES_ROW} row" if trees else "linear probe"
    groups = [
        ("", main),
        (f"few labels ({models}; mean±std over random draws of the labelled subset)", few_label),
        ("risk decomposition of the linear probe's test error (Dubois et al. 2023)", risk),
    ]
    return [(title, group) for title, group in groups if group]


def _evaluation_tables(results: dict[str, dict[str, Any]]) -> str:
    """The summary table; few-label and risk columns, when present, get their own tables so lines stay short."""
    tables = []
    for title, group in evaluation_groups(results):
        table = format_table({name: {c: row[c] for c in group if c in row} for name, row in results.items()})
        tables.append(f"{title}:\n{table}" if title else table)
    return "\n\n".join(tables)


HEADLINE_PROTOCOLS = ("linear", "finetune")  # the values of Method.headline_protocol


def evaluation_choices(
    method: Method, config: RunConfig, finetune: bool | None = None, linear_batch_norm: bool | None = None,
) -> tuple[bool, bool, str]:
    """``(finetune, linear_batch_norm, headline)`` of an evaluation: the caller's choice, else the
    run's ``eval`` settings, where ``"auto"`` means what the method declares (fine-tuning when its
    ``headline_protocol`` is ``"finetune"``; its ``linear_probe_batch_norm``)."""
    cls = type(method)
    headline = cls.headline_protocol
    if headline not in HEADLINE_PROTOCOLS:
        name = getattr(cls, "registered_name", cls.__name__)
        raise ConfigError(f"method {name!r} declares headline_protocol={headline!r}; it must be 'linear' or 'finetune'")
    if finetune is None:
        finetune = headline == "finetune" if config.eval.finetune == "auto" else bool(config.eval.finetune)
    if linear_batch_norm is None:
        setting = config.eval.linear_batch_norm
        linear_batch_norm = bool(cls.linear_probe_batch_norm) if setting == "auto" else bool(setting)
    return bool(finetune), bool(linear_batch_norm), headline


def headline_first(results: dict[str, dict[str, Any]], declared: str) -> str | None:
    """Put the headline column first in every row (in place) and return it: the ``declared``
    protocol when the table has it, else the linear probe's, else none."""
    columns = {c for row in results.values() for c in row}
    headline = declared if declared in columns else "linear" if "linear" in columns else None
    if headline is not None:
        for name, row in results.items():
            if headline in row:
                results[name] = {headline: row[headline], **{c: v for c, v in row.items() if c != headline}}
    return headline


def _add_finetune_and_risk(
    encoders: dict[str, torch.nn.Module],
    train: SampleSource,
    test: SampleSource,
    features: dict[str, tuple[torch.Tensor, torch.Tensor]],
    labels: tuple[torch.Tensor, torch.Tensor],
    results: dict[str, dict[str, Any]],
    chosen: dict[str, dict[str, Any]],
    details: dict[str, dict[str, Any]],
    seed: int,
    finetune: bool,
    risk: bool,
    pretrained_on_train: bool,
    finetune_budget: dict[str, Any] | None = None,
) -> str:
    """Fine-tune each encoder (not the raw input: a linear model on it is the linear probe) and/or
    decompose each row's linear-probe risk; fills the tables in place and returns a note.
    Fine-tuning reads the labelled samples into memory (labelled sets are small)."""
    note = ""
    approximation = None
    train_y, test_y = labels
    if finetune:
        train_batch, test_batch = materialize(train), materialize(test)
        for name, encoder in encoders.items():
            r = finetune_encoder(
                encoder, train_batch["x"], train_batch["y"], test_batch["x"], test_batch["y"], seed=seed,
                **(finetune_budget or {}),
            )
            results[name]["finetune"] = r.accuracy
            chosen[name]["finetune"] = r.chosen
            details[name]["finetune"] = r.details
        # The supervised model of the encoder's architecture, trained from scratch: its training
        # error is Dubois et al.'s estimate of the approximation error.
        approximation = 1.0 - details["random-init"]["finetune"]["train_accuracy"]
        note += "; fine-tuning: lr chosen on a split of train (no raw-input fine-tuning: that is the linear probe)"
    if risk:
        for name, (train_z, test_z) in features.items():
            r = risk_decomposition(
                train_z, train_y, test_z, test_y, approximation_error=None if name == "raw input" else approximation, seed=seed
            )
            results[name].update(r.columns)
            chosen[name]["risk"] = r.chosen
            details[name]["risk"] = r.details
        note += "; risk terms are errors of the linear probe " + (
            "(approximation: the random-init fine-tune's training error)"
            if approximation is not None
            else "(approximation not estimated, included in usability; add --finetune to estimate it)"
        )
        if not pretrained_on_train:
            note += (
                "; caution: the encoder was not pretrained on exactly this train split, so encoder "
                "generalisation is not what Dubois et al. define"
            )
    return note


def _probe_split(
    encoders: dict[str, torch.nn.Module],
    train: SampleSource,
    test: SampleSource,
    features: dict[str, tuple[torch.Tensor, torch.Tensor]],
    labels: tuple[torch.Tensor, torch.Tensor],
    results: dict[str, dict[str, Any]],
    chosen: dict[str, dict[str, Any]],
    details: dict[str, dict[str, Any]],
    settings: dict[str, Any],
    pretrained_on_train: bool,
    label_free: dict[str, dict[str, float]],
) -> str:
    """Every protocol on one train/test split, filled into the tables in place: the probes on each
    row's features (``features``: ``{row: (train [N, D], test [M, D])}``, ``labels`` theirs), then
    the row's ``label_free`` cells (RankMe), the trees, fine-tuning and the risk decomposition as
    ``settings`` say; returns a note."""
    note = ""
    for name, (train_z, test_z) in features.items():
        probe_results = evaluate_features(
            train_z, labels[0], test_z, labels[1], probes=settings["probes"], seed=settings["seed"],
            linear_batch_norm=settings["linear_batch_norm"], fewshot_min_per_class=settings["fewshot_min_per_class"],
        )
        results[name] = {col: v for r in probe_results.values() for col, v in r.table_cells().items()}
        results[name].update(label_free.get(name, {}))
        chosen[name] = {probe: r.chosen for probe, r in probe_results.items()}
        details[name] = {p: r.details for p, r in probe_results.items() if p in ("fewshot", "retrieval")}
    if settings["trees"]:
        note += _add_trees(
            train, test, settings["modality"], results, chosen, details, settings["seed"],
            settings["fewshot_min_per_class"] if "fewshot" in settings["probes"] else None,
        )
    if settings["finetune"] or settings["risk"]:
        note += _add_finetune_and_risk(
            encoders, train, test, features, labels, results, chosen, details, settings["seed"],
            settings["finetune"], settings["risk"], pretrained_on_train=pretrained_on_train,
            finetune_budget=settings["finetune_budget"],
        )
    if settings["linear_batch_norm"] and "linear" in settings["probes"]:
        note += "; linear probe: BatchNorm without affine parameters + SGD (MAE's), lr chosen on a split of train"
    return note


def stratified_folds(y: np.ndarray, folds: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``folds`` stratified folds of the labels ``y [N]``, shuffled with ``seed``: a list of
    ``(train positions, test positions)``, each sample in exactly one test part (scikit-learn's
    ``StratifiedKFold``; a class with fewer samples than folds is missing from some test parts).

    Raises:
        DataError: with fewer labelled samples than folds, or a single class.
    """
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y)
    if y.size < folds:
        raise DataError(f"{folds}-fold cross-validation needs at least {folds} labelled samples; the data has {y.size}")
    if np.unique(y).size < 2:
        raise DataError(f"cross-validation needs at least two classes; every labelled sample is class {y[0]}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*least populated class.*")
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        return [(np.sort(a), np.sort(b)) for a, b in splitter.split(np.zeros(y.size), y)]


def _root_indices(source: SampleSource) -> torch.Tensor:
    """The root source's index of each of ``source``'s samples (what batches carry as ``"index"``)."""
    if hasattr(source, "parent"):
        return _root_indices(source.parent)[source.indices]
    return torch.arange(len(source))


def _cross_validate(
    encoders: dict[str, torch.nn.Module],
    data: SampleSource,
    encoder: Encoder,
    folds: int,
    results: dict[str, dict[str, Any]],
    chosen: dict[str, dict[str, Any]],
    details: dict[str, dict[str, Any]],
    spectra: dict[str, np.ndarray],
    settings: dict[str, Any],
    pretrained_on_train: bool,
) -> str:
    """Stratified k-fold cross-validation of every protocol on ``data`` (evaluate_run's ``folds``):
    features embedded once and sliced per fold; results are the means over folds, filled in place."""
    device = encoder.mean.device
    features, label_free, read = {}, {}, None
    for name, model in encoders.items():
        z, read = embed_source(model, data, device=device)
        features[name] = z
        label_free[name] = {"rankme": rankme(z)}  # on every sample, the same in every fold
        spectra[name] = singular_values(z)
    raw, _ = raw_features(data, encoder)
    features["raw input"] = raw
    assert read is not None
    y = _labels_at(data, read)
    # The positions in `data` of the rows read (the same unless unreadable files were skipped).
    roots = _root_indices(data)
    position_of = torch.full((int(roots.max()) + 1,), -1, dtype=torch.int64)
    position_of[roots] = torch.arange(len(data))
    positions = position_of[read]
    per_fold: list[tuple[dict, dict, dict]] = []
    note = ""
    for fit, held in stratified_folds(y.numpy(), folds, settings["seed"]):
        fold_results: dict[str, dict[str, Any]] = {}
        fold_chosen: dict[str, dict[str, Any]] = {}
        fold_details: dict[str, dict[str, Any]] = {}
        fit_t, held_t = torch.as_tensor(fit), torch.as_tensor(held)
        note = _probe_split(
            encoders, data.subset(positions[fit_t]), data.subset(positions[held_t]),
            {name: (z[fit_t], z[held_t]) for name, z in features.items()}, (y[fit_t], y[held_t]),
            fold_results, fold_chosen, fold_details, settings, pretrained_on_train=pretrained_on_train,
            label_free=label_free,
        )
        per_fold.append((fold_results, fold_chosen, fold_details))
    for name in per_fold[0][0]:
        row = results[name] = {}
        columns = list(dict.fromkeys(c for fold in per_fold for c in fold[0].get(name, {})))
        summary = {}
        for column in columns:
            values = [fold[0][name][column] for fold in per_fold if column in fold[0].get(name, {})]
            if all(isinstance(v, dict) for v in values):  # few-label cells: mean ± std over draws, per fold
                means = [float(v["mean"]) for v in values]
                row[column] = {
                    "mean": float(np.mean(means)), "std": float(np.mean([float(v["std"]) for v in values])),
                    "draws": int(sum(int(v.get("draws", 1)) for v in values)), "folds": len(values),
                }
            else:
                means = [float(v) for v in values]
                row[column] = float(np.mean(means))
            summary[column] = {"mean": float(np.mean(means)), "std": float(np.std(means, ddof=1)) if len(means) > 1 else 0.0,
                               "values": means}
        chosen[name] = {"folds": [fold[1].get(name, {}) for fold in per_fold]}
        fold_details = [fold[2].get(name, {}) for fold in per_fold]
        details[name] = {"folds": summary, **({"per_fold": fold_details} if any(fold_details) else {})}
    if "svm" in settings["probes"]:
        note += "; SVM: C by 5-fold CV inside each fold's train part"
    return note


def evaluate_run(
    run_dir: str | Path,
    data_spec: str | None = None,
    probes: tuple[str, ...] | None = None,
    method: Method | None = None,
    config: RunConfig | None = None,
    data: DatasetSplits | None = None,
    finetune: bool | None = None,
    risk: bool | None = None,
    linear_batch_norm: bool | None = None,
    trees: bool | None = None,
    folds: int | None = None,
) -> dict[str, Any]:
    """Probe the run's encoder and the baselines; store the results in ``metrics.json``.

    Args:
        run_dir: the run directory.
        data_spec: evaluate on this data instead of the run's own (same sample shape).
        probes: which probes on frozen features (default: the run's ``eval.probes``); any name of
            :func:`selfsup.evaluate.results.probe_runners`: knn, linear, svm, fewshot, retrieval.
        method, config, data: already in memory (right after training), to skip reloading.
        finetune: also fine-tune a copy of the encoder end to end with the labels
            (:func:`selfsup.evaluate.finetune.finetune_evaluate`), and of the random-init encoder as its
            baseline (supervised training from scratch); the run's encoder is not modified.
        risk: also report the risk decomposition of Dubois et al. 2023
            (:func:`selfsup.evaluate.risk.risk_decomposition`) for every row; its approximation
            term is the random-init fine-tune's training error when ``finetune`` is on, else 0.
        linear_batch_norm: the linear probe with a BatchNorm without affine parameters, trained by
            SGD (MAE's; :func:`selfsup.evaluate.linear.sgd_linear_probe`).
        trees: also a row of gradient-boosted trees on the raw input
            (:func:`selfsup.evaluate.trees.gbdt_probe`; with the ``fewshot`` probe, also on its
            labelled subsets, :func:`selfsup.evaluate.trees.gbdt_fewshot`), from the modality's
            ``tree_features``; its table row has only the trees' columns.
            ``None`` (all four): as the run's ``eval.finetune`` / ``eval.risk`` /
            ``eval.linear_batch_norm`` / ``eval.trees`` say; ``"auto"`` there means the method's
            declarations (``headline_protocol == "finetune"`` turns fine-tuning on;
            ``linear_probe_batch_norm``), and for the trees the modality's ``tree_baseline``.
        folds: data without a test split: None (default: the run's ``eval.folds``, else a
            stratified 20% held out as test) or k, stratified k-fold cross-validation: every probe,
            baseline, the trees and fine-tuning run on each fold (the rest as train) and the
            table reports the mean over folds; ``details.<row>.folds`` in ``metrics.json`` holds
            each column's mean, std and per-fold values (:func:`stratified_folds`). Embeddings
            are computed once; RankMe is on all samples. Data with a test split is a ConfigError.

    The method's ``headline_protocol`` column comes first in every row, and ``evaluation.headline``
    in ``metrics.json`` names it with its values (the linear probe when the declared protocol did
    not run).

    Returns:
        the whole metrics record, with ``evaluation`` filled in.
    """
    run_dir = Path(run_dir)
    if probes:
        check_probe_names(probes)  # a typo fails before anything is loaded
    if folds is not None and (isinstance(folds, bool) or not isinstance(folds, int) or folds < 2):
        raise ConfigError(f"folds (--folds) must be a whole number >= 2 of cross-validation folds; got {folds!r}")
    if method is None or config is None:
        config, method, _ = load_run(run_dir)
    if data is None or data_spec is not None:
        data = load_dataset(
            data_spec or config.data.name, skip_bad_files=config.skip_bad_files, options=config.data.params,
            reference=method.encoder.data_info,
        )
    check_same_shape(method, data.train, "evaluate")
    probes = tuple(probes or config.eval.probes)
    check_probe_names(probes)  # the run's own eval.probes too, before any embedding
    finetune, linear_batch_norm, declared = evaluation_choices(method, config, finetune, linear_batch_norm)
    risk = config.eval.risk if risk is None else risk
    trees = trees_choice(config, method.encoder.modality, trees)

    train, test = data.train, data.test
    device = next(method.parameters()).device
    random_method = random_init_method(config, method).to(device)
    encoders = {"pretrained": method.encoder, "random-init": random_method.encoder}
    results: dict[str, dict[str, float]] = {}
    chosen: dict[str, dict[str, Any]] = {}
    details: dict[str, dict[str, Any]] = {}  # diagnostics of fewshot, retrieval, finetune, risk
    spectra: dict[str, np.ndarray] = {}

    if train.labels is None:
        # Unlabeled data: only the label-free signal can be reported.
        for name, encoder in encoders.items():
            z, _ = embed_source(encoder, train, device=device)
            results[name] = {"rankme": rankme(z)}
            spectra[name] = singular_values(z)
        note = "the data has no labels: probes skipped, RankMe only"
    else:
        folds = config.eval.folds if folds is None else folds
        split_settings = {
            "probes": probes, "seed": config.train.seed, "linear_batch_norm": linear_batch_norm,
            "fewshot_min_per_class": config.eval.fewshot_min_per_class, "modality": method.encoder.modality,
            "trees": trees, "finetune": finetune, "risk": risk,
            "finetune_budget": {"epochs": config.eval.finetune_epochs, "lrs": tuple(config.eval.finetune_lrs)},
        }
        if folds is not None:
            if test is not None:
                raise ConfigError(
                    f"eval.folds={folds} cross-validates data without a test split, and {data.train.name} has one "
                    f"({len(train)} train / {len(test)} test samples): leave --folds out to score its test split"
                )
            note = (
                f"{folds}-fold stratified cross-validation (no test split in the data): each number is the mean over "
                "the folds, the std over folds in metrics.json details.<row>.folds"
            )
            note += _cross_validate(
                encoders, train, method.encoder, folds, results, chosen, details, spectra, split_settings,
                pretrained_on_train=False,  # pretraining read every fold's test part too
            )
        else:
            if test is None:
                train, test = holdout_split(train)
                note = "no test split in the data: a stratified 20% of it is held out as test"
            else:
                note = "probe hyperparameters chosen on a split of the train set; test used once"
                if "svm" in probes:
                    note = "probe hyperparameters chosen on the train set only (SVM: C by 5-fold CV); test used once"
            features: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
            indices: tuple[torch.Tensor, torch.Tensor] | None = None
            for name, encoder in encoders.items():
                (train_z, train_i), (test_z, test_i) = (embed_source(encoder, part, device=device) for part in (train, test))
                features[name] = (train_z, test_z)
                indices = (train_i, test_i)
            (train_r, _), (test_r, _) = raw_features(train, method.encoder), raw_features(test, method.encoder)
            features["raw input"] = (train_r, test_r)
            assert indices is not None
            # Labels of the samples that were read (an unreadable file skipped is skipped everywhere).
            labels = (_labels_at(train, indices[0]), _labels_at(test, indices[1]))
            label_free = {name: {"rankme": rankme(z)} for name, (z, _) in features.items() if name != "raw input"}
            spectra.update({name: singular_values(z) for name, (z, _) in features.items() if name != "raw input"})
            note += _probe_split(
                encoders, train, test, features, labels, results, chosen, details, split_settings,
                pretrained_on_train=data_spec in (None, config.data.name) and data.test is not None,
                label_free=label_free,
            )
    headline = headline_first(results, declared)
    if headline == "finetune" and declared == "finetune":
        note += "; fine-tuning first: the method's headline protocol, as its paper reports it"

    record = write_metrics(
        run_dir,
        {
            "evaluation": {
                "data": data.train.name,
                "results": results,
                "chosen": chosen,
                "note": note,
                **({"headline": {
                    "protocol": headline,
                    "results": {name: row[headline] for name, row in results.items() if headline in row},
                }} if headline is not None else {}),
                **({"details": details} if any(details.values()) else {}),
            }
        },
    )
    write_training_plot(run_dir, record, spectra=spectra)
    record["evaluation_table"] = _evaluation_tables(results)
    return record


def _labels_at(source: SampleSource, index: torch.Tensor) -> torch.Tensor:
    """``source``'s labels of the samples at ``index`` (batch indices are the root source's)."""
    root = source
    while hasattr(root, "parent"):
        root = root.parent
    return root.labels[index]
