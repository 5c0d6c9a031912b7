"""Evaluate a run directory: probes on the frozen encoder beside the two baselines.

Every number comes with (1) the same probe on a randomly initialised encoder of the same
architecture and (2) the same probe on the raw inputs, so a reader can tell what pretraining added.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfsup.config import RunConfig
from selfsup.data import ArrayDataset, DatasetSplits, load_dataset
from selfsup.errors import DataError
from selfsup.evaluate.rankme import rankme, singular_values
from selfsup.evaluate.results import evaluate_features, format_table, stratified_split
from selfsup.methods.base import Method


def holdout_split(data: ArrayDataset, test_fraction: float = 0.2, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """A stratified train/test split of a labeled dataset that came without a test split."""
    train_idx, test_idx = stratified_split(data.y.numpy(), test_fraction, seed)
    pick = lambda i: ArrayDataset(data.x[i], data.y[i], data.name, data.modality, data.class_names)  # noqa: E731
    return pick(torch.as_tensor(train_idx)), pick(torch.as_tensor(test_idx))


def _raw_features(x: torch.Tensor, method: Method) -> torch.Tensor:
    """The raw-input baseline's features: samples flattened; series standardised as the encoder
    does (TS2Vec's raw baseline is the normalised series) with missing values set to 0."""
    x = x.float()
    if x.ndim == 3:
        x = torch.nan_to_num(method.encoder.standardize(x.to(method.encoder.mean.device)).cpu(), nan=0.0)
    return x.flatten(1)


def random_init_method(config: RunConfig, like: Method) -> Method:
    """The same architecture as ``like``, freshly initialised with the run's seed."""
    from selfsup.train.runner import build_method

    torch.manual_seed(config.train.seed)
    encoder = like.encoder
    return build_method(config, encoder.input_shape, encoder.mean, encoder.std).eval()


def evaluate_run(
    run_dir: str | Path,
    data_spec: str | None = None,
    probes: tuple[str, ...] | None = None,
    method: Method | None = None,
    config: RunConfig | None = None,
    data: DatasetSplits | None = None,
) -> dict[str, Any]:
    """Probe the run's encoder and both baselines; store the results in ``metrics.json``.

    Args:
        run_dir: the run directory.
        data_spec: evaluate on this data instead of the run's own (same sample shape).
        probes: which probes (default: the run's ``eval.probes``).
        method, config, data: already in memory (right after training), to skip reloading.

    Returns:
        the whole metrics record, with ``evaluation`` filled in.
    """
    from selfsup.evaluate.plots import write_training_plot
    from selfsup.train.callbacks import embed_in_batches
    from selfsup.train.runner import load_run, write_metrics

    run_dir = Path(run_dir)
    if method is None or config is None:
        config, method, _ = load_run(run_dir)
    if data is None or data_spec is not None:
        data = load_dataset(data_spec or config.data, skip_bad_files=config.skip_bad_files)
    input_shape = method.encoder.input_shape
    if tuple(data.train.sample_shape) != input_shape:
        raise DataError(
            f"the run was trained on samples of shape {input_shape}, but {data.train.name} has samples of shape "
            f"{tuple(data.train.sample_shape)}; evaluate on data of the same shape"
        )
    probes = tuple(probes or config.eval.probes)

    train, test = data.train, data.test
    device = next(method.parameters()).device
    random_method = random_init_method(config, method).to(device)
    encoders = {"pretrained": method.encoder, "random-init": random_method.encoder}
    results: dict[str, dict[str, float]] = {}
    chosen: dict[str, dict[str, Any]] = {}
    spectra: dict[str, np.ndarray] = {}

    if train.y is None:
        # Unlabeled data: only the label-free signal can be reported.
        for name, encoder in encoders.items():
            z = embed_in_batches(encoder, train.x, device=device)
            results[name] = {"rankme": rankme(z)}
            spectra[name] = singular_values(z)
        note = "the data has no labels: probes skipped, RankMe only"
    else:
        if test is None:
            train, test = holdout_split(train)
            note = "no test split in the data: a stratified 20% of it is held out as test"
        else:
            note = "probe hyperparameters chosen on a split of the train set; test used once"
            if "svm" in probes:
                note = "probe hyperparameters chosen on the train set only (SVM: C by 5-fold CV); test used once"
        features = {
            name: (embed_in_batches(encoder, train.x, device=device), embed_in_batches(encoder, test.x, device=device))
            for name, encoder in encoders.items()
        }
        features["raw input"] = (_raw_features(train.x, method), _raw_features(test.x, method))
        for name, (train_z, test_z) in features.items():
            probe_results = evaluate_features(train_z, train.y, test_z, test.y, probes=probes, seed=config.train.seed)
            results[name] = {probe: r.accuracy for probe, r in probe_results.items()}
            chosen[name] = {probe: r.chosen for probe, r in probe_results.items()}
            if name != "raw input":
                results[name]["rankme"] = rankme(train_z)
                spectra[name] = singular_values(train_z)

    record = write_metrics(
        run_dir,
        {"evaluation": {"data": data.train.name, "results": results, "chosen": chosen, "note": note}},
    )
    write_training_plot(run_dir, record, spectra=spectra)
    record["evaluation_table"] = format_table(results)
    return record
