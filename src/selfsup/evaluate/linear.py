"""Linear probe: L2-regularised multinomial logistic regression on frozen, standardised features.

The probe follows the linear-evaluation protocol of CLIP (Radford et al. 2021, "Learning
Transferable Visual Models From Natural Language Supervision", arXiv 2103.00020): scikit-learn's
L-BFGS logistic regression, with the inverse regularisation strength C swept on a validation split
held out from the training data. Features are standardised with statistics of the fitting data only.

With ``batch_norm=True`` the probe is MAE's instead (He et al. 2022, "Masked Autoencoders Are
Scalable Vision Learners", arXiv 2111.06377, appendix A.1 and its ``main_linprobe.py``): a BatchNorm
without affine parameters (``eps=1e-6``) in front of a linear layer, trained by mini-batch SGD
with momentum and no weight decay (:func:`sgd_linear_probe`). The L-BFGS probe fits on the whole
fitting set at once, so standardising with that set's fixed statistics is what a BatchNorm would do
there; the BatchNorm differs once training is mini-batch: each step normalises with its batch's
statistics (and the head learns on those), and test samples are normalised with the running
statistics gathered during training.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from selfsup.errors import ConfigError, DataError
from selfsup.evaluate.common import (
    ArrayLike,
    ProbeResult,
    check_probe_inputs,
    features_numpy,
    features_tensor,
    labels_numpy,
    pick_best,
    stratified_split,
)

BATCH_NORM_EPS = 1e-6  # MAE's BatchNorm1d(affine=False, eps=1e-6)


def _standardize(fit_x: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    """Standardise with the mean and std of ``fit_x`` (``[N, D]``); constant features get std 1."""
    mean = fit_x.mean(axis=0)
    std = fit_x.std(axis=0)
    std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
    return [(a - mean) / std for a in (fit_x, *others)]


def _fit_predict(
    fit_x: np.ndarray, fit_y: np.ndarray, query_x: np.ndarray, C: float, max_iter: int
) -> tuple[np.ndarray, bool]:
    """Fit logistic regression on standardised ``fit_x``; return predictions on ``query_x`` and convergence."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    fit_s, query_s = _standardize(fit_x, query_x)
    # lbfgs minimises the multinomial (softmax) cross-entropy whenever there are more than two classes.
    model = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(fit_s, fit_y)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    converged = converged and bool(np.all(np.asarray(model.n_iter_) < max_iter))
    for w in caught:  # re-emit anything that is not convergence noise
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return model.predict(query_s), converged


def linear_probe(
    train_x: ArrayLike,
    train_y: ArrayLike,
    test_x: ArrayLike,
    test_y: ArrayLike,
    cs: Sequence[float] = (1e-3, 1e-2, 1e-1, 1, 10, 100),
    val_fraction: float = 0.2,
    seed: int = 0,
    max_iter: int = 1000,
    batch_norm: bool = False,
) -> ProbeResult:
    """Linear-probe accuracy of frozen features, with C chosen on a held-out part of train.

    A stratified ``val_fraction`` of the TRAIN set is held out (seeded by ``seed``). For each C in
    ``cs`` a logistic regression (scikit-learn, L-BFGS, multinomial for more than two classes,
    L2 penalty with inverse strength C) is fit on the rest, after standardising features with the
    fitting part's mean and std, and scored on the held-out part. The best C (the first in ``cs``
    on ties) is refit on the whole train set (standardised with the whole train set's statistics)
    and scored once on test. Protocol as in CLIP (Radford et al. 2021, arXiv 2103.00020).

    Args:
        train_x: ``[N_train, D]`` float features (numpy or torch).
        train_y: ``[N_train]`` integer labels, at least two classes.
        test_x: ``[N_test, D]`` float features.
        test_y: ``[N_test]`` integer labels; used only for the final accuracy.
        cs: candidate inverse regularisation strengths.
        val_fraction: fraction of each train class held out to choose C.
        seed: seed of the held-out split.
        max_iter: L-BFGS iteration cap per fit.
        batch_norm: MAE's probe instead: :func:`sgd_linear_probe` with a BatchNorm without affine
            parameters before the linear layer (``cs`` and ``max_iter`` do not apply; the learning
            rate is chosen on the same held-out part of train).

    Returns:
        :class:`ProbeResult` named ``"linear"`` with ``chosen={"C": C}``. ``details["converged"]``
        says whether the final fit converged within ``max_iter``; ``details["not_converged_cs"]``
        lists candidate Cs whose validation fit did not. ConvergenceWarnings are not emitted.

    Raises:
        DataError: for mismatched lengths or widths, NaN/inf features, non-integer labels, or a
            single class in ``train_y``.
        ConfigError: for a non-positive C or ``max_iter``, or ``val_fraction`` outside (0, 1).
    """
    if batch_norm:
        return sgd_linear_probe(train_x, train_y, test_x, test_y, batch_norm=True, val_fraction=val_fraction, seed=seed)
    tx, ty = features_numpy(train_x, "train_x"), labels_numpy(train_y, "train_y")
    vx, vy = features_numpy(test_x, "test_x"), labels_numpy(test_y, "test_y")
    check_probe_inputs(tx, ty, vx, vy)
    cs = list(dict.fromkeys(float(c) for c in cs))
    if not cs:
        raise ConfigError("cs is empty; give at least one regularisation strength C")
    if any(not c > 0 for c in cs):
        raise ConfigError(f"every C must be positive, got {cs}")
    if int(max_iter) < 1:
        raise ConfigError(f"max_iter must be a positive integer, got {max_iter}")
    if np.unique(ty).size < 2:
        raise DataError(f"train_y has a single class ({int(ty[0])}); a linear probe needs at least two classes")

    fit_idx, val_idx = stratified_split(ty, val_fraction, seed)
    val_acc: dict[float, float] = {}
    not_converged: list[float] = []
    for c in cs:
        pred, ok = _fit_predict(tx[fit_idx], ty[fit_idx], tx[val_idx], c, int(max_iter))
        val_acc[c] = float(np.mean(pred == ty[val_idx]))
        if not ok:
            not_converged.append(c)
    best_c = pick_best(val_acc)

    test_pred, converged = _fit_predict(tx, ty, vx, best_c, int(max_iter))
    return ProbeResult(
        accuracy=float(np.mean(test_pred == vy)),
        chosen={"C": best_c},
        val_accuracy=val_acc[best_c],
        name="linear",
        details={
            "val_accuracies": {repr(c): a for c, a in val_acc.items()},
            "converged": converged,
            "not_converged_cs": not_converged,
            "max_iter": int(max_iter),
            "n_fit": int(fit_idx.size),
            "n_val": int(val_idx.size),
            "n_train": int(ty.size),
            "n_test": int(vy.size),
        },
    )


