"""The attack success rate (ASR) of a simulated backdoor, beside clean accuracy.

The protocol of the self-supervised backdoor papers (Saha et al. 2022, arXiv 2105.10123; Li et
al. 2023, CTRL, arXiv 2210.07346): a linear probe is fit on the encoder's features of the *clean*
training images with their clean labels (C chosen on a split of train, as in
:func:`~selfsup.evaluate.linear.linear_probe`); the ASR is the fraction of triggered test images
whose true class is *not* the target class that the probe puts in the target class. Clean
accuracy is the same probe on the untouched test images. A clean encoder's ASR is the floor
(the rate at which the trigger alone, or chance, sends images to the target class): an attack
has taken hold when a poisoned encoder's ASR is clearly above it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from selfsup.data import DatasetSplits, SampleSource, load_dataset
from selfsup.data.loader import materialize
from selfsup.data.poison import Attack, to_uint8
from selfsup.errors import DataError
from selfsup.evaluate.common import ArrayLike, labels_numpy
from selfsup.evaluate.embed import embed_in_batches, embed_source
from selfsup.evaluate.linear import linear_predict, linear_probe
from selfsup.evaluate.run import holdout_split


@dataclass
class AttackResult:
    """Clean accuracy and attack success rate of one encoder's linear probe.

    Attributes:
        clean_accuracy: the probe's accuracy on the clean test images.
        asr: fraction of triggered non-target test images the probe puts in the target class.
        clean_target_rate: the same fraction on those images *without* the trigger (what the
            probe does to them anyway).
        target_class: the attack's target class (label index).
        num_triggered: triggered test images scored.
        chosen: the probe's C.
    """

    clean_accuracy: float
    asr: float
    clean_target_rate: float
    target_class: int
    num_triggered: int
    chosen: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def attack_success_rate(predicted: ArrayLike, labels: ArrayLike, target_class: int) -> float:
    """Fraction of the samples whose true label is not ``target_class`` that are predicted as it.

    ``predicted``, ``labels``: ``[N]`` integer class labels of the triggered test images.
    """
    pred, true = labels_numpy(predicted, "predicted"), labels_numpy(labels, "labels")
    if pred.shape != true.shape:
        raise DataError(f"predicted has {pred.size} labels and labels has {true.size}; they must match")
    others = true != target_class
    if not others.any():
        raise DataError(f"every test image is of the target class {target_class}; the ASR needs images of other classes")
    return float(np.mean(pred[others] == target_class))


def attack_probe(
    train_z: ArrayLike, train_y: ArrayLike, test_z: ArrayLike, test_y: ArrayLike, triggered_z: ArrayLike,
    triggered_y: ArrayLike, target_class: int, seed: int = 0,
) -> AttackResult:
    """The ASR protocol on features: a linear probe fit on clean train features ``[N, D]`` and
    labels (C chosen on a split of train), scored on clean test features (accuracy) and on the
    triggered test images' features ``triggered_z [M, D]`` with their true labels (ASR)."""
    probe = linear_probe(train_z, train_y, test_z, test_y, seed=seed)
    C = probe.chosen["C"]
    triggered_pred = linear_predict(train_z, train_y, triggered_z, C)
    clean_pred = linear_predict(train_z, train_y, test_z, C)
    test_labels = labels_numpy(test_y, "test_y")
    return AttackResult(
        clean_accuracy=probe.accuracy,
        asr=attack_success_rate(triggered_pred, triggered_y, target_class),
        clean_target_rate=attack_success_rate(clean_pred, test_labels, target_class),
        target_class=int(target_class),
        num_triggered=int(np.sum(labels_numpy(triggered_y, "triggered_y") != target_class)),
        chosen={"C": C},
    )


def read_attack(path: str | Path) -> Attack:
    """The :class:`~selfsup.data.poison.Attack` that ``selfsup poison`` wrote (``*.attack.json``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"attack file {path} does not exist; pass the .attack.json that selfsup poison wrote")
    try:
        values = json.loads(path.read_text())
        return Attack.from_dict(values)
    except (json.JSONDecodeError, TypeError) as error:
        raise DataError(f"attack file {path} is not an attack description ({error}); pass the .attack.json that selfsup poison wrote") from None


def triggered_test_images(test: SampleSource, attack: Attack) -> tuple[torch.Tensor, torch.Tensor]:
    """The test images whose class is not the target, with the attack's trigger (uint8
    ``[M, C, H, W]``; a patch at a random location per image, seeded by the attack) and their labels."""
    batch = materialize(test)
    labels = _root_labels(test, batch["index"])
    keep = labels != attack.target_class
    images = to_uint8(batch["x"][keep])
    return attack.apply(images), labels[keep]


def _root_labels(source: SampleSource, index: torch.Tensor) -> torch.Tensor:
    """Labels of the samples at ``index`` (batch indices are the root source's)."""
    root = source
    while hasattr(root, "parent"):
        root = root.parent
    return root.labels[index]


def evaluate_attack(
    encoder: torch.nn.Module, clean: DatasetSplits, attack: Attack, seed: int = 0, device: torch.device | str = "cpu",
) -> AttackResult:
    """The ASR protocol for ``encoder`` (features in batches): probe fit on ``clean.train`` with its
    labels, clean accuracy on ``clean.test`` (a stratified 20% of train held out when there is
    none), ASR on its non-target images with ``attack``'s trigger."""
    train, test = clean.train, clean.test
    if train.labels is None:
        raise DataError(f"{train.name} has no labels; the attack success rate needs labelled clean data")
    if test is None:
        train, test = holdout_split(train)
    (train_z, train_i), (test_z, test_i) = (embed_source(encoder, part, device=device) for part in (train, test))
    images, labels = triggered_test_images(test, attack)
    triggered_z = embed_in_batches(encoder, images, device=device)
    train_y, test_y = _root_labels(train, train_i), _root_labels(test, test_i)
    return attack_probe(train_z, train_y, test_z, test_y, triggered_z, labels, attack.target_class, seed=seed)


def clean_data_of(attack: Attack) -> DatasetSplits:
    """The clean data an attack was made from (its data spec and train subset)."""
    if not attack.data:
        raise DataError("the attack file does not name the clean data it was made from; pass --data")
    options = {"train_subset": attack.train_subset} if attack.train_subset else {}
    return load_dataset(attack.data, options=options)
