"""Graph views (selfsup.views.graph): node dropping, subgraphs, edge perturbation, attribute and
feature masking, PPR diffusion, and the ``graph`` / ``graphcl`` / ``mvgrl`` generators: rates,
sample nodes kept, connectivity, the diffusion's closed form, seeding, per-graph randomness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from selfsup.config import ComponentConfig, RunConfig
from selfsup.data.graph_batch import GraphBatch
from selfsup.errors import ConfigError
from selfsup.views import create_views
from selfsup.views import graph as graph_views
from selfsup.views.graph import (
    Diffusion, DiffusionCache, drop_nodes, mask_features, mask_nodes, perturb_edges, ppr_diffusion, subgraph,
)


def random_graph(n: int, p: float, seed: int, features: int = 4, connected: bool = True) -> GraphBatch:
    """An undirected random graph (both directions stored); ``connected``: a path through every
    node added, so it is one component. Features all nonzero (1 + node index)."""
    g = torch.Generator().manual_seed(seed)
    adj = torch.triu(torch.rand(n, n, generator=g) < p, diagonal=1)
    if connected:
        adj[torch.arange(n - 1), torch.arange(1, n)] = True
    src, dst = adj.nonzero().T
    edge_index = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], dim=1)
    x = 1.0 + torch.arange(n, dtype=torch.float32)[:, None].repeat(1, features)
    return GraphBatch(x, edge_index)


def graph_set(count: int, seed: int = 0, features: int = 4) -> GraphBatch:
    """``count`` connected random graphs of 10-40 nodes as one graph-level batch."""
    return torch.cat([random_graph(10 + (7 * i) % 31, 0.1, seed + i, features) for i in range(count)])


def components(edge_index: torch.Tensor, nodes: np.ndarray) -> int:
    """Connected components (edges taken both ways) of the subgraph on ``nodes``."""
    position = {int(v): i for i, v in enumerate(nodes)}
    src, dst = edge_index.numpy()
    pairs = [(position[a], position[b]) for a, b in zip(src, dst) if a in position and b in position]
    rows = [a for a, _ in pairs]
    cols = [b for _, b in pairs]
    adj = coo_matrix((np.ones(len(pairs)), (rows, cols)), shape=(len(nodes), len(nodes)))
    return connected_components(adj, directed=False)[0]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------ rates


def test_node_and_edge_rates_hold_on_average():
    g = random_graph(3000, 0.002, 0)
    dropped = drop_nodes(g, 0.3, gen(1))
    assert abs(1 - dropped.num_nodes / g.num_nodes - 0.3) < 0.03
    # the edges left are exactly those between kept nodes (ids remapped in order)
    kept_ids = dropped.x[:, 0].long() - 1
    kept = set(kept_ids.tolist())
    assert set(map(tuple, kept_ids[dropped.edge_index].T.tolist())) == {
        e for e in map(tuple, g.edge_index.T.tolist()) if e[0] in kept and e[1] in kept
    }
    perturbed = perturb_edges(g, 0.25, gen(2))
    assert perturbed.num_edges == g.num_edges  # one random edge added per edge removed
    old = set(map(tuple, g.edge_index.T.tolist()))
    survivors = sum(e in old for e in map(tuple, perturbed.edge_index.T.tolist()))
    assert abs(1 - survivors / g.num_edges - 0.25) < 0.03
    masked = mask_nodes(g, 0.2, gen(3))
    zero_rows = (masked.x == 0).all(dim=1).float().mean()
    assert abs(zero_rows - 0.2) < 0.03 and bool(((masked.x == 0).all(1) | (masked.x == g.x).all(1)).all())


def test_feature_mask_is_drawn_per_graph_and_holds_its_rate():
    g = graph_set(60, features=40)
    out = mask_features(g, 0.4, gen(0))
    zero = out.x == 0  # features are all nonzero before
    per_graph = [zero[g.node_graph == k] for k in range(g.num_graphs)]
    # every node of a graph loses the same columns ...
    assert all(bool((m == m[0]).all()) for m in per_graph)
    masks = torch.stack([m[0] for m in per_graph])
    # ... and the graphs of the batch draw their own masks, at the asked rate on average
    assert len({tuple(m.tolist()) for m in masks}) == g.num_graphs
    assert abs(masks.float().mean() - 0.4) < 0.04


def test_sample_nodes_are_never_dropped():
    g = random_graph(200, 0.03, 1).replace(center=torch.tensor([5, 0, 199, 77]))
    for seed in range(5):
        out = drop_nodes(g, 0.9, gen(seed))
        assert out.num_nodes < 60 and out.center.numel() == 4
        # the centres point at the same nodes (features are 1 + original index)
        assert (out.x[out.center, 0] - 1).long().tolist() == [5, 0, 199, 77]
        views = create_views("graph", "graph", {"node_drop": [0.9], "subgraph": [0.1], "feature_mask": [0]})(g, gen(seed), 2)
        for v in views.global_views:
            assert (v.x[v.center, 0] - 1).long().tolist() == [5, 0, 199, 77]


# --------------------------------------------------------------------------------- subgraph


def test_a_subgraph_is_connected_with_the_asked_fraction_per_graph():
    g = graph_set(30)
    out = subgraph(g, 0.3, gen(4))
    for k in range(g.num_graphs):
        n = int((g.node_graph == k).sum())
        nodes = (out.node_graph == k).nonzero().flatten().numpy()
        assert len(nodes) == max(1, round(0.3 * n))
        assert components(out.edge_index, nodes) == 1
    # a graph whose start node's component is small keeps that component only
    split = GraphBatch(torch.ones(6, 1), torch.tensor([[0, 1, 2, 3, 4], [1, 2, 0, 4, 5]]))
    sizes = {subgraph(split, 0.99, gen(s)).num_nodes for s in range(12)}
    assert sizes == {3}


def test_node_level_subgraph_holds_the_sample_nodes_and_part_of_their_neighbourhood():
    g = random_graph(400, 0.01, 2).replace(center=torch.tensor([3, 250]))
    out = subgraph(g, 0.25, gen(0))
    assert out.num_nodes == 100
    assert (out.x[out.center, 0] - 1).long().tolist() == [3, 250]
    # every kept node hangs together with a sample node: no component without one
    labels = connected_components(
        coo_matrix((np.ones(out.num_edges), tuple(out.edge_index.numpy())), shape=(out.num_nodes,) * 2), directed=False
    )[1]
    assert set(labels.tolist()) <= set(labels[out.center.numpy()].tolist())
    assert subgraph(g, 0.25, gen(1)).x[:, 0].tolist() != out.x[:, 0].tolist()  # a random part


# -------------------------------------------------------------------------------- diffusion


def dense_ppr(edge_index: torch.Tensor, n: int, alpha: float) -> np.ndarray:
    """The closed form: alpha (I - (1 - alpha) D^-1/2 (A + I) D^-1/2)^-1, in float64."""
    A = np.zeros((n, n))
    A[edge_index[1].numpy(), edge_index[0].numpy()] = 1.0
    A += np.eye(n)
    d = A.sum(1)
    T = A / np.sqrt(d)[:, None] / np.sqrt(d)[None, :]
    return alpha * np.linalg.inv(np.eye(n) - (1 - alpha) * T)


def as_matrix(view: GraphBatch) -> np.ndarray:
    S = np.zeros((view.num_nodes, view.num_nodes))
    S[view.edge_index[1].numpy(), view.edge_index[0].numpy()] = view.edge_weight.double().numpy()
    return S


@pytest.mark.parametrize("dense_max_nodes, tol", [(1024, 1e-3), (0, 1e-12)])  # inverted, then the power series
def test_ppr_matches_the_closed_form(dense_max_nodes, tol):
    g = random_graph(25, 0.15, 3)
    alpha = 0.15
    S = as_matrix(ppr_diffusion(g, Diffusion(alpha=alpha, top_k=None, dense_max_nodes=dense_max_nodes, series_tol=tol)))
    closed = dense_ppr(g.edge_index, 25, alpha)
    assert np.allclose(S, closed, atol=1e-5)
    # the closed form's sums: S = D^-1/2 P D^1/2 with P column-stochastic, so each column of S
    # weighted by sqrt(degree) sums to its node's sqrt(degree); S is symmetric (undirected graph)
    d = np.bincount(g.edge_index[1].numpy(), minlength=25) + 1.0
    assert np.allclose(np.sqrt(d) @ S, np.sqrt(d), atol=1e-5)
    assert np.allclose(S, S.T, atol=1e-6)


def test_ppr_sparsifies_per_node_and_stays_inside_each_graph():
    g = torch.cat([random_graph(30, 0.2, 4), random_graph(12, 0.3, 5)])
    top = ppr_diffusion(g, Diffusion(top_k=5))
    full = as_matrix(ppr_diffusion(g, Diffusion(top_k=None)))
    assert torch.bincount(top.edge_index[0], minlength=42).tolist() == [5] * 42
    for j in range(42):  # each source keeps its 5 largest entries
        kept = top.edge_weight[top.edge_index[0] == j]
        assert np.allclose(sorted(kept.tolist()), sorted(full[:, j])[-5:], atol=1e-6)
    graph_of = top.node_graph
    assert bool((graph_of[top.edge_index[0]] == graph_of[top.edge_index[1]]).all())
    # per graph: the 12-node graph's block equals its own closed form
    assert np.allclose(full[30:, 30:], dense_ppr(random_graph(12, 0.3, 5).edge_index, 12, 0.2), atol=1e-5)
    thresholded = ppr_diffusion(g, Diffusion(top_k=None, eps=0.05))
    assert bool((thresholded.edge_weight >= 0.05).all()) and thresholded.num_edges == int((full >= 0.05).sum())


def test_the_diffusion_cache_is_keyed_on_the_edges_values(monkeypatch):
    calls = []
    real = graph_views.ppr_diffusion
    monkeypatch.setattr(graph_views, "ppr_diffusion", lambda g, c: calls.append(1) or real(g, c))
    cache = DiffusionCache(Diffusion(top_k=None))
    g = random_graph(20, 0.2, 6)
    first = cache(g)
    same = cache(GraphBatch(g.x * 2, g.edge_index.clone()))  # another tensor, same values: a hit
    assert len(calls) == 1 and torch.equal(same.edge_weight, first.edge_weight) and torch.equal(same.x, g.x * 2)
    edges = g.edge_index.clone()
    g2 = GraphBatch(g.x, edges)
    cache(g2)
    edges[1, 0] = (edges[1, 0] + 1) % 20  # changed in place: same object, other graph: a miss
    changed = cache(g2)
    assert len(calls) == 2
    assert np.allclose(as_matrix(changed), dense_ppr(edges, 20, 0.2), atol=1e-5)


def test_mvgrl_views_are_the_graph_and_its_diffusion():
    g = random_graph(15, 0.2, 7).replace(center=torch.tensor([1, 2]))
    views = create_views("mvgrl", "graph")(g, gen(), 2)
    first, second = views.global_views
    assert first is g
    assert second.edge_weight is not None and torch.equal(second.center, g.center)
    assert np.allclose(as_matrix(second), dense_ppr(g.edge_index, 15, 0.2) * (as_matrix(second) > 0), atol=1e-5)
    assert torch.bincount(second.edge_index[0]).max() <= 64


# ---------------------------------------------------------------------- generators and seeds


@pytest.mark.parametrize("name, params", [
    ("graph", {"node_drop": [0.2], "subgraph": [0.8, 0.5], "diffusion": [False, True]}),
    ("graphcl", {}),
])
def test_views_are_a_function_of_the_generator_state(name, params):
    views = create_views(name, "graph", params)
    g = graph_set(12)
    a, b = views(g, gen(5), 2), views(g, gen(5), 2)
    c = views(g, gen(6), 2)
    for v, w in zip(a.global_views, b.global_views):
        assert torch.equal(v.x, w.x) and torch.equal(v.edge_index, w.edge_index) and torch.equal(v.node_graph, w.node_graph)
    assert any(
        v.num_nodes != w.num_nodes or not torch.equal(v.x, w.x) or v.edge_index.shape != w.edge_index.shape
        or not torch.equal(v.edge_index, w.edge_index)
        for v, w in zip(a.global_views, c.global_views)
    )


def test_graphcl_picks_one_augmentation_per_graph():
    g = graph_set(40)
    pool = {"augmentations": ["node_drop", "attribute_mask"], "node_drop": 0.5, "attribute_mask": 0.5}
    view = create_views("graphcl", "graph", pool)(g, gen(0), 1).global_views[0]
    before = torch.bincount(g.node_graph, minlength=40)
    after = torch.bincount(view.node_graph, minlength=40)
    lost_nodes = after < before
    masked_rows = torch.zeros(40, dtype=torch.bool).index_fill_(0, view.node_graph[(view.x == 0).all(1)], True)
    assert not bool((lost_nodes & masked_rows).any())  # never both in one graph
    assert int(lost_nodes.sum()) > 5 and int(masked_rows.sum()) > 5  # each pick happens
    only_subgraph = create_views("graphcl", "graph", {"augmentations": ["subgraph"], "subgraph": 0.5})
    v = only_subgraph(g, gen(1), 1).global_views[0]
    for k in range(40):
        nodes = (v.node_graph == k).nonzero().flatten().numpy()
        assert len(nodes) == round(0.5 * int(before[k])) and components(v.edge_index, nodes) == 1


def test_bad_view_settings_are_one_line_config_errors():
    with pytest.raises(ConfigError, match=r"subgraph"):
        create_views("graph", "graph", {"subgraph": [0.0]})
    with pytest.raises(ConfigError, match=r"ppr\.alpha"):
        create_views("graph", "graph", {"ppr": {"alpha": 1.5}})
    with pytest.raises(ConfigError, match=r"node_drop.*edge_dropping"):
        create_views("graphcl", "graph", {"augmentations": ["edge_dropping"]})
    with pytest.raises(ConfigError, match=r"top_k"):
        create_views("mvgrl", "graph", {"ppr": {"top_k": 0}})


def test_graphcl_and_mvgrl_views_train(tmp_path):
    pytest.importorskip("torch_geometric")
    from selfsup.train.runner import pretrain

    x, edges, batch, y, offset = [], [], [], [], 0
    for i in range(24):
        g = random_graph(6 + i % 5, 0.3, i, features=3)
        x.append(g.x.numpy() / 10)
        edges.append(g.edge_index.numpy() + offset)
        batch += [i] * g.num_nodes
        y.append(i % 2)
        offset += g.num_nodes
    path = tmp_path / "set.npz"
    np.savez(path, x=np.concatenate(x), edge_index=np.concatenate(edges, 1), batch=np.array(batch), y=np.array(y))
    for views in ("graphcl", "mvgrl"):
        config = RunConfig(
            data=ComponentConfig(f"graph:{path}"), method="simclr", views=views,
            backbone=ComponentConfig("gcn", {"hidden_dim": 8}),
        )
        config.train.epochs, config.train.batch_size = 1, 8
        config.eval.after_training = False
        result = pretrain(config, tmp_path / views)
        losses = [row["loss"] for row in result.metrics["history"] if "loss" in row]
        assert losses and all(np.isfinite(losses))
