"""selfsup: self-supervised representation learning for every modality.

Quick start::

    from selfsup import RunConfig, pretrain
    result = pretrain(RunConfig(data="digits"), run_dir="runs/demo")
    print(result.metrics["evaluation_table"])
"""

from selfsup.backbones import create_backbone, list_backbones
from selfsup.config import ComponentConfig, RunConfig, TrainConfig
from selfsup.errors import SelfsupError
from selfsup.export import load_encoder
from selfsup.methods import create_method, list_methods, register_method
from selfsup.train.runner import pretrain

__version__ = "0.1.0"

__all__ = [
    "pretrain", "RunConfig", "TrainConfig", "ComponentConfig", "create_backbone", "list_backbones",
    "create_method", "list_methods", "register_method", "SelfsupError", "load_encoder", "__version__",
]
