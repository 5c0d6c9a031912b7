"""The graph methods (GRACE, BGRL, DGI, GraphMAE): losses against slow references written from the
papers, the properties each method rests on, and a short learning test on a stochastic block model.

References are naive loops in float64, sharing no vectorisation with the code under test.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from selfsup.backbones.base import create_backbone
from selfsup.config import RunConfig, load_yaml
from selfsup.data.graph_batch import GraphBatch
from selfsup.evaluate import linear_probe
from selfsup.evaluate.quality import normalized_std
from selfsup.losses.graph import bgrl_loss, dgi_loss, dgi_summary, grace_loss, scaled_cosine_error
from selfsup.methods import METHODS, Encoder, StepContext, create_method
from selfsup.methods.dgi import corrupt, shuffle_within_graphs
from selfsup.methods.graphmae import mask_nodes
from selfsup.train.runner import apply_method_defaults, resolve_config
from selfsup.views import create_views

needs_pyg = pytest.mark.skipif(
    importlib.util.find_spec("torch_geometric") is None, reason="the GNN backbones need PyTorch Geometric ([graph] extra)"
)
GRAPH_METHODS = ["grace", "bgrl", "dgi", "graphmae"]
RECIPES = Path(__file__).resolve().parents[1] / "recipes"
PACKAGES_INFO = {"kind": "graph", "level": "node", "num_features": 1500}  # benchmarks/data/package_graph.npz


def _randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


# --------------------------------------------------------------------------- GRACE


def _grace_one_way(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """GRACE eq. (1), mean over i of l(u_i, v_i): the positive, the inter-view and the intra-view negatives."""
    u, v = z1.tolist(), z2.tolist()
    n = len(u)
    total = 0.0
    for i in range(n):
        positive = math.exp(_cos(u[i], v[i]) / tau)
        inter = sum(math.exp(_cos(u[i], v[k]) / tau) for k in range(n) if k != i)
        intra = sum(math.exp(_cos(u[i], u[k]) / tau) for k in range(n) if k != i)
        total += -math.log(positive / (positive + inter + intra))
    return total / n


def _grace_reference(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """GRACE eq. (2): J = 1/(2N) sum_i [l(u_i, v_i) + l(v_i, u_i)]."""
    return (_grace_one_way(z1, z2, tau) + _grace_one_way(z2, z1, tau)) / 2


@pytest.mark.parametrize("n", [2, 5, 9])
@pytest.mark.parametrize("tau", [0.2, 0.4, 1.0])
def test_grace_loss_matches_the_papers_formula(n: int, tau: float) -> None:
    z1 = _randn(n, 6, seed=1)
    z2 = z1 + 0.7 * _randn(n, 6, seed=2)
    assert grace_loss(z1, z2, tau).item() == pytest.approx(_grace_reference(z1, z2, tau), rel=1e-9)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_grace_loss_counts_intra_view_negatives(n: int) -> None:
    # Identical orthonormal views: the positive has cos 1; the N - 1 inter-view and the N - 1
    # intra-view negatives cos 0. Without the intra-view ones the count would be N - 1.
    e = torch.eye(8, dtype=torch.float64)[:n]
    tau = 0.4
    assert grace_loss(e, e.clone(), tau).item() == pytest.approx(math.log(1 + (2 * n - 2) * math.exp(-1 / tau)), rel=1e-9)


def test_grace_loss_is_symmetric_in_the_views() -> None:
    z1, z2 = _randn(7, 5, seed=3), _randn(7, 5, seed=4)
    torch.testing.assert_close(grace_loss(z1, z2, 0.5), grace_loss(z2, z1, 0.5))
    # One direction alone is not symmetric on these views: the average over both is what makes it so.
    assert _grace_one_way(z1, z2, 0.5) != pytest.approx(_grace_one_way(z2, z1, 0.5), rel=1e-3)
    assert grace_loss(z1, z2, 0.5).item() == pytest.approx(_grace_reference(z1, z2, 0.5), rel=1e-9)


# --------------------------------------------------------------------------- BGRL


def test_bgrl_loss_matches_the_papers_formula() -> None:
    q1, q2, y1, y2 = (_randn(6, 4, seed=s) for s in range(4))
    expected = 2 - sum(_cos(a, b) for a, b in zip(q1.tolist(), y2.tolist())) / 6 - sum(
        _cos(a, b) for a, b in zip(q2.tolist(), y1.tolist())
    ) / 6
    assert bgrl_loss(q1, q2, y1, y2).item() == pytest.approx(expected, rel=1e-9)
    # Each view predicts the other's target: predictions along the other view's targets give 0,
    # along their own view's targets not.
    assert bgrl_loss(q1, q2, 3.0 * q2, 0.5 * q1).item() == pytest.approx(0.0, abs=1e-12)
    assert bgrl_loss(q1, q2, q1, q2).item() > 0.1


# --------------------------------------------------------------------------- DGI


def _dgi_reference(h: torch.Tensor, hc: torch.Tensor, s: torch.Tensor, w: torch.Tensor, b: float) -> float:
    """DGI eq. (1): -1/(N + M) [sum log D(h_i, s) + sum log(1 - D(h~_j, s))], D = sigmoid(h^T W s + b)."""
    def d(hi: list[float], si: list[float]) -> float:
        score = sum(hi[a] * w[a][c] * si[c] for a in range(len(hi)) for c in range(len(si))) + b
        return 1 / (1 + math.exp(-score))

    w = w.tolist()
    n = h.shape[0]
    total = sum(math.log(d(h[i].tolist(), s[i].tolist())) for i in range(n))
    total += sum(math.log(1 - d(hc[i].tolist(), s[i].tolist())) for i in range(n))
    return -total / (2 * n)


@pytest.mark.parametrize("n,dim", [(3, 2), (8, 5)])
def test_dgi_loss_matches_the_papers_bce(n: int, dim: int) -> None:
    h, hc, w = _randn(n, dim, seed=1), _randn(n, dim, seed=2), 0.5 * _randn(dim, dim, seed=3)
    s = torch.sigmoid(_randn(n, dim, seed=4))
    assert dgi_loss(h, hc, s, w, 0.3).item() == pytest.approx(_dgi_reference(h, hc, s, w, 0.3), rel=1e-9)
    # A discriminator that answers 1/2 everywhere: log 2.
    assert dgi_loss(h, hc, s, torch.zeros(dim, dim, dtype=torch.float64)).item() == pytest.approx(math.log(2))


def test_dgi_summary_is_the_sigmoid_of_each_graphs_mean() -> None:
    h = _randn(7, 3, seed=5)
    node_graph = torch.tensor([1, 0, 1, 2, 0, 1, 2])
    s = dgi_summary(h, node_graph, 3)
    for graph in range(3):
        rows = [h[i].tolist() for i in range(7) if int(node_graph[i]) == graph]
        mean = [sum(col) / len(rows) for col in zip(*rows)]
        assert s[graph].tolist() == pytest.approx([1 / (1 + math.exp(-m)) for m in mean], rel=1e-12)


def test_dgi_corruption_permutes_rows_within_each_graph_and_is_seeded() -> None:
    node_graph = torch.tensor([2, 0, 0, 1, 2, 2, 0, 1, 1, 2, 0, 2, 1, 0, 2, 2])  # graphs interleaved
    perm = shuffle_within_graphs(node_graph, torch.Generator().manual_seed(0))
    assert sorted(perm.tolist()) == list(range(16))  # a permutation
    assert torch.equal(node_graph[perm], node_graph)  # every node takes features from its own graph
    assert not torch.equal(perm, torch.arange(16))
    again = shuffle_within_graphs(node_graph, torch.Generator().manual_seed(0))
    other = shuffle_within_graphs(node_graph, torch.Generator().manual_seed(1))
    assert torch.equal(perm, again) and not torch.equal(perm, other)
    # The corrupted graph: the same edges, the rows of x permuted.
    x = torch.arange(16, dtype=torch.float32)[:, None].repeat(1, 3)
    g = GraphBatch(x, torch.tensor([[0, 1], [1, 0]]), node_graph, 3)
    c = corrupt(g, torch.Generator().manual_seed(0))
    assert torch.equal(c.x, x[perm]) and torch.equal(c.edge_index, g.edge_index)


# --------------------------------------------------------------------------- GraphMAE


def _sce_reference(rec: torch.Tensor, target: torch.Tensor, masked: list[int], gamma: float) -> float:
    return sum((1 - _cos(rec[i].tolist(), target[i].tolist())) ** gamma for i in masked) / len(masked)


@pytest.mark.parametrize("gamma", [1.0, 2.0, 3.0])
def test_scaled_cosine_error_matches_the_papers_formula(gamma: float) -> None:
    rec, target = _randn(9, 4, seed=1), _randn(9, 4, seed=2)
    masked = [0, 3, 4, 8]
    expected = _sce_reference(rec, target, masked, gamma)
    assert scaled_cosine_error(rec, target, torch.tensor(masked), gamma).item() == pytest.approx(expected, rel=1e-9)
    as_bool = torch.zeros(9, dtype=torch.bool)
    as_bool[masked] = True
    assert scaled_cosine_error(rec, target, as_bool, gamma).item() == pytest.approx(expected, rel=1e-9)


def test_scaled_cosine_error_ignores_the_visible_nodes() -> None:
    rec, target = _randn(9, 4, seed=3), _randn(9, 4, seed=4)
    masked = torch.tensor([1, 2, 6])
    base = scaled_cosine_error(rec, target, masked, 2.0)
    visible = torch.tensor([0, 3, 4, 5, 7, 8])
    target2, rec2 = target.clone(), rec.clone()
    target2[visible] = _randn(6, 4, seed=5)
    rec2[visible] = _randn(6, 4, seed=6)
    assert scaled_cosine_error(rec2, target2, masked, 2.0).item() == pytest.approx(base.item(), rel=1e-12)
    target2[2] = -target2[2]  # a masked node's target does count
    assert scaled_cosine_error(rec2, target2, masked, 2.0).item() != pytest.approx(base.item(), rel=1e-3)


def test_graphmae_masks_among_the_candidates_with_the_papers_shares() -> None:
    candidates = torch.tensor([3, 5, 8, 10, 11, 14, 20, 21, 25, 30, 31, 33, 40, 41, 42, 47, 48, 49, 50, 55])
    m = mask_nodes(candidates, 60, 0.5, 0.2, torch.Generator().manual_seed(0))
    assert len(m.masked) == 10 and len(set(m.masked.tolist())) == 10
    assert set(m.masked.tolist()) <= set(candidates.tolist())  # node level: sample nodes only
    assert len(m.replaced) == 2 and len(m.sources) == 2  # int(0.2 * 10) get another node's features
    assert sorted(m.token.tolist() + m.replaced.tolist()) == sorted(m.masked.tolist())
    again = mask_nodes(candidates, 60, 0.5, 0.2, torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(m, again))


# --------------------------------------------------------------------------- methods on graphs


def _encoder(num_features: int, backbone: str = "gcn", level: str = "node", **params) -> Encoder:
    F = num_features
    return Encoder(
        create_backbone(backbone, (F,), **params), torch.zeros(F), torch.ones(F), (F,), "graph",
        {"kind": "graph", "level": level, "num_features": F},
    )


def _random_graph(n: int = 30, F: int = 5, seed: int = 0, **fields) -> GraphBatch:
    g = torch.Generator().manual_seed(seed)
    edges = torch.randint(0, n, (2, 3 * n), generator=g)
    return GraphBatch(torch.rand(n, F, generator=g), torch.cat([edges, edges.flip(0)], 1), **fields)


@needs_pyg
def test_bgrl_target_gets_no_gradient() -> None:
    torch.manual_seed(0)
    method = create_method("bgrl", _encoder(5, hidden_dim=8), pred_hidden_dim=8)
    views = create_views("graph", "graph")(_random_graph(center=torch.arange(20)), torch.Generator().manual_seed(0))
    method.training_step(views, StepContext(0, 10)).loss.backward()
    target = list(method.teacher.parameters())
    assert target and all(not p.requires_grad and p.grad is None for p in target)
    assert not {id(p) for p in target} & {id(p) for p in method.encoder.parameters()}  # a copy, not the encoder
    online = [p for p in method.encoder.parameters() if p.requires_grad]
    grads = [p.grad.clone() for p in online]

    # At initialisation the target equals the online encoder, so only the gradient tells whether
    # the loss differentiates through the targets: it must be the gradient with them held constant.
    def gradient(hold_targets: bool) -> list[torch.Tensor]:
        both = torch.cat(views.global_views)
        q, y = method.predictor(method.encoder(both)), method.encoder(both)
        y = y.detach() if hold_targets else y
        n = len(views.global_views[0])
        return torch.autograd.grad(bgrl_loss(q[:n], q[n:], y[:n], y[n:]), online)

    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, gradient(hold_targets=True)))
    assert not all(torch.allclose(a, b, atol=1e-6) for a, b in zip(grads, gradient(hold_targets=False)))


@needs_pyg
def test_dgi_scores_sample_nodes_against_their_graphs_summary() -> None:
    torch.manual_seed(0)
    method = create_method("dgi", _encoder(5, hidden_dim=8))
    W, b = method.discriminator.weight[0], method.discriminator.bias[0]

    def by_hand(g: GraphBatch, scored: torch.Tensor, seed: int) -> torch.Tensor:
        h = method.encoder.forward_nodes(g)
        hc = method.encoder.forward_nodes(corrupt(g, torch.Generator().manual_seed(seed)))
        s = dgi_summary(h, g.node_graph, g.num_graphs)
        return dgi_loss(h[scored], hc[scored], s[g.node_graph[scored]], W, b)

    def step(g: GraphBatch, seed: int) -> torch.Tensor:
        ctx = StepContext(0, 1, torch.Generator().manual_seed(seed))
        return method.training_step(create_views("graph", "graph", {"edge_drop": [0.0], "feature_mask": [0.0]})(g, ctx.generator, 1), ctx).loss

    # Node level: the 6 sample nodes, against the summary of all 30 nodes.
    g = _random_graph(center=torch.tensor([4, 9, 2, 17, 25, 11]))
    torch.testing.assert_close(step(g, 1), by_hand(g, g.center, 1))
    assert not torch.allclose(step(g, 1), by_hand(g, torch.arange(30), 1))
    # Graph level: every node, each against its own graph's summary (3 graphs of 10 nodes).
    g = _random_graph(node_graph=torch.arange(30) % 3, num_graphs=3)
    torch.testing.assert_close(step(g, 2), by_hand(g, torch.arange(30), 2))


@needs_pyg
def test_a_decoder_without_last_activation_is_linear() -> None:
    g = _random_graph(n=12, F=4)
    for kind in ("gcn", "gat"):
        torch.manual_seed(0)
        linear = create_backbone(kind, (4,), hidden_dim=3, num_layers=1, heads=1, last_activation=False)
        out = linear.forward_nodes(g)
        assert (out < 0).any()  # no ReLU, no PReLU squashing negative outputs
        if kind == "gcn":  # a GCN layer alone is linear in x (its bias starts at 0)
            torch.testing.assert_close(linear.forward_nodes(g.replace(x=-2 * g.x)), -2 * out)
        activated = create_backbone(kind, (4,), hidden_dim=3, num_layers=1, heads=1, activation="relu")
        assert (activated.forward_nodes(g) >= 0).all()


@needs_pyg
@pytest.mark.parametrize("name", GRAPH_METHODS)
def test_graph_level_step_trains_the_gin(name: str) -> None:
    torch.manual_seed(0)
    method = create_method(name, _encoder(5, "gin", level="graph", hidden_dim=8, num_layers=2))
    g = _random_graph(node_graph=torch.arange(30) % 6, num_graphs=6)
    views = create_views("graph", "graph")(g, torch.Generator().manual_seed(0), method.num_global_views)
    out = method.training_step(views, StepContext(0, 10, torch.Generator().manual_seed(0)))
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.embeddings.shape == (6, method.encoder.embed_dim)
    assert sum(p.grad.abs().sum() for p in method.encoder.backbone.parameters() if p.grad is not None) > 0


# --------------------------------------------------------------------------- learning


def _sbm(seed: int = 0) -> tuple[GraphBatch, torch.Tensor]:
    """300 nodes in 3 blocks (edge probability 0.08 within, 0.01 across: homophily 0.79), 100
    features of which 6 carry the class (means 0.7 apart in scale) and 94 are pure noise. A
    random 16-wide GCN keeps little of the 6 informative directions; the self-supervised signals
    (neighbours agree, structure matches features, masked features predictable from neighbours)
    single them out."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(3).repeat_interleave(100)
    p = torch.where(y[:, None] == y[None, :], torch.tensor(0.08), torch.tensor(0.01))
    adj = torch.triu(torch.rand(300, 300, generator=g) < p, diagonal=1)
    edges = adj.nonzero().T
    means = torch.randn(3, 100, generator=g) * 0.7
    means[:, 6:] = 0
    x = means[y] + torch.randn(300, 100, generator=g)
    return GraphBatch(x, torch.cat([edges, edges.flip(0)], 1), center=torch.arange(300)), y


