"""Fine-tuning: the whole encoder and a linear head trained end to end with the labels.

The fine-tuning evaluation of SimCLR (Chen et al. 2020, arXiv 2002.05709, sec. B.5) and MAE (He
et al. 2022, "Masked Autoencoders Are Scalable Vision Learners", arXiv 2111.06377, sec. 4),
scaled down to run on a CPU: a fresh linear head on top of a DEEP COPY of the encoder (the run's
encoder is never modified), cross-entropy, AdamW (Loshchilov & Hutter 2019, arXiv 1711.05101)
at a constant learning rate for a few epochs, no augmentation. The learning rate is chosen from
a small grid on a stratified split of the TRAIN set; the model is then retrained from the
original encoder on all of train and scored once on test.

Unlike the probes, this function sees the model: fine-tuning is about changing it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from selfsup.errors import ConfigError, DataError
from selfsup.evaluate.common import ArrayLike, ProbeResult, labels_numpy, pick_best, stratified_split


def _as_inputs(x: ArrayLike, name: str) -> torch.Tensor:
    """Raw samples ``[N, *sample_shape]`` as a float CPU tensor; NaN is allowed (series' missing values).
    A batch that is not one tensor (a :class:`~selfsup.data.graph_batch.GraphBatch`: it answers
    ``shape``, indexing by samples and ``.to()`` as a tensor does) is taken as floats on the CPU."""
    if hasattr(x, "__torch_function__") and not isinstance(x, torch.Tensor):
        if len(x) == 0:
            raise DataError(f"{name} must be a non-empty batch of samples")
        return x.to("cpu").float()
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    if t.ndim < 2 or t.shape[0] == 0:
        raise DataError(f"{name} must be a non-empty batch of samples [N, ...], got shape {tuple(t.shape)}")
    if not (t.is_floating_point() or t.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
        raise DataError(f"{name} must be numeric, got dtype {t.dtype}")
    if torch.isinf(t.float()).any():
        raise DataError(f"{name} contains infinite values; fix or remove those samples before fine-tuning")
    return t.float()


def _train(
    encoder: nn.Module,
    num_classes: int,
    x: torch.Tensor,
    y: torch.Tensor,
    lr: float,
    epochs: int,
    batch_size: int,
    weight_decay: float,
    seed: int,
    device: torch.device,
) -> nn.Module:
    """A deep copy of ``encoder`` + a new linear head, trained on ``(x [N, ...], y [N])``; returns it in eval mode."""
    with torch.random.fork_rng(devices=[]):  # the head's init is seeded without touching the global stream
        torch.manual_seed(seed)
        model = nn.Sequential(copy.deepcopy(encoder), nn.Linear(encoder.embed_dim, num_classes)).to(device)
    for p in model.parameters():
        p.requires_grad_(True)
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    # A progress bar on a terminal (fine-tuning a large encoder on a CPU takes minutes); none in logs.
    bar = tqdm(total=epochs * math.ceil(n / batch_size), desc=f"fine-tuning (lr {lr:g})", leave=False, disable=None)
    with bar:
        for _ in range(epochs):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, batch_size):
                bar.update()
                idx = order[start : start + batch_size]
                if idx.numel() < 2 and n >= 2:  # a batch of one breaks batch norm; its sample is seen next epoch
                    continue
                loss = F.cross_entropy(model(x[idx].to(device)), y[idx].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    return model.eval()


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor, device: torch.device, batch_size: int = 512) -> torch.Tensor:
    return torch.cat([model(x[i : i + batch_size].to(device)).argmax(dim=1).cpu() for i in range(0, len(x), batch_size)])


def finetune_evaluate(
    encoder: nn.Module,
    train_x: ArrayLike,
    train_y: ArrayLike,
    test_x: ArrayLike,
    test_y: ArrayLike,
    lrs: Sequence[float] = (1e-4, 3e-4, 1e-3),
    epochs: int = 5,
    batch_size: int = 64,
    weight_decay: float = 0.01,
    val_fraction: float = 0.2,
    min_steps: int = 25,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> ProbeResult:
    """Test accuracy of the encoder fine-tuned end to end with a linear head; lr chosen on train only.

    A stratified ``val_fraction`` of the TRAIN set is held out (seeded by ``seed``); for each lr
    in ``lrs`` a deep copy of ``encoder`` plus a new linear head is trained on the rest (AdamW,
    ``epochs`` epochs, constant lr, batches of ``batch_size`` shuffled with ``seed``) and scored on
    the held-out part. The best lr (the first on ties) is then used to train a new copy on all of
    train, which is scored once on test. ``encoder`` itself is never modified (its weights, buffers
    and train/eval mode stay as they were).

    Args:
        encoder: an ``nn.Module`` with ``embed_dim`` mapping raw samples ``[N, *sample_shape]`` to
            ``[N, embed_dim]``, e.g. a run's :class:`selfsup.methods.base.Encoder` (which
            standardises its inputs itself).
        train_x: ``[N_train, *sample_shape]`` raw samples, as the loaders give them.
        train_y: ``[N_train]`` integer labels (any integer values), at least two classes.
        test_x: ``[N_test, *sample_shape]`` raw samples.
        test_y: ``[N_test]`` integer labels; used only for the final accuracy.
        lrs: candidate AdamW learning rates (one: used as is, no held-out run).
        epochs: passes over the data per training (raised so that each training takes at least
            ``min_steps`` optimiser steps: on small data sets such as UCR's, a few epochs are a
            handful of steps).
        batch_size: samples per step.
        weight_decay: AdamW's decoupled weight decay.
        val_fraction: fraction of each train class held out to choose the lr.
        min_steps: the fewest optimiser steps of a training (on the fitting part of train).
        seed: seed of the split, the head's initialisation and the batch order.
        device: where to train (default: the encoder's device).

    Returns:
        :class:`ProbeResult` named ``"finetune"`` with ``chosen={"lr": lr}``; ``details`` holds
        every lr's validation accuracy, the final model's accuracy on all of train
        (``train_accuracy``, its training error estimates the approximation error of the risk
        decomposition when the encoder is randomly initialised) and the settings.

    Raises:
        DataError: for mismatched lengths or sample shapes, infinite inputs, non-integer labels,
            or a single class in ``train_y``.
        ConfigError: for an encoder without ``embed_dim``, an empty or non-positive lr grid, or
            non-positive epochs or batch size.
    """
    if not hasattr(encoder, "embed_dim"):
        raise ConfigError(f"fine-tuning needs an encoder with an embed_dim attribute; {type(encoder).__name__} has none")
    tx, vx = _as_inputs(train_x, "train_x"), _as_inputs(test_x, "test_x")
    ty, vy = labels_numpy(train_y, "train_y"), labels_numpy(test_y, "test_y")
    for x, y, xn, yn in ((tx, ty, "train_x", "train_y"), (vx, vy, "test_x", "test_y")):
        if x.shape[0] != y.shape[0]:
            raise DataError(f"{xn} has {x.shape[0]} samples but {yn} has {y.shape[0]} labels; they must match")
    if tx.shape[1:] != vx.shape[1:]:
        raise DataError(f"train_x has samples of shape {tuple(tx.shape[1:])} but test_x {tuple(vx.shape[1:])}; they must match")
    lrs = list(dict.fromkeys(float(lr) for lr in lrs))
    if not lrs or any(not (lr > 0 and math.isfinite(lr)) for lr in lrs):
        raise ConfigError(f"lrs must hold at least one positive learning rate, got {lrs}")
    if int(epochs) < 1 or int(batch_size) < 1:
        raise ConfigError(f"epochs and batch_size must be positive integers, got epochs={epochs}, batch_size={batch_size}")
    classes, y_index = np.unique(ty, return_inverse=True)
    if classes.size < 2:
        raise DataError(f"train_y has a single class ({int(ty[0])}); fine-tuning a classifier needs at least two classes")
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    y_all = torch.from_numpy(y_index.astype(np.int64))
    fit_idx, val_idx = stratified_split(ty, val_fraction, seed)
    steps_per_epoch = max(1, math.ceil(fit_idx.size / int(batch_size)))
    epochs = max(int(epochs), math.ceil(int(min_steps) / steps_per_epoch))
    settings = dict(epochs=epochs, batch_size=int(batch_size), weight_decay=float(weight_decay), seed=seed, device=device)
    fit_sel, val_sel = torch.from_numpy(fit_idx), torch.from_numpy(val_idx)
    if len(lrs) == 1:  # nothing to choose: no held-out run (its val accuracy is NaN)
        best_lr, val_acc = lrs[0], {lrs[0]: float("nan")}
    else:
        val_acc = {}
        for lr in lrs:
            model = _train(encoder, classes.size, tx[fit_sel], y_all[fit_sel], lr, **settings)
            val_acc[lr] = float((_predict(model, tx[val_sel], device) == y_all[val_sel]).double().mean())
        best_lr = pick_best(val_acc)

    model = _train(encoder, classes.size, tx, y_all, best_lr, **settings)
    test_pred = classes[_predict(model, vx, device).numpy()]
    train_accuracy = float((_predict(model, tx, device) == y_all).double().mean())
    return ProbeResult(
        accuracy=float(np.mean(test_pred == vy)),
        chosen={"lr": best_lr},
        val_accuracy=val_acc[best_lr],
        name="finetune",
        details={
            "val_accuracies": {repr(lr): a for lr, a in val_acc.items()},
            "train_accuracy": train_accuracy,
            "optimizer": "AdamW",
            "epochs": int(epochs),
            "batch_size": int(batch_size),
            "weight_decay": float(weight_decay),
            "n_fit": int(fit_idx.size),
            "n_val": int(val_idx.size),
            "n_train": int(ty.size),
            "n_test": int(vy.size),
        },
    )
