"""Losses: pure functions of embeddings, one file per family.

Every loss takes tensors and hyperparameters and returns a scalar tensor; no state lives in the
math. State (queues, centres, running correlations) lives in small modules beside it:
:mod:`selfsup.losses.memory` and :mod:`selfsup.losses.distillation_state`.
"""

from selfsup.losses.clustering import sinkhorn_knopp, swav_loss
from selfsup.losses.contrastive import (
    dcl_loss,
    dclw_weight,
    info_nce,
    multiview_info_nce,
    ntxent_am_loss,
    supcon_loss,
)
from selfsup.losses.distillation import dino_loss, negative_cosine, normalized_mse
from selfsup.losses.graph import bgrl_loss, dgi_loss, dgi_summary, grace_loss, scaled_cosine_error
from selfsup.losses.masked import homologous_contrastive_loss, masked_patch_l1, masked_patch_mse, normalize_patches
from selfsup.losses.infomax import barlow_twins_loss, mixup_cross_correlation_loss, vicreg_loss, whiten, wmse_loss
from selfsup.losses.moco import moco_loss, moco_v3_loss, nearest_neighbour, nnclr_loss
from selfsup.losses.predictive import data2vec_loss, data2vec_targets, ijepa_loss
from selfsup.losses.timeseries import hierarchical_contrastive_loss

__all__ = [
    "barlow_twins_loss", "data2vec_loss", "data2vec_targets", "dcl_loss", "dclw_weight", "dino_loss",
    "hierarchical_contrastive_loss", "ijepa_loss", "info_nce",
    "mixup_cross_correlation_loss", "moco_loss", "moco_v3_loss", "multiview_info_nce", "nearest_neighbour",
    "negative_cosine", "nnclr_loss", "normalized_mse", "ntxent_am_loss", "sinkhorn_knopp", "supcon_loss",
    "swav_loss", "vicreg_loss", "whiten", "wmse_loss",
    "homologous_contrastive_loss", "masked_patch_l1", "masked_patch_mse", "normalize_patches",
    "bgrl_loss", "dgi_loss", "dgi_summary", "grace_loss", "scaled_cosine_error",
]