@pytest.fixture(scope="module")
def sbm() -> tuple[GraphBatch, torch.Tensor, torch.Tensor]:
    graph, y = _sbm()
    return graph, y, torch.randperm(300, generator=torch.Generator().manual_seed(1))


def _graph_encoder(graph: GraphBatch) -> Encoder:
    F = graph.x.shape[1]
    return Encoder(
        create_backbone("gcn", (F,), hidden_dim=16), torch.zeros(F), graph.x.abs().amax(0), (F,), "graph",
        {"kind": "graph", "level": "node", "num_features": F},
    )


def _probe(encoder: Encoder, graph: GraphBatch, y: torch.Tensor, order: torch.Tensor) -> tuple[float, np.ndarray]:
    with torch.no_grad():
        h = encoder.eval()(graph).numpy()
    train, test = order[:150].numpy(), order[150:].numpy()
    return linear_probe(h[train], y[train].numpy(), h[test], y[test].numpy()).accuracy, h


@pytest.fixture(scope="module")
def random_init_accuracy(sbm) -> float:
    graph, y, order = sbm
    torch.manual_seed(0)
    return _probe(_graph_encoder(graph), graph, y, order)[0]


@needs_pyg
@pytest.mark.slow
@pytest.mark.parametrize("name", GRAPH_METHODS)
def test_node_level_pretraining_beats_the_random_init_gcn(name: str, sbm, random_init_accuracy: float) -> None:
    """100 full-graph steps at the paper's lr and weight decay, its views (run defaults)."""
    graph, y, order = sbm
    torch.manual_seed(0)
    cls = METHODS.get(name)
    method = create_method(name, _graph_encoder(graph))
    views = create_views(cls.default_views or "graph", "graph", cls.run_defaults.get("views", {}).get("params"))
    train = cls.run_defaults["train"]
    optimizer = torch.optim.AdamW(method.parameters(), lr=train["lr"], weight_decay=train["weight_decay"])
    generator = torch.Generator().manual_seed(0)
    for step in range(100):
        ctx = StepContext(step, 100, generator)
        loss = method.training_step(views(graph, generator, method.num_global_views), ctx).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        method.on_step_end(ctx)
    accuracy, h = _probe(method.encoder, graph, y, order)
    assert random_init_accuracy < 0.8  # room to learn
    assert accuracy > random_init_accuracy + 0.05, f"{name}: {accuracy:.3f} vs random init {random_init_accuracy:.3f}"
    spread = normalized_std(h).mean * math.sqrt(h.shape[1])  # ~1 healthy, 0 under complete collapse
    assert spread > 0.2, f"{name}: normalised embedding std x sqrt(D) = {spread:.3f}: collapsed"


