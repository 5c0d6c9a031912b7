"""The generated graphs of benchmarks/graphs.py: the node-level SBM has the homophily, split and
shapes the benchmark states, the graph-level set is well formed, and both read back through
``read_graph`` as a user's .npz would."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch_geometric")

from selfsup.data.graph import read_graph  # noqa: E402

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def graphs():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        spec = importlib.util.spec_from_file_location("graphs_benchmark", BENCHMARKS / "graphs.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # its dataclasses look their module up there
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCHMARKS))
    yield module
    sys.modules.pop("graphs_benchmark", None)


def test_sbm_nodes_homophily_split_and_shapes(graphs, tmp_path):
    p = graphs.SBM_NODES
    a = graphs.make_sbm_nodes()
    n = p["classes"] * p["per_class"]
    assert a["x"].shape == (n, p["features"]) and a["y"].shape == (n,)
    assert np.bincount(a["y"]).tolist() == [p["per_class"]] * p["classes"]
    ei = a["edge_index"]
    assert ei.min() >= 0 and ei.max() < n
    pairs = set(map(tuple, ei.T.tolist()))
    assert all((t, s) in pairs for s, t in pairs)  # undirected: both directions
    assert abs(graphs.edge_homophily(ei, a["y"]) - p["homophily"]) < 0.03  # the stated 0.7, measured
    assert abs(ei.shape[1] / n - p["degree"]) < 0.5  # expected degree
    train, val, test = a["train_mask"], a["val_mask"], a["test_mask"]
    assert (train.astype(int) + val + test).max() == 1  # disjoint
    assert np.bincount(a["y"][train]).tolist() == [p["train_per_class"]] * p["classes"]
    assert (val.sum(), test.sum()) == (p["val"], p["test"])
    b = graphs.make_sbm_nodes()  # a fixed seed: the same graph every time
    assert np.array_equal(a["edge_index"], b["edge_index"]) and np.array_equal(a["x"], b["x"])
    np.savez(tmp_path / "sbm.npz", **a)
    g = read_graph(tmp_path / "sbm.npz")
    assert g.level == "node" and g.num_classes == p["classes"] and int(g.train_mask.sum()) == train.sum()


def test_sbm_graphs_are_well_formed(graphs, tmp_path):
    p = {**graphs.SBM_GRAPHS, "per_class": 20}
    a = graphs.make_sbm_graphs(p)
    count = p["per_class"] * len(p["blocks"])
    assert a["y"].tolist() == [g % len(p["blocks"]) for g in range(count)]
    sizes = np.bincount(a["batch"])
    assert sizes.size == count and sizes.min() >= p["nodes"][0] and sizes.max() <= p["nodes"][1]
    ei = a["edge_index"]
    assert np.array_equal(a["batch"][ei[0]], a["batch"][ei[1]])  # no edge between graphs
    degree = np.bincount(ei[0], minlength=len(a["x"]))
    assert np.array_equal(a["x"].argmax(1), np.minimum(degree, p["max_degree_feature"]))  # one-hot degree
    assert abs(ei.shape[1] / len(a["x"]) - p["degree"]) < 1.0
    np.savez(tmp_path / "sbm_graphs.npz", **a)
    g = read_graph(tmp_path / "sbm_graphs.npz")
    assert g.level == "graph" and len(g.graphs) == count and g.num_classes == len(p["blocks"])


def test_block_probabilities_give_the_expected_degree(graphs):
    sizes = [8, 8, 9]
    probs = np.array(graphs._block_probs(sizes, degree=5.0, intra=0.8))
    assert np.allclose(probs, probs.T)
    expected = [sum(probs[a][b] * (sizes[b] - (a == b)) for b in range(3)) for a in range(3)]
    assert np.allclose(expected, 5.0, atol=0.2)
