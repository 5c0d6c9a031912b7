"""The graph modality: GraphBatch as a batch of samples, graph sources and splits, scaling and
baselines, the GNN backbones, and graph data through pretrain / evaluate / embed / export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("torch_geometric")

from selfsup.backbones.base import create_backbone  # noqa: E402
from selfsup.cli import main  # noqa: E402
from selfsup.data import load_dataset  # noqa: E402
from selfsup.data.graph_batch import GraphBatch, pool_graphs  # noqa: E402
from selfsup.data.modalities import get_modality  # noqa: E402
from selfsup.export import export_encoder, load_encoder, load_exported  # noqa: E402
from selfsup.views import create_views  # noqa: E402


def ring(n: int, features: int = 3, offset: float = 0.0) -> GraphBatch:
    """A cycle of ``n`` nodes, both directions, features ``offset + node index``."""
    src = torch.arange(n)
    dst = (src + 1) % n
    edge_index = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], dim=1)
    x = offset + torch.arange(n, dtype=torch.float32)[:, None].repeat(1, features)
    return GraphBatch(x, edge_index)


def write_node_graph(path: Path, n_per_class: int = 30, seed: int = 0) -> Path:
    """A 3-block graph (dense within blocks), weakly informative features, Planetoid-style masks."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(3).repeat_interleave(n_per_class)
    n = len(y)
    same = y[:, None] == y[None, :]
    p = torch.where(same, torch.tensor(0.2), torch.tensor(0.01))
    adj = torch.triu(torch.rand(n, n, generator=g) < p, diagonal=1)
    edge_index = adj.nonzero().T
    x = torch.randn(n, 8, generator=g) + 0.5 * torch.nn.functional.one_hot(y, 8)
    train = torch.zeros(n, dtype=torch.bool)
    test = torch.zeros(n, dtype=torch.bool)
    for c in range(3):
        train[c * n_per_class: c * n_per_class + 5] = True
        test[c * n_per_class + 10: (c + 1) * n_per_class] = True
    np.savez(path, x=x.numpy(), edge_index=edge_index.numpy(), y=y.numpy(), train_mask=train.numpy(), test_mask=test.numpy())
    return path


def write_graph_set(path: Path, count: int = 24) -> Path:
    """Rings (class 0) and stars (class 1) of 5-8 nodes, one constant feature."""
    xs, edges, batch, ys, offset = [], [], [], [], 0
    for i in range(count):
        n = 5 + i % 4
        if i % 2 == 0:
            src = np.arange(n)
            e = np.stack([src, (src + 1) % n])
        else:
            e = np.stack([np.zeros(n - 1, dtype=np.int64), np.arange(1, n)])
        xs.append(np.ones((n, 1), np.float32))
        edges.append(e + offset)
        batch += [i] * n
        ys.append(i % 2)
        offset += n
    np.savez(path, x=np.concatenate(xs), edge_index=np.concatenate(edges, 1), batch=np.array(batch), y=np.array(ys))
    return path


# ----------------------------------------------------------------------------- GraphBatch


def test_cat_is_the_disjoint_union_and_counts_samples():
    a, b = ring(4), ring(3, offset=10.0)
    g = torch.cat([a, b])
    assert isinstance(g, GraphBatch) and len(g) == 2 and g.shape[0] == 2 and g.num_nodes == 7
    assert g.node_graph.tolist() == [0] * 4 + [1] * 3
    # b's edges point at b's nodes, shifted past a's
    assert int(g.edge_index[:, a.num_edges:].min()) == 4 and int(g.edge_index.max()) == 6
    assert torch.equal(g.x[4:], b.x)


def test_selecting_graphs_keeps_their_nodes_and_edges_in_the_asked_order():
    g = torch.cat([ring(4), ring(3, offset=10.0), ring(5, offset=20.0)])
    picked = g[torch.tensor([2, 0])]
    assert picked.num_graphs == 2 and picked.num_nodes == 9
    # graph 0 of the selection is the old graph 2: its pooled features are the 5-ring's
    pooled = pool_graphs(picked.x, picked.node_graph, picked.num_graphs)
    assert torch.allclose(pooled[0], torch.full((3,), 22.0)) and torch.allclose(pooled[1], torch.full((3,), 1.5))
    assert picked.num_edges == 2 * 5 + 2 * 4
    assert int(picked.edge_index.max()) < picked.num_nodes
    # a sample picked twice appears twice
    assert g[torch.tensor([1, 1])].num_nodes == 6


def test_node_level_selection_keeps_the_graph_and_moves_the_centres():
    g = ring(6).replace(center=torch.tensor([0, 3, 5]))
    part = g[1:]
    assert part.num_nodes == 6 and part.center.tolist() == [3, 5]
    both = torch.cat([g, g])
    assert both.center.tolist() == [0, 3, 5, 6, 9, 11] and len(both) == 6
    with pytest.raises(ValueError, match="node-level and graph-level"):
        torch.cat([g, ring(3)])