# --------------------------------------------------------------------------- run defaults and recipes


@pytest.mark.parametrize("name", ["dgi", "graphmae"])
def test_methods_without_augmentation_see_the_graph_unchanged(name: str) -> None:
    """DGI and GraphMAE corrupt the graph themselves: with views "auto" their run defaults give the
    graph views at rate 0, in the Python API as on the command line."""
    config, applied = apply_method_defaults(RunConfig(data="graph:g.npz", method=name))
    resolved = resolve_config(config, "graph", (5,), {"kind": "graph", "level": "node", "num_features": 5})
    views = create_views(resolved.views.name, "graph", resolved.views.params)
    g = _random_graph(center=torch.arange(10))
    (view,) = views(g, torch.Generator().manual_seed(0), METHODS.get(name).num_global_views).global_views
    assert torch.equal(view.x, g.x) and torch.equal(view.edge_index, g.edge_index)
    assert any(a.startswith("views.params=") for a in applied)


@pytest.mark.parametrize("name", GRAPH_METHODS)
def test_the_package_graph_recipe_resolves(name: str) -> None:
    config = RunConfig.from_dict(load_yaml(RECIPES / f"{name}-packages.yaml"))
    assert config.data.name == "graph:benchmarks/data/package_graph.npz"
    config, _ = apply_method_defaults(config)
    resolved = resolve_config(config, "graph", (1500,), PACKAGES_INFO)
    assert resolved.method.name == name and resolved.views.name == "graph"
    assert resolved.train.max_steps > 0 and resolved.train.batch_size <= 18_666  # steps of the paper, not epochs


@pytest.mark.parametrize(("name", "level", "expected"), [
    ("graphmae", "node", "gat"), ("graphmae", "graph", "gin"), ("grace", "node", "gcn"), ("dgi", "graph", "gin"),
])
def test_an_auto_backbone_is_the_one_the_method_s_paper_uses(name: str, level: str, expected: str) -> None:
    """GraphMAE's paper encodes nodes with a GAT: "auto" gives gat where the data alone would give gcn."""
    info = {"kind": "graph", "level": level, "num_features": 5}
    resolved = resolve_config(RunConfig(data="graph:g.npz", method=name), "graph", (5,), info)
    assert resolved.backbone.name == expected
    chosen = RunConfig.from_dict({"data": "graph:g.npz", "method": name, "backbone": "gin"})
    assert resolve_config(chosen, "graph", (5,), info).backbone.name == "gin"  # a named backbone is kept
