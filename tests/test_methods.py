"""Every registered method: a few CPU steps, finite loss, gradients reach the backbone, teachers move."""

from __future__ import annotations

import pytest
import torch

from selfsup.methods.base import StepContext

from selfsup.backbones import BACKBONES, create_backbone, list_backbones
from selfsup.data.graph_batch import GraphBatch
from selfsup.errors import ConfigError
from selfsup.methods import METHODS, Encoder, create_method, list_methods
from selfsup.core.teacher import EMATeacher
from selfsup.rundir import method_backbone_params
from selfsup.views import create_views

SHAPES = {"image": (1, 8, 8), "vector": (13,), "timeseries": (2, 16), "table": (5,), "graph": (6,)}
# A table of four numeric columns and one categorical column of 3 categories (column 2).
TABLE_SCHEMA = {"kind": "table", "columns": [
    {"name": "a", "type": "numeric"}, {"name": "b", "type": "numeric"},
    {"name": "c", "type": "categorical", "categories": ["p", "q", "r"]},
    {"name": "d", "type": "numeric"}, {"name": "e", "type": "numeric"},
]}
CARDINALITIES = [0, 0, 3, 0, 0]
# The modalities whose encoder needs its data_info (the rest standardise plain tensors).
DATA_INFO = {"table": TABLE_SCHEMA, "graph": {"kind": "graph", "level": "node", "num_features": 6}}


# Methods that require tokens (masked and predictive ones) run on the token backbone of the modality.
TOKEN_BACKBONES = {
    "image": ("vit_tiny", {"patch_size": 2, "embed_dim": 32, "depth": 2, "num_heads": 4}),
    "timeseries": ("patch_transformer", {"patch_len": 4, "stride": 4, "dim": 32, "depth": 2, "num_heads": 4}),
    "table": ("ft_transformer", {"dim": 32, "depth": 2, "num_heads": 4, "cardinalities": CARDINALITIES}),
}


def _samples(modality: str) -> torch.Tensor:
    if modality == "graph":  # node level: 32 sample nodes of a random 40-node graph (whole-graph context)
        g = torch.Generator().manual_seed(0)
        edge_index = torch.randint(0, 40, (2, 120), generator=g)
        edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
        return GraphBatch(torch.rand(40, *SHAPES["graph"], generator=g), edge_index, center=torch.arange(32))
    x = torch.rand(32, *SHAPES[modality])
    if modality == "table":  # raw table rows: the categorical column holds category indices
        x[:, 2] = torch.randint(0, 3, (32,)).float()
    return x


def _method(name: str, modality: str = "image", backbone: str = "resnet_tiny"):
    shape = SHAPES[modality]
    stats_shape = {"image": (shape[0], 1, 1), "timeseries": (shape[0], 1)}.get(modality, shape)
    params = {}
    if modality == "table":
        params = {"hidden_dims": [32], "cardinalities": CARDINALITIES}
    if modality == "graph":
        params = {"hidden_dim": 16}
    if "tokens" in METHODS.get(name).requires and modality in TOKEN_BACKBONES:
        backbone, params = TOKEN_BACKBONES[modality]
    params = method_backbone_params(METHODS.get(name), backbone, params)  # the pooling it declares, as runs get it
    encoder = Encoder(
        create_backbone(backbone, shape, **params), torch.zeros(stats_shape), torch.ones(stats_shape), shape,
        modality if modality in DATA_INFO else None, DATA_INFO.get(modality),
    )
    return create_method(name, encoder)


