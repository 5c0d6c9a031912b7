"""The SSL risk decomposition of Dubois, Hashimoto & Liang 2023.

"Evaluating Self-Supervised Learning via Risk Decomposition", ICML 2023, arXiv 2302.03068. The
test error of a linear probe ``f_S`` trained on the labelled train set ``S``, on top of an encoder
``phi_U`` pretrained on unlabelled data ``U``, is split into four terms that telescope:

    test error = approximation + representation usability + probe generalisation + encoder generalisation

    approximation          = inf over encoders and probes of the risk     (the architecture's limit)
    usability              = inf_f R(f o phi_pop) - approximation        (the best linear probe on an encoder
                                                                          pretrained on the whole population)
    probe generalisation   = R(f_S o phi_pop) - inf_f R(f o phi_pop)     (the probe sees only S)
    encoder generalisation = R(f_S o phi_U) - R(f_S o phi_pop)           (the encoder saw only U)

The paper's estimators (sec. 4, for ImageNet, where the encoder was pretrained on the same train
set the probe is trained on) stand in for "the population as the encoder saw it" with data the
encoder was pretrained on:

- ``train_error``: the probe trained on all of S, scored on S (both encoder and probe saw the data)
  estimates ``inf_f R(f o phi_pop)``;
- ``heldout_error``: the probe trained on S minus a held-out part S_sub (of the test set's size),
  scored on S_sub (seen by the encoder in pretraining, not by the probe) estimates
  ``R(f_S o phi_pop)``;
- ``test_error``: the probe trained on S, scored on the test set (seen by neither) is
  ``R(f_S o phi_U)``;
- approximation: the training error of a supervised model of the same architecture (encoder +
  linear head trained end to end on S); the authors' minimal code merges it into usability as
  negligible when no supervised model is at hand.

so that usability = train_error - approximation, probe generalisation = heldout_error -
train_error, encoder generalisation = test_error - heldout_error, and the four sum to test_error
exactly. Terms are 0-1 errors in [0, 1]; estimated differences can come out slightly negative.
A supervised fit that underfits (training error above the linear probe's on S) is capped at the
probe's train error, since the architecture's limit cannot be worse than a point it reaches.

Adaptation to selfsup: the encoder of a run was pretrained on the run's train split, which is
also S, exactly the paper's setting. The probe is :func:`selfsup.evaluate.linear.linear_probe`
(standardised features, L2 logistic regression) with its C chosen once on a split of S and used
for all three fits, so ``test_error`` is exactly the linear probe's test error. S_sub has the test
set's size, capped at half of S on small data sets. The decomposition assumes the encoder was
pretrained on S and not on the test set: for data it never saw (``--data``), or a test part held
out of data it was pretrained on, the encoder generalisation term means something else
(:func:`selfsup.evaluate.run.evaluate_run` says so in its note).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from selfsup.errors import ConfigError
from selfsup.evaluate.linear import _fit_predict, linear_probe
from selfsup.evaluate.common import (
    ArrayLike,
    ProbeResult,
    check_probe_inputs,
    features_numpy,
    labels_numpy,
    stratified_split,
)

TERMS: tuple[str, ...] = ("approximation", "usability", "probe_generalization", "encoder_generalization")
# Table columns of the four terms, in the order they add up.
COLUMNS: dict[str, str] = {
    "approximation": "approx err",
    "usability": "usability err",
    "probe_generalization": "probe gen err",
    "encoder_generalization": "encoder gen err",
}


def risk_decomposition(
    train_x: ArrayLike,
    train_y: ArrayLike,
    test_x: ArrayLike,
    test_y: ArrayLike,
    approximation_error: float | None = None,
    seed: int = 0,
    cs: Sequence[float] = (1e-3, 1e-2, 1e-1, 1, 10, 100),
    max_heldout_fraction: float = 0.5,
    max_iter: int = 1000,
) -> ProbeResult:
    """The four error terms of Dubois et al. 2023 (arXiv 2302.03068) for frozen features.

    See the module docstring for the definitions and estimators. ``train_x`` must be features of
    the data the encoder was pretrained on (S); the held-out part S_sub is a stratified split of
    S of ``min(N_test / N_train, max_heldout_fraction)`` of each class, seeded by ``seed + 1``.
    The probe's C is chosen exactly as :func:`selfsup.evaluate.linear.linear_probe` does (on a
    stratified 20% of S, seeded by ``seed``); the test set only ever scores.

    Args:
        train_x: ``[N_train, D]`` features of the encoder's pretraining (= probe training) split.
        train_y: ``[N_train]`` integer labels, at least two classes.
        test_x: ``[N_test, D]`` float features of data the encoder never saw.
        test_y: ``[N_test]`` integer labels.
        approximation_error: the training error of a supervised model of the same architecture
            (e.g. ``1 - finetune_evaluate(random_init_encoder, ...).details["train_accuracy"]``); ``None``:
            not estimated, taken as 0 (merged into usability, as the authors' minimal code does).
        seed: seed of the probe's validation split (S_sub uses ``seed + 1``).
        cs: candidate inverse regularisation strengths of the probe.
        max_heldout_fraction: cap on S_sub's share of S, in (0, 1).
        max_iter: L-BFGS iteration cap per fit.

    Returns:
        :class:`ProbeResult` named ``"risk"``: ``accuracy = 1 - test_error`` (the linear probe's
        test accuracy), ``chosen={"C": C}``, ``columns`` the four terms under :data:`COLUMNS`
        names; ``details`` holds the four terms under :data:`TERMS` names, ``train_error``,
        ``heldout_error``, ``test_error``, whether approximation was estimated, and the sizes.

    Raises:
        DataError: for malformed inputs (as :func:`selfsup.evaluate.linear.linear_probe`).
        ConfigError: for an ``approximation_error`` outside [0, 1] or ``max_heldout_fraction``
            outside (0, 1).
    """
    tx, ty = features_numpy(train_x, "train_x"), labels_numpy(train_y, "train_y")
    vx, vy = features_numpy(test_x, "test_x"), labels_numpy(test_y, "test_y")
    check_probe_inputs(tx, ty, vx, vy)
    if approximation_error is not None and not 0.0 <= float(approximation_error) <= 1.0:
        raise ConfigError(
            f"approximation_error must be an error rate in [0, 1] (a supervised model's training error), "
            f"got {approximation_error}"
        )
    if not 0.0 < float(max_heldout_fraction) < 1.0:
        raise ConfigError(f"max_heldout_fraction must be strictly between 0 and 1, got {max_heldout_fraction}")

    probe = linear_probe(tx, ty, vx, vy, cs=cs, seed=seed, max_iter=max_iter)  # C chosen on S only
    c = probe.chosen["C"]
    test_error = 1.0 - probe.accuracy  # R(f_S o phi_U)
    train_pred, _ = _fit_predict(tx, ty, tx, c, int(max_iter))  # the same fit, scored on S
    train_error = float(np.mean(train_pred != ty))  # ~ inf_f R(f o phi_pop)
    heldout_fraction = min(vy.size / ty.size, float(max_heldout_fraction))
    rest_idx, sub_idx = stratified_split(ty, heldout_fraction, seed + 1)
    sub_pred, _ = _fit_predict(tx[rest_idx], ty[rest_idx], tx[sub_idx], c, int(max_iter))
    heldout_error = float(np.mean(sub_pred != ty[sub_idx]))  # ~ R(f_S o phi_pop)

    # The architecture's limit cannot exceed what a linear probe on this encoder already reaches on
    # S; a short supervised fit can underfit past it, which would make usability negative.
    approximation = 0.0 if approximation_error is None else min(float(approximation_error), train_error)
    capped = approximation_error is not None and float(approximation_error) > train_error
    terms = {
        "approximation": approximation,
        "usability": train_error - approximation,
        "probe_generalization": heldout_error - train_error,
        "encoder_generalization": test_error - heldout_error,
    }
    return ProbeResult(
        accuracy=probe.accuracy,
        chosen={"C": c},
        val_accuracy=probe.val_accuracy,
        name="risk",
        details={
            **terms,
            "train_error": train_error,
            "heldout_error": heldout_error,
            "test_error": test_error,
            "approximation_estimated": approximation_error is not None,
            "approximation_capped": capped,
            "approximation_note": (
                "training error of a supervised model of the same architecture"
                + (f" ({float(approximation_error):.4f}, capped at the probe's train error: the supervised fit underfit)" if capped else "")
                if approximation_error is not None
                else "not estimated: taken as 0, so usability also holds the approximation error"
            ),
            "n_train": int(ty.size),
            "n_heldout": int(sub_idx.size),
            "n_test": int(vy.size),
        },
        columns={COLUMNS[t]: v for t, v in terms.items()},
    )