def test_induced_subgraph_remaps_edges_and_centres():
    g = ring(6).replace(center=torch.tensor([2, 4]))
    keep = torch.tensor([False, True, True, True, True, False])
    sub = g.induced(keep)
    assert sub.num_nodes == 4 and sub.center.tolist() == [1, 3]
    assert sub.num_edges == 6  # the path 1-2-3-4, both directions
    assert torch.equal(sub.x[:, 0], torch.tensor([1.0, 2.0, 3.0, 4.0]))


# ----------------------------------------------------------------------------- sources and splits


def test_node_graph_with_masks_probes_the_split_and_pretrains_on_every_node(tmp_path):
    splits = load_dataset(f"graph:{write_node_graph(tmp_path / 'g.npz')}")
    assert splits.train.modality == "graph" and len(splits.train) == 15 and len(splits.test) == 60
    assert len(splits.pretraining) == 90
    batch = splits.train.__getitems__([0, 1])
    x = batch["x"]
    assert x.num_nodes == 90 and len(batch) == 2 and batch["y"].tolist() == [0, 0]
    assert x.center.tolist() == batch["index"].tolist()  # the whole graph: positions are node ids


def test_hops_batches_hold_the_k_hop_neighbourhood(tmp_path):
    path = tmp_path / "path.npz"
    n = 10
    src = np.arange(n - 1)
    np.savez(path, x=np.eye(n, dtype=np.float32), edge_index=np.stack([src, src + 1]))
    source = load_dataset(f"graph:{path}", options={"hops": 2}).train
    g = source.__getitems__([5])["x"]
    assert g.num_nodes == 5  # nodes 3..7
    assert torch.equal(g.x[g.center], torch.eye(n)[[5]])
    with pytest.raises(Exception, match="applies to graphs"):
        load_dataset("digits", options={"hops": 2})


def test_graph_set_source_batches_graphs(tmp_path):
    splits = load_dataset(f"graph:{write_graph_set(tmp_path / 's.npz')}")
    assert splits.test is None and len(splits.train) == 24
    batch = splits.train.__getitems__([0, 1, 2])
    assert len(batch) == 3 and batch["x"].num_graphs == 3 and batch["y"].tolist() == [0, 1, 0]


def test_scaling_is_max_abs_and_keeps_zeros():
    modality = get_modality("graph")
    g = GraphBatch(torch.tensor([[0.0, -4.0], [2.0, 1.0], [0.0, 2.0]]), torch.zeros(2, 0, dtype=torch.long))
    mean, std = modality.statistics([g.replace(center=torch.tensor([0, 1, 2]))])
    assert torch.equal(mean, torch.zeros(2)) and torch.equal(std, torch.tensor([2.0, 4.0]))
    scaled = modality.standardize(g, mean, std)
    assert torch.equal(scaled.x, torch.tensor([[0.0, -1.0], [1.0, 0.25], [0.0, 0.5]]))
    # graph level: the raw baseline is each graph's mean node features
    both = torch.cat([ring(2), ring(4, offset=1.0)])
    assert torch.allclose(modality.raw_features(both, both), torch.tensor([[0.5] * 3, [2.5] * 3]))
    assert get_modality("graph", {"kind": "graph", "level": "graph"}).default_backbone == "gin"


# ----------------------------------------------------------------------------- backbones and views


@pytest.mark.parametrize("name", ["gcn", "gat", "gin"])
def test_a_sample_gets_the_same_row_alone_or_in_a_batch(name):
    torch.manual_seed(0)
    model = create_backbone(name, (3,), hidden_dim=8, num_layers=2).eval()
    graphs = [ring(4), ring(5, offset=1.0), ring(3, offset=-2.0)]
    with torch.no_grad():
        together = model(torch.cat(graphs))
        alone = torch.cat([model(g) for g in graphs])
        assert together.shape == (3, model.embed_dim)
        assert torch.allclose(together, alone, atol=1e-5)
        # node level: the sample rows are the nodes' rows of the whole graph
        g = ring(6)
        nodes = model.forward_nodes(g)
        assert torch.allclose(model(g.replace(center=torch.tensor([4, 1]))), nodes[[4, 1]])


def test_graph_views_keep_centres_and_are_seeded():
    views = create_views("graph", "graph", {"edge_drop": [0.5], "feature_mask": [0.5]})
    g = torch.cat([ring(40), ring(40)]).replace(center=torch.tensor([0, 50]))
    out = views(g, torch.Generator().manual_seed(1), 2)
    again = views(g, torch.Generator().manual_seed(1), 2)
    for v, w in zip(out.global_views, again.global_views):
        assert torch.equal(v.edge_index, w.edge_index) and torch.equal(v.x, w.x)
        assert v.center.tolist() == [0, 50] and v.num_nodes == 80
        assert 0.3 < v.num_edges / g.num_edges < 0.7
    assert not torch.equal(out.global_views[0].edge_index, out.global_views[1].edge_index)


# ----------------------------------------------------------------------------- through the CLI