@pytest.mark.parametrize("name", list_methods())
@pytest.mark.parametrize(
    "modality,backbone",
    [("image", "resnet_tiny"), ("vector", "mlp"), ("timeseries", "resnet1d"), ("table", "table_mlp"), ("graph", "gcn")],
)
def test_method_trains_a_few_steps(name: str, modality: str, backbone: str) -> None:
    declared = METHODS.get(name).modalities
    if declared is not None and modality not in declared:
        pytest.skip(f"the method declares modalities {sorted(declared)}")
    if "tokens" in METHODS.get(name).requires and modality not in TOKEN_BACKBONES:
        pytest.skip(f"no token backbone for {modality} yet")
    if modality == "graph":
        pytest.importorskip("torch_geometric")  # the GNN backbones' layers (the [graph] extra)
    torch.manual_seed(0)
    method = _method(name, modality, backbone)
    views = create_views(method.default_views or "auto", modality)
    g = torch.Generator().manual_seed(0)
    x = _samples(modality)
    groups = method.param_groups(1e-4)
    assert {id(p) for group in groups for p in group["params"]} <= {id(p) for p in method.parameters()}
    optimizer = torch.optim.SGD([{k: v for k, v in group.items() if k in ("params", "weight_decay")} for group in groups], lr=0.05)
    teachers = [m for m in method.modules() if isinstance(m, EMATeacher)]
    teacher_before = [torch.cat([p.flatten() for p in t.parameters()]).clone() for t in teachers]
    # Methods that export an average of their weights (TS2Vec) train a copy: check that one.
    trained = getattr(method, "trained_encoder", method.encoder)
    backbone_before = torch.cat([p.detach().flatten() for p in trained.backbone.parameters()]).clone()

    y = torch.arange(32) % 4
    for step in range(1, 4):
        batch_views = views(x, g, method.num_global_views, method.num_local_views)
        assert len(batch_views.local_views) == method.num_local_views
        if method.requires_labels:
            batch_views.labels = y
        out = method.training_step(batch_views, StepContext(0, 1))
        assert out.loss.ndim == 0 and torch.isfinite(out.loss)
        optimizer.zero_grad()
        out.loss.backward()
        grads = [p.grad for p in trained.backbone.parameters()]
        assert all(gr is not None for gr in grads), "some backbone parameters got no gradient"
        assert sum(gr.abs().sum() for gr in grads) > 0
        method.before_optimizer_step(StepContext(step - 1, 10))
        optimizer.step()
        method.on_step_end(StepContext(step - 1, 10))

    assert out.embeddings is not None and out.embeddings.shape == (32, method.encoder.embed_dim)
    assert not out.embeddings.requires_grad
    backbone_after = torch.cat([p.detach().flatten() for p in trained.backbone.parameters()])
    assert not torch.equal(backbone_before, backbone_after)
    for teacher, before in zip(teachers, teacher_before):
        after = torch.cat([p.flatten() for p in teacher.parameters()])
        assert not torch.equal(before, after), "the EMA teacher did not move"
        assert all(not p.requires_grad for p in teacher.parameters())


@pytest.mark.parametrize("name", list_backbones())
def test_backbone_contract(name: str) -> None:
    modality = getattr(BACKBONES.get(name), "modality", "image")
    vector = name in ("mlp", "table_mlp") or modality == "table"
    shape = (20,) if vector else (3, 16) if modality == "timeseries" else (3, 16, 16)
    x = torch.rand(4, *shape)
    if "nodes" in getattr(BACKBONES.get(name), "provides", ()):  # graph backbones: a GraphBatch of 32 sample nodes
        pytest.importorskip("torch_geometric")
        shape, x = SHAPES["graph"], _samples("graph")
    backbone = create_backbone(name, shape)
    out = backbone(x)
    assert out.shape == (len(x), backbone.embed_dim)
    assert torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None for p in backbone.parameters())


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="simclr"):
        _method("simclrr")
    with pytest.raises(ConfigError, match="resnet_tiny"):
        create_backbone("resnet_tinyy", (1, 8, 8))


def test_unknown_method_param_lists_valid_keys() -> None:
    encoder = Encoder(create_backbone("mlp", (4,)), torch.zeros(4), torch.ones(4), (4,))
    with pytest.raises(ConfigError, match="temperature"):
        create_method("simclr", encoder, temprature=0.1)
    method = create_method("simclr", encoder, temperature=0.2)
    assert method.config.temperature == 0.2


def test_resnet_rejects_vectors_with_advice() -> None:
    with pytest.raises(ConfigError, match="mlp"):
        create_backbone("resnet_tiny", (13,))
