"""DCLW: decoupled contrastive learning with von Mises-Fisher weighting of the positives.

Yeh, Hong, Hsu, Liu, Chen, LeCun 2022, "Decoupled Contrastive Learning", arXiv 2110.06848.
DCL (``dcl.py``) whose positive term is weighted by ``w_i = 2 - N softmax_i(cos_i / sigma)``:
positive pairs that are already far apart (hard) weigh more than 1, easy ones less; the weights
average to 1 over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from selfsup.config import PositiveFloat, PositiveInt
from selfsup.losses.contrastive import dcl_loss, dclw_weight
from selfsup.methods.base import register_method
from selfsup.methods.dcl import DCL


@dataclass
class DCLWConfig:
    temperature: PositiveFloat = 0.1  # the paper's value; on digits 0.1, 0.2 and 0.5 all learn
    sigma: PositiveFloat = 0.5  # concentration of the vMF weighting, the paper's value
    proj_hidden_dim: PositiveInt = 512  # SimCLR's projector, scaled down as in simclr.py
    proj_dim: PositiveInt = 128


@register_method("dclw")
class DCLW(DCL):
    Config = DCLWConfig
    paper = "Yeh et al. 2022, arXiv 2110.06848"

    def loss(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        weight = partial(dclw_weight, sigma=self.config.sigma)
        return dcl_loss(z1, z2, self.config.temperature, weight_fn=weight)