def train_linear_head(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    lr: float,
    batch_norm: bool,
    epochs: int,
    batch_size: int,
    momentum: float = 0.9,
    seed: int = 0,
) -> tuple[nn.Module, bool]:
    """A linear classifier on frozen features ``x [N, D]`` (labels ``y [N]`` in ``[0, num_classes)``),
    trained by mini-batch SGD; returns it in eval mode and whether training stayed finite.

    With ``batch_norm`` the model is ``BatchNorm1d(D, affine=False, eps=1e-6) -> Linear`` as in MAE's
    linear probe: during training each batch is standardised with its own mean and (biased)
    variance; the running statistics are the average over every training batch (``momentum=None``:
    the features are frozen, so their statistics do not drift and an equal-weight average estimates
    them best; MAE's momentum 0.1 approximates it), and eval mode standardises with them. The head
    starts from a truncated normal of std 0.01 and zero bias (MAE's), seeded by ``seed``, which also
    orders the batches. SGD with ``momentum``, no weight decay; the learning rate warms up linearly
    over the first tenth of the steps, then follows a half cosine to 0. A batch of one sample (the
    last of an epoch) is skipped: batch statistics need two. Training stops at a non-finite loss.
    """
    n, dim = x.shape
    with torch.random.fork_rng(devices=[]):  # seeded without touching the global stream
        torch.manual_seed(seed)
        head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(head.weight, std=0.01)
        nn.init.zeros_(head.bias)
    layers: list[nn.Module] = [nn.BatchNorm1d(dim, affine=False, eps=BATCH_NORM_EPS, momentum=None)] if batch_norm else []
    model = nn.Sequential(*layers, head).to(x.device).train()
    optimizer = torch.optim.SGD(head.parameters(), lr=lr, momentum=momentum, weight_decay=0.0)
    total = epochs * math.ceil(n / batch_size)
    warmup = total // 10
    generator = torch.Generator().manual_seed(seed)
    step, finite = 0, True
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(x.device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            if idx.numel() < 2 and n >= 2:
                step += 1
                continue
            scale = (step + 1) / warmup if step < warmup else 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
            for group in optimizer.param_groups:
                group["lr"] = lr * scale
            loss = F.cross_entropy(model(x[idx]), y[idx])
            if not torch.isfinite(loss):
                finite = False
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        if not finite:
            break
    return model.eval(), finite


@torch.no_grad()
def _predict_head(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    logits = model(x)
    return logits.argmax(dim=1).cpu().numpy()


def sgd_linear_probe(
    train_x: ArrayLike,
    train_y: ArrayLike,
    test_x: ArrayLike,
    test_y: ArrayLike,
    batch_norm: bool = True,
    lrs: Sequence[float] = (0.01, 0.1, 1.0),
    epochs: int = 90,
    batch_size: int = 256,
    min_steps: int = 200,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> ProbeResult:
    """MAE's linear probe: a linear layer on frozen features trained by mini-batch SGD, with (by
    default) a BatchNorm without affine parameters in front; the lr chosen on a held-out part of train.

    He et al. 2022 (arXiv 2111.06377, appendix A.1) normalise the pre-trained features with an
    extra BatchNorm layer without affine transformation before the linear classifier, trained
    90 epochs without weight decay. A stratified ``val_fraction`` of the TRAIN set is held
    out (seeded by ``seed``); for each lr in ``lrs`` a head is trained on the rest
    (:func:`train_linear_head`) and scored on the held-out part; the best lr (the first on ties) is
    retrained on all of train and scored once on test. ``epochs`` is raised so that a training takes
    at least ``min_steps`` steps on small data. The features are used as given: without
    ``batch_norm`` nothing standardises them (MAE's probe without its BatchNorm).

    Returns:
        :class:`ProbeResult` named ``"linear"`` with ``chosen={"lr": lr}``; ``details`` holds every
        lr's validation accuracy, ``batch_norm``, ``diverged_lrs`` (trainings whose loss became
        non-finite: scored 0) and the settings.

    Raises:
        DataError: as :func:`linear_probe`.
        ConfigError: for an empty or non-positive lr grid, or non-positive epochs, batch size or
            ``min_steps``, or ``val_fraction`` outside (0, 1).
    """
    tx, ty = features_tensor(train_x, "train_x"), labels_numpy(train_y, "train_y")
    vx, vy = features_tensor(test_x, "test_x").to(tx.device), labels_numpy(test_y, "test_y")
    check_probe_inputs(tx, ty, vx, vy)
    lrs = list(dict.fromkeys(float(lr) for lr in lrs))
    if not lrs or any(not (lr > 0 and math.isfinite(lr)) for lr in lrs):
        raise ConfigError(f"lrs must hold at least one positive learning rate, got {lrs}")
    if int(epochs) < 1 or int(batch_size) < 2 or int(min_steps) < 1:
        raise ConfigError(
            f"epochs and min_steps must be positive and batch_size at least 2, got epochs={epochs}, "
            f"batch_size={batch_size}, min_steps={min_steps}"
        )
    classes, y_index = np.unique(ty, return_inverse=True)
    if classes.size < 2:
        raise DataError(f"train_y has a single class ({int(ty[0])}); a linear probe needs at least two classes")
    y_all = torch.from_numpy(y_index.astype(np.int64)).to(tx.device)
    fit_idx, val_idx = stratified_split(ty, val_fraction, seed)
    batch = min(int(batch_size), fit_idx.size)
    epochs = max(int(epochs), math.ceil(int(min_steps) / math.ceil(fit_idx.size / batch)))
    settings = dict(num_classes=int(classes.size), batch_norm=bool(batch_norm), epochs=epochs, batch_size=batch, seed=seed)
    fit_sel, val_sel = (torch.from_numpy(i).to(tx.device) for i in (fit_idx, val_idx))
    val_acc: dict[float, float] = {}
    diverged: list[float] = []
    for lr in lrs:
        model, finite = train_linear_head(tx[fit_sel], y_all[fit_sel], lr=lr, **settings)
        val_acc[lr] = float(np.mean(_predict_head(model, tx[val_sel]) == y_index[val_idx])) if finite else 0.0
        if not finite:
            diverged.append(lr)
    best_lr = pick_best(val_acc)
    model, finite = train_linear_head(tx, y_all, lr=best_lr, **settings)
    accuracy = float(np.mean(classes[_predict_head(model, vx)] == vy)) if finite else 0.0
    return ProbeResult(
        accuracy=accuracy,
        chosen={"lr": best_lr},
        val_accuracy=val_acc[best_lr],
        name="linear",
        details={
            "protocol": "SGD" + (" + BatchNorm without affine parameters (MAE)" if batch_norm else ""),
            "batch_norm": bool(batch_norm),
            "val_accuracies": {repr(lr): a for lr, a in val_acc.items()},
            "diverged_lrs": diverged,
            "final_diverged": not finite,
            "epochs": int(epochs),
            "batch_size": int(batch),
            "n_fit": int(fit_idx.size),
            "n_val": int(val_idx.size),
            "n_train": int(ty.size),
            "n_test": int(vy.size),
        },
    )


def linear_predict(train_x: ArrayLike, train_y: ArrayLike, query_x: ArrayLike, C: float, max_iter: int = 1000) -> np.ndarray:
    """Labels ``[N_query]`` that the L-BFGS linear probe with inverse regularisation ``C``, fit on
    all of ``(train_x, train_y)`` (standardised with their statistics), gives ``query_x
    [N_query, D]``: the probe :func:`linear_probe` scores, for protocols that need its predictions
    (the attack success rate, :mod:`selfsup.evaluate.attack`)."""
    tx, ty = features_numpy(train_x, "train_x"), labels_numpy(train_y, "train_y")
    qx = features_numpy(query_x, "query_x")
    if qx.shape[1] != tx.shape[1]:
        raise DataError(f"query_x has {qx.shape[1]} features per sample but train_x has {tx.shape[1]}")
    predicted, _ = _fit_predict(tx, ty, qx, float(C), int(max_iter))
    return predicted
