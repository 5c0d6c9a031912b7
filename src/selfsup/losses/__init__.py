"""Losses: pure functions of embeddings, one file per family.

Every loss takes tensors and hyperparameters and returns a scalar tensor; no state lives here.
"""

from selfsup.losses.contrastive import info_nce
from selfsup.losses.distillation import normalized_mse
from selfsup.losses.infomax import barlow_twins_loss, vicreg_loss

__all__ = ["info_nce", "normalized_mse", "barlow_twins_loss", "vicreg_loss"]
