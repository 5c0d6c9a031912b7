"""Weighted k-nearest-neighbour classification of frozen embeddings.

The protocol of Wu, Xiong, Yu & Lin 2018, "Unsupervised Feature Learning via Non-Parametric
Instance Discrimination" (arXiv 1805.01978), also used by DINO (Caron et al. 2021, "Emerging
Properties in Self-Supervised Vision Transformers", arXiv 2104.14294): features are L2-normalised,
similarity is the cosine, and each of the k most similar training samples votes for its class
with weight ``exp(sim / temperature)``; the class with the largest summed vote wins.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from selfsup.errors import ConfigError
from selfsup.evaluate.common import (
    ArrayLike,
    ProbeResult,
    check_probe_inputs,
    features_tensor,
    labels_numpy,
    pick_best,
    stratified_split,
)

# Elements of one [chunk, N_train] similarity block; 2**24 float32 = 64 MiB.
_BLOCK_ELEMENTS = 2**24
# Vote temperatures searched by knn_evaluate; 0.07 (Wu et al., DINO) first, so it wins ties.
KNN_TEMPERATURES: tuple[float, ...] = (0.07, 0.02, 0.05, 0.1, 0.2, 0.5)


def _check_knn_params(ks: Sequence[int], temperature: float) -> None:
    if not temperature > 0:
        raise ConfigError(f"temperature must be positive, got {temperature}")
    bad = [k for k in ks if int(k) != k or k < 1]
    if bad:
        raise ConfigError(f"every k must be a positive integer, got {bad}")


def _knn_predict_many(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    query_x: torch.Tensor,
    ks: Sequence[int],
    temperature: float,
    num_classes: int,
    chunk_size: int | None = None,
) -> dict[int, torch.Tensor]:
    """Predictions ``{k: [Q] class indices}`` for several k, sharing one top-max(k) search.

    ``train_x`` ``[N, D]``, ``query_x`` ``[Q, D]`` (float, same device), ``train_y`` ``[N]`` long in
    ``[0, num_classes)``. Queries are processed in chunks so only a ``[chunk, N]`` block of
    similarities exists at a time.
    """
    n_train = train_x.shape[0]
    k_max = max(ks)
    if k_max > n_train:
        raise ConfigError(f"k={k_max} exceeds the {n_train} training samples")
    if chunk_size is None:
        chunk_size = max(1, min(4096, _BLOCK_ELEMENTS // n_train))
    train_n = F.normalize(train_x.float(), dim=1)
    train_y = train_y.to(train_x.device)
    preds: dict[int, list[torch.Tensor]] = {k: [] for k in ks}
    for start in range(0, query_x.shape[0], chunk_size):
        query_n = F.normalize(query_x[start : start + chunk_size].float(), dim=1)
        sims = query_n @ train_n.T  # [c, N] cosine similarities
        top_sims, top_idx = sims.topk(k_max, dim=1)  # sorted, most similar first
        del sims
        # exp(sim / T), shifted by each row's maximum: the same argmax, no overflow for small T.
        weights = torch.exp((top_sims - top_sims[:, :1]) / temperature)
        top_labels = train_y[top_idx]
        for k in ks:
            votes = torch.zeros(query_n.shape[0], num_classes, device=query_n.device, dtype=weights.dtype)
            votes.scatter_add_(1, top_labels[:, :k], weights[:, :k])
            preds[k].append(votes.argmax(dim=1))
    return {k: torch.cat(p).cpu() for k, p in preds.items()}


def knn_predict(
    train_x: ArrayLike,
    train_y: ArrayLike,
    query_x: ArrayLike,
    k: int,
    temperature: float = 0.07,
    num_classes: int | None = None,
    *,
    chunk_size: int | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Weighted kNN predictions (Wu et al. 2018, arXiv 1805.01978; Caron et al. 2021, arXiv 2104.14294).

    Args:
        train_x: ``[N, D]`` float features of the labelled samples (numpy or torch).
        train_y: ``[N]`` integer labels in ``[0, num_classes)``.
        query_x: ``[Q, D]`` float features to classify.
        k: number of neighbours, ``1 <= k <= N``.
        temperature: the vote of a neighbour with cosine similarity ``s`` is ``exp(s / temperature)``.
        num_classes: number of classes (default ``max(train_y) + 1``).
        chunk_size: queries per similarity block (default: blocks of about 16M entries).
        device: where to compute (default: ``train_x``'s device if it is a tensor, else CPU).

    Returns:
        ``[Q]`` int64 CPU tensor of predicted class indices (ties go to the lower class index).
    """
    tx = features_tensor(train_x, "train_x")
    qx = features_tensor(query_x, "query_x")
    ty = labels_numpy(train_y, "train_y")
    check_probe_inputs(tx, ty, qx, np.zeros(qx.shape[0], dtype=np.int64))
    _check_knn_params([k], temperature)
    if ty.min() < 0:
        raise ConfigError("knn_predict needs labels in [0, num_classes); got a negative label in train_y")
    if num_classes is None:
        num_classes = int(ty.max()) + 1
    elif ty.max() >= num_classes:
        raise ConfigError(f"train_y has label {int(ty.max())} but num_classes={num_classes}")
    device = torch.device(device) if device is not None else tx.device
    return _knn_predict_many(
        tx.to(device), torch.from_numpy(ty), qx.to(device), [int(k)], temperature, num_classes, chunk_size
    )[int(k)]