def test_node_level_run_trains_evaluates_embeds_and_exports(tmp_path, capsys):
    data = f"graph:{write_node_graph(tmp_path / 'g.npz')}"
    run = tmp_path / "run"
    code = main([
        "pretrain", "--data", data, "--method", "simclr", "--epochs", "2", "--batch-size", "32", "-o", str(run),
        "--set", "backbone.hidden_dim=16",
    ])
    assert code == 0
    out = capsys.readouterr().out
    assert "random-init" in out and "raw input" in out
    assert main(["embed", str(run), data, "-o", str(tmp_path / "z.npy"), "--split", "all"]) == 0
    z = np.load(tmp_path / "z.npy")
    assert z.shape == (15 + 60, 16)
    encoder = load_encoder(run)
    splits = load_dataset(data)
    with torch.no_grad():
        direct = encoder(splits.train.__getitems__(list(range(15)))["x"])
    assert np.allclose(z[:15], direct.numpy(), atol=1e-5)
    # graphs export as safetensors; a traced format is a one-line error
    assert main(["export", str(run), "--format", "torchscript", "-o", str(tmp_path / "e.pt")]) == 2
    assert "safetensors" in capsys.readouterr().err
    target, _ = export_encoder(run, tmp_path / "e.safetensors", format="safetensors")
    with torch.no_grad():
        assert np.allclose(load_exported(target)(splits.train.__getitems__([0, 1])["x"]).numpy(), z[:2], atol=1e-5)


def test_graph_level_run_fine_tunes(tmp_path, capsys):
    data = f"graph:{write_graph_set(tmp_path / 's.npz')}"
    run = tmp_path / "run"
    code = main([
        "pretrain", "--data", data, "--method", "simclr", "--epochs", "1", "--batch-size", "8", "-o", str(run),
        "--set", "backbone.hidden_dim=8", "--set", "eval.finetune=true", "--set", "eval.finetune_epochs=1",
        "--set", "eval.finetune_lrs=[0.001]",
    ])
    assert code == 0
    table = capsys.readouterr().out
    assert "finetune" in table and "random-init" in table


def test_fanout_samples_for_training_only(tmp_path):
    splits = load_dataset(f"graph:{write_node_graph(tmp_path / 'g.npz')}", options={"fanout": [2, 2]})
    whole = splits.train.__getitems__([0, 1])["x"]
    sampled = splits.pretraining.__getitems__([0, 1])["x"]
    assert whole.num_nodes == 90 and sampled.num_nodes < 90


def test_pyg_objects_reach_a_run_through_save_graph(tmp_path):
    from torch_geometric.data import Data

    from selfsup.data.graph import save_graph

    x = torch.randn(6, 4)
    edges = torch.tensor([[0, 1, 2, 3, 4], [1, 2, 3, 4, 5]])
    node = Data(x=x, edge_index=edges, y=torch.tensor([0, 0, 1, 1, 2, 2]),
                train_mask=torch.tensor([1, 0, 1, 0, 1, 0]).bool(), test_mask=torch.tensor([0, 1, 0, 1, 0, 1]).bool())
    splits = load_dataset(f"graph:{save_graph(node, tmp_path / 'node.npz')}")
    assert len(splits.train) == 3 and len(splits.pretraining) == 6
    assert torch.equal(splits.pretraining.graph.x, x) and splits.pretraining.graph.edge_index.shape[1] == 10
    # a dataset of one graph with a label per node (Planetoid's shape) is node level too
    assert len(load_dataset(f"graph:{save_graph([node], tmp_path / 'one.npz')}").pretraining) == 6
    graphs = [Data(x=torch.ones(n, 2), edge_index=torch.tensor([[0], [1]]), y=torch.tensor([n % 2])) for n in (2, 3, 4)]
    graph_set = load_dataset(f"graph:{save_graph(graphs, tmp_path / 'set.npz')}").train
    assert len(graph_set) == 3 and graph_set.labels.tolist() == [0, 1, 0]
    assert graph_set.__getitems__([1])["x"].num_nodes == 3
    bad = Data(x=torch.ones(2, 2), edge_index=torch.tensor([[0], [5]]))
    with pytest.raises(Exception, match="out of range"):
        save_graph(bad, tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()


def test_a_column_unseen_by_the_statistics_is_not_blown_up():
    modality = get_modality("graph")
    seen = GraphBatch(torch.tensor([[0.0, 3.0], [0.0, 1.0]]), torch.zeros(2, 0, dtype=torch.long))
    _, scale = modality.statistics([seen.replace(center=torch.tensor([0, 1]))])
    assert scale.tolist() == [1.0, 3.0]
    unseen = GraphBatch(torch.tensor([[1.0, 3.0]]), torch.zeros(2, 0, dtype=torch.long))
    assert modality.standardize(unseen, torch.zeros(2), scale).x.tolist() == [[1.0, 1.0]]
    # the same for standardised modalities: a feature constant where measured keeps std 1
    _, std = get_modality("vector").statistics([torch.tensor([[2.0, 0.0], [2.0, 4.0]])])
    assert std[0] == 1.0 and std[1] > 1.0
