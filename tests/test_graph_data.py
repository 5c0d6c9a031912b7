"""Graphs from disk (selfsup.data.graph): every format from small files written here, every bad
graph's one-line error, the handling of self-loops / duplicates / isolated nodes / direction, the
PyG round trip, and the committed Debian package graph snapshot."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch_geometric.data import Data

from selfsup.data.graph import GraphData, read_graph
from selfsup.errors import ConfigError, DataError

SNAPSHOT = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "package_graph.npz"


def write_folder(folder: Path, nodes: list[str], edges: list[str], graphs: list[str] | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "nodes.csv").write_text("\n".join(nodes) + "\n")
    (folder / "edges.csv").write_text("\n".join(edges) + "\n")
    if graphs is not None:
        (folder / "graphs.csv").write_text("\n".join(graphs) + "\n")
    return folder


NODES = ["id,f1,f2,label,split", "a,1,0,cat,train", "b,0,1,dog,val", "c,1,1,cat,test", "d,0.5,2,,", "e,3,3,dog,train"]
# a -> b, b -> c, c -> c (a self-loop), a -> b again (a duplicate), c -> a; d and e are isolated
EDGES = ["source,target", "a,b", "b,c", "c,c", "a,b", "c,a"]


def edge_set(edge_index: torch.Tensor) -> set[tuple[int, int]]:
    return {(int(s), int(t)) for s, t in edge_index.t()}


def test_csv_folder_node_level_and_handling(tmp_path):
    folder = write_folder(tmp_path / "toy", NODES, EDGES)
    with pytest.warns(UserWarning, match=r"1 edge\(s\) more than once"):
        graph = read_graph(folder)
    assert graph.level == "node" and graph.name == "toy"
    assert graph.node_ids == ["a", "b", "c", "d", "e"]
    assert graph.x.dtype == torch.float32 and graph.x.shape == (5, 2)
    assert graph.x[3].tolist() == [0.5, 2.0] and graph.feature_names == ["f1", "f2"]
    assert graph.class_names == ["cat", "dog"] and graph.y.tolist() == [0, 1, 0, -1, 1]  # d: unlabelled
    assert graph.train_mask.tolist() == [True, False, False, False, True]
    assert graph.val_mask.tolist() == [False, True, False, False, False]
    assert graph.test_mask.tolist() == [False, False, True, False, False]
    # undirected by default: both directions, the duplicate once, the self-loop kept, sorted
    assert graph.edge_index.dtype == torch.int64
    assert edge_set(graph.edge_index) == {(0, 1), (1, 0), (1, 2), (2, 1), (2, 2), (2, 0), (0, 2)}
    assert graph.edge_index.shape[1] == 7
    assert graph.edge_index[0].tolist() == sorted(graph.edge_index[0].tolist())
    # isolated nodes d and e are kept, with no edges
    assert graph.x.shape[0] == 5 and not ({3, 4} & set(graph.edge_index.flatten().tolist()))

    with pytest.warns(UserWarning):
        directed = read_graph(folder, undirected=False)
    assert edge_set(directed.edge_index) == {(0, 1), (1, 2), (2, 2), (2, 0)}


def test_integer_labels_and_no_feature_columns(tmp_path):
    folder = write_folder(tmp_path / "g", ["id,y", "n1,2", "n2,0", "n3,2"], ["source,target", "n1,n2", "n2,n3"])
    graph = read_graph(folder)
    assert graph.y.tolist() == [2, 0, 2] and graph.class_names == ["0", "1", "2"]
    assert graph.x.tolist() == [[1.0], [1.0], [1.0]]  # the constant feature of graphs without attributes
    assert graph.train_mask is None and graph.feature_names is None


def test_npz_node_level_and_pyg_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 3)).astype(np.float32)
    edge_index = np.array([[0, 1, 2, 3, 4], [1, 2, 3, 4, 5]])
    y = np.array([0, 1, 0, 1, 0, 1])
    train = np.array([1, 1, 0, 0, 0, 0], dtype=bool)
    path = tmp_path / "g.npz"
    np.savez(path, x=x, edge_index=edge_index, y=y, train_mask=train, class_names=np.array(["u", "v"]))
    graph = read_graph(path)
    assert torch.equal(graph.x, torch.from_numpy(x)) and graph.y.tolist() == y.tolist()
    assert graph.train_mask.tolist() == train.tolist() and graph.val_mask is None
    assert graph.class_names == ["u", "v"] and graph.node_ids == [str(i) for i in range(6)]
    assert graph.edge_index.shape == (2, 10)

    data = graph.to_pyg()
    assert isinstance(data, Data) and data.num_nodes == 6 and data.is_undirected()
    assert torch.equal(data.x, graph.x) and torch.equal(data.edge_index, graph.edge_index)
    assert torch.equal(data.y, graph.y) and torch.equal(data.train_mask, graph.train_mask)
    again = GraphData.from_pyg(data, name="g")
    for key in ("x", "edge_index", "y", "train_mask"):
        assert torch.equal(getattr(again, key), getattr(graph, key))
    # the Data written back to disk reads the same
    np.savez(tmp_path / "back.npz", x=data.x.numpy(), edge_index=data.edge_index.numpy(), y=data.y.numpy())
    assert torch.equal(read_graph(tmp_path / "back.npz").edge_index, graph.edge_index)


def test_csv_folder_graph_level(tmp_path):
    graphs = ["graph,label", "g1,ring", "g2,pair", "g3,pair"]
    nodes = ["graph,id,f", "g1,a,1", "g1,b,2", "g1,c,3", "g2,a,4", "g2,b,5", "g3,z,6"]
    edges = ["graph,source,target", "g1,a,b", "g1,b,c", "g1,c,a", "g2,b,a"]  # g3: one node, no edges
    found = read_graph(write_folder(tmp_path / "set", nodes, edges, graphs))
    assert found.level == "graph" and found.graph_ids == ["g1", "g2", "g3"]
    assert found.class_names == ["pair", "ring"] and found.y.tolist() == [1, 0, 0]
    ring, pair, single = found.to_pyg()
    assert ring.x.flatten().tolist() == [1, 2, 3] and ring.edge_index.shape == (2, 6) and ring.y.tolist() == [1]
    assert edge_set(pair.edge_index) == {(0, 1), (1, 0)} and pair.x.flatten().tolist() == [4, 5]
    assert single.num_nodes == 1 and single.edge_index.shape == (2, 0)
    assert found.num_features == 1 and found.num_classes == 2
    again = GraphData.from_pyg(found.to_pyg(), name="set")
    assert again.level == "graph" and torch.equal(again.y, found.y)
    assert all(torch.equal(a.edge_index, b.edge_index) for a, b in zip(again.graphs, found.graphs))


def test_npz_graph_level_batch_and_subgraphs(tmp_path):
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    path = tmp_path / "set.npz"
    np.savez(path, x=x, edge_index=np.array([[0, 3], [1, 4]]), batch=np.array([0, 0, 1, 1, 1]), y=np.array([1, 0]))
    found = read_graph(path)
    assert found.level == "graph" and found.y.tolist() == [1, 0]
    first, second = found.graphs
    assert first.x.tolist() == x[:2].tolist() and edge_set(first.edge_index) == {(0, 1), (1, 0)}
    assert second.num_nodes == 3 and edge_set(second.edge_index) == {(1, 2), (2, 1)}

    # subgraphs of a node-level graph: a path 0-1-2-3-4, subgraphs {2, 1, 3} and {4, 0}
    path = tmp_path / "both.npz"
    np.savez(
        path, x=x, edge_index=np.array([[0, 1, 2, 3], [1, 2, 3, 4]]), y=np.array([0, 1, 1, 0, 1]),
        subgraph_ptr=np.array([0, 3, 5]), subgraph_nodes=np.array([2, 1, 3, 4, 0]),
    )
    assert read_graph(path).level == "node"
    sub = read_graph(path, level="graph")
    centred, apart = sub.graphs
    assert centred.x[:, 0].tolist() == [4, 2, 6]  # nodes 2, 1, 3 in the listed order
    assert edge_set(centred.edge_index) == {(0, 1), (1, 0), (0, 2), (2, 0)}
    assert apart.edge_index.shape == (2, 0)
    assert sub.y.tolist() == [1, 1]  # no subgraph_y: the first node's label
    with pytest.raises(ConfigError, match="level"):
        read_graph(tmp_path / "set.npz", level="node")


def write_planetoid(folder: Path, name: str = "tiny", features: int = 6, classes: int = 3) -> dict[str, np.ndarray]:
    """A Planetoid-format set in the layout of Kipf & Welling's files: 20 training nodes, 500 more
    in allx (PyG takes them as the validation split), 20 test nodes in tx whose test.index is a
    permutation of the last 20 ids; a ring graph plus a self-loop on node 0."""
    rng = np.random.default_rng(0)
    n_all, n_test = 520, 20
    n = n_all + n_test
    x = rng.integers(0, 2, size=(n, features)).astype(np.float32)
    labels = rng.integers(0, classes, size=n)
    onehot = np.eye(classes, dtype=np.int64)[labels]
    test_index = n_all + rng.permutation(n_test)
    graph = {i: [(i + 1) % n, (i - 1) % n] for i in range(n)}
    graph[0].append(0)
    parts = {
        "x": sp.csr_matrix(x[:20]), "y": onehot[:20], "allx": sp.csr_matrix(x[:n_all]), "ally": onehot[:n_all],
        # the rows of tx / ty are in test.index order
        "tx": sp.csr_matrix(x[test_index]), "ty": onehot[test_index], "graph": graph,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for part, value in parts.items():
        with open(folder / f"ind.{name}.{part}", "wb") as handle:
            pickle.dump(value, handle)
    (folder / f"ind.{name}.test.index").write_text("\n".join(str(i) for i in test_index) + "\n")
    return {"x": x, "y": labels, "test_index": test_index}


def test_planetoid_files(tmp_path):
    truth = write_planetoid(tmp_path / "planetoid")
    for path in (tmp_path / "planetoid", tmp_path / "planetoid" / "ind.tiny"):
        graph = read_graph(path)
        assert graph.name == "tiny" and graph.x.shape == (540, 6)
        assert torch.equal(graph.x, torch.from_numpy(truth["x"])) and graph.y.tolist() == truth["y"].tolist()
        assert graph.train_mask.sum() == 20 and bool(graph.train_mask[:20].all())
        assert graph.val_mask.sum() == 500 and bool(graph.val_mask[20:520].all())
        assert graph.test_mask.nonzero().flatten().tolist() == sorted(truth["test_index"].tolist())
        assert graph.edge_index.shape == (2, 2 * 540)  # the ring, both directions; PyG drops the self-loop
        assert (0, 0) not in edge_set(graph.edge_index)


def one_line_error(path, match: str, error=DataError, **kwargs) -> str:
    with pytest.raises(error) as caught:
        read_graph(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message, message
    assert re.search(match, message), message
    return message


def test_missing_files(tmp_path):
    one_line_error(tmp_path / "nowhere", "does not exist")
    one_line_error(tmp_path / "nowhere.npz", "does not exist")
    folder = tmp_path / "g"
    folder.mkdir()
    (folder / "edges.csv").write_text("source,target\na,b\n")
    one_line_error(folder, r"nodes\.csv does not exist")
    (folder / "edges.csv").unlink()
    (folder / "nodes.csv").write_text("id,f\na,1\nb,2\n")
    one_line_error(folder, r"edges\.csv does not exist")
    write_planetoid(tmp_path / "p")
    (tmp_path / "p" / "ind.tiny.ty").unlink()
    one_line_error(tmp_path / "p", r"ind\.tiny\.ty does not exist")


def test_edge_index_out_of_range(tmp_path):
    path = tmp_path / "g.npz"
    np.savez(path, x=np.zeros((5, 2)), edge_index=np.array([[0, 1, 4], [1, 2, 5]]))
    one_line_error(path, r"edge 2 \(edge_index\[:, 2\] = 4 -> 5\) is out of range; the graph has 5 nodes")
    np.savez(path, x=np.zeros((5, 2)), edge_index=np.array([[0, -1], [1, 2]]))
    one_line_error(path, r"edge 1 \(edge_index\[:, 1\] = -1 -> 2\) is out of range")
    write_planetoid(tmp_path / "p")
    with open(tmp_path / "p" / "ind.tiny.graph", "wb") as handle:
        pickle.dump({i: [(i + 1) % 540] for i in range(539)} | {539: [900]}, handle)
    one_line_error(tmp_path / "p", r"node 900 \(in the neighbour list of node 539\) is out of range; the features list 540")


def test_nan_and_inf_features(tmp_path):
    nodes = ["id,f1,f2", "a,1,2", "b,nan,3"]
    folder = write_folder(tmp_path / "csv", nodes, ["source,target", "a,b"])
    one_line_error(folder, r"nodes\.csv, line 3: node 'b' has feature nan in column 'f1'")
    x = np.ones((4, 3))
    x[2, 1] = np.inf
    np.savez(tmp_path / "g.npz", x=x, edge_index=np.array([[0], [1]]))
    one_line_error(tmp_path / "g.npz", r"node 2 has feature inf in column 1")


def test_unknown_endpoint_and_non_numeric_feature(tmp_path):
    folder = write_folder(tmp_path / "g", ["id,f", "a,1", "b,2"], ["source,target", "a,b", "b,zz"])
    one_line_error(folder, r"edges\.csv, line 3: node 'zz' \(target\) is not in nodes\.csv")
    folder = write_folder(tmp_path / "h", ["id,f,g", "a,1,2", "b,x7,3"], ["source,target", "a,b"])
    one_line_error(folder, r"line 3 \(node 'b'\), column 'f': the feature is 'x7', not a number")
    folder = write_folder(tmp_path / "k", ["id,f", "a,1", "b,"], ["source,target", "a,b"])
    one_line_error(folder, r"line 3 \(node 'b'\), column 'f': the feature is empty")
    folder = write_folder(tmp_path / "s", ["graph", "g1"], ["graph,source,target"], ["graph,label", "g1,x", "g2,y"])
    one_line_error(folder, r"no 'id' column")


def test_empty_graphs(tmp_path):
    one_line_error(write_folder(tmp_path / "a", ["id,f"], ["source,target"]), r"lists no nodes")
    one_line_error(write_folder(tmp_path / "b", ["id,f", "a,1"], ["source,target"]), r"has no edges")
    np.savez(tmp_path / "c.npz", x=np.zeros((0, 3)), edge_index=np.zeros((2, 0), dtype=np.int64))
    one_line_error(tmp_path / "c.npz", r"empty graph \(no nodes\)")
    graphs = ["graph,label", "g1,x", "g2,y"]
    folder = write_folder(tmp_path / "d", ["graph,id,f", "g1,a,1"], ["graph,source,target"], graphs)
    one_line_error(folder, r"graph 'g2' of .*graphs\.csv has no nodes")
    folder = write_folder(tmp_path / "e", ["graph,id,f"], ["graph,source,target"], ["graph,label"])
    one_line_error(folder, r"graphs\.csv lists no graphs")


def test_package_graph_snapshot():
    assert SNAPSHOT.stat().st_size < 10 * 2**20
    graph = read_graph(SNAPSHOT)
    n, v = graph.x.shape
    assert 5_000 <= n <= 20_000 and 1_000 <= v <= 2_000 and graph.x.dtype == torch.float32
    assert set(graph.x.unique().tolist()) == {0.0, 1.0}  # binary bag of words
    assert graph.edge_index.shape[0] == 2 and graph.edge_index.dtype == torch.int64
    data = graph.to_pyg()
    assert data.is_undirected() and not data.has_isolated_nodes() and not data.has_self_loops()
    assert 10 <= graph.num_classes <= 30 and graph.y.min() >= 0 and len(graph.node_ids) == n
    split = [int(m.sum()) for m in (graph.train_mask, graph.val_mask, graph.test_mask)]
    assert split == [20 * graph.num_classes, 500, 1000]
    assert not bool((graph.train_mask & graph.test_mask).any())
    source, target = graph.edge_index
    assert (graph.y[source] == graph.y[target]).float().mean() > 0.7  # homophilous, like the citation graphs
    # no leak: no feature word is a package name or a section, nor a token of the node's own name
    words = graph.feature_names
    assert len(words) == v and not (set(words) & set(graph.node_ids)) and not (set(words) & set(graph.class_names))
    column = {w: j for j, w in enumerate(words)}
    x = graph.x.bool()
    for i, name in enumerate(graph.node_ids):
        own = [column[t] for t in re.split(r"[-.+_]", name) if t in column]
        assert not bool(x[i, own].any()), name

    ego = read_graph(SNAPSHOT, level="graph")
    assert 300 <= len(ego.graphs) <= 2_000 and ego.class_names == graph.class_names
    centre = {name: i for i, name in enumerate(graph.node_ids)}
    for g in (0, len(ego.graphs) // 2, len(ego.graphs) - 1):
        sub = ego.graphs[g]
        i = centre[ego.graph_ids[g]]
        assert int(sub.y) == int(graph.y[i]) and torch.equal(sub.x[0], graph.x[i])
        assert sub.num_nodes == 1 + int((source == i).sum())  # the centre and its neighbours