def knn_evaluate(
    train_x: ArrayLike,
    train_y: ArrayLike,
    test_x: ArrayLike,
    test_y: ArrayLike,
    ks: Sequence[int] = (1, 5, 10, 20, 50, 100),
    temperature: float | Sequence[float] = KNN_TEMPERATURES,
    val_fraction: float = 0.2,
    seed: int = 0,
    *,
    device: str | torch.device | None = None,
) -> ProbeResult:
    """Weighted kNN accuracy of frozen features, with k and temperature chosen on a held-out part of train.

    The protocol of Wu et al. 2018 (arXiv 1805.01978) and DINO (Caron et al. 2021, arXiv
    2104.14294): cosine similarity of L2-normalised features, the top-k neighbours each vote
    ``exp(sim / temperature)`` for their class. A stratified ``val_fraction`` of the TRAIN set is
    held out (seeded by ``seed``); every pair (k, temperature) with k in ``ks`` not larger than the
    remaining fitting samples (if none fits, k = the number of fitting samples is used) is scored
    on it; the best pair (ties: the smaller k, then the temperature listed first) is then used with
    the whole train set as neighbours, and scored once on test.

    Args:
        train_x: ``[N_train, D]`` float features (numpy or torch).
        train_y: ``[N_train]`` integer labels (any integer values).
        test_x: ``[N_test, D]`` float features.
        test_y: ``[N_test]`` integer labels; used only for the final accuracy.
        ks: candidate numbers of neighbours.
        temperature: candidate vote temperatures (default :data:`KNN_TEMPERATURES`, 0.07 -- the
            value of Wu et al. and DINO -- first); a single number fixes it.
        val_fraction: fraction of each train class held out to choose k and the temperature.
        seed: seed of the held-out split.
        device: where to compute (default: ``train_x``'s device if it is a tensor, else CPU).

    Returns:
        :class:`ProbeResult` named ``"knn"`` with ``chosen={"k": k, "temperature": t}``;
        ``details`` holds the validation accuracy of every pair tried (keys ``"k=5,T=0.07"``) and
        the split sizes.

    Raises:
        DataError: for mismatched lengths or widths, NaN/inf features, non-integer labels.
        ConfigError: for a non-positive k or temperature, or ``val_fraction`` outside (0, 1).
    """
    tx, ty = features_tensor(train_x, "train_x"), labels_numpy(train_y, "train_y")
    vx, vy = features_tensor(test_x, "test_x"), labels_numpy(test_y, "test_y")
    check_probe_inputs(tx, ty, vx, vy)
    ks = sorted({int(k) for k in ks})
    if not ks:
        raise ConfigError("ks is empty; give at least one number of neighbours")
    temperatures = [float(temperature)] if np.ndim(temperature) == 0 else list(dict.fromkeys(map(float, temperature)))
    if not temperatures:
        raise ConfigError("temperature is an empty list; give at least one vote temperature, e.g. 0.07")
    for t in temperatures:
        _check_knn_params(ks, t)
    device = torch.device(device) if device is not None else tx.device
    tx, vx = tx.to(device), vx.to(device)

    classes, y_index = np.unique(ty, return_inverse=True)  # labels -> 0..C-1
    num_classes = classes.size
    y_index_t = torch.from_numpy(y_index.astype(np.int64))

    fit_idx, val_idx = stratified_split(ty, val_fraction, seed)
    candidates = [k for k in ks if k <= fit_idx.size] or [int(fit_idx.size)]
    fit_sel, val_sel = torch.from_numpy(fit_idx).to(device), torch.from_numpy(val_idx).to(device)
    val_true = torch.from_numpy(y_index[val_idx].astype(np.int64))
    val_acc: dict[tuple[int, float], float] = {}
    by_temperature = {
        t: _knn_predict_many(tx[fit_sel], y_index_t[torch.from_numpy(fit_idx)], tx[val_sel], candidates, t, num_classes)
        for t in temperatures
    }
    for k in candidates:  # insertion order = tie-break order: smaller k, then the first temperature
        for t in temperatures:
            val_acc[(k, t)] = float((by_temperature[t][k] == val_true).double().mean())
    best_k, best_t = pick_best(val_acc)

    test_pred = _knn_predict_many(tx, y_index_t, vx, [best_k], best_t, num_classes)[best_k]
    accuracy = float(np.mean(classes[test_pred.numpy()] == vy))
    return ProbeResult(
        accuracy=accuracy,
        chosen={"k": best_k, "temperature": best_t},
        val_accuracy=val_acc[(best_k, best_t)],
        name="knn",
        details={
            "val_accuracies": {f"k={k},T={t:g}": a for (k, t), a in val_acc.items()},
            "temperatures": temperatures,
            "n_fit": int(fit_idx.size),
            "n_val": int(val_idx.size),
            "n_train": int(ty.size),
            "n_test": int(vy.size),
        },
    )
