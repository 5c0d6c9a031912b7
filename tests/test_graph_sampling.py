"""Neighbour sampling for node-level graphs too large for one batch (``data.fanout``), the k-hop
batches' direction, and the options' one-line errors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from selfsup.data import load_dataset
from selfsup.errors import ConfigError


def write_graph(path: Path, edges: list[tuple[int, int]], n: int) -> str:
    """An .npz graph with one-hot features (a node's feature row names it) and no labels."""
    np.savez(path, x=np.eye(n, dtype=np.float32), edge_index=np.array(edges, dtype=np.int64).T.reshape(2, -1))
    return f"graph:{path}"


def names(g) -> list[int]:
    """The original ids of a batch's nodes (from the one-hot features)."""
    return g.x.argmax(1).tolist()


def star_of_stars(tmp_path: Path) -> str:
    """Node 0 linked to 1..30; each of those linked to 4 leaves of its own (undirected)."""
    edges, leaf = [], 31
    for hub in range(1, 31):
        edges.append((0, hub))
        for _ in range(4):
            edges.append((hub, leaf))
            leaf += 1
    return write_graph(tmp_path / "stars.npz", edges, leaf)


def test_fanout_keeps_at_most_f_incoming_edges_per_node_per_hop(tmp_path):
    data = star_of_stars(tmp_path)
    source = load_dataset(data, options={"fanout": [5, 2]}).pretraining
    g = source.__getitems__([0])["x"]
    ids = names(g)
    assert ids[int(g.center[0])] == 0
    src, dst = (torch.tensor(ids)[g.edge_index]).tolist()
    into_root = [s for s, d in zip(src, dst) if d == 0]
    assert len(into_root) == 5 and len(set(into_root)) == 5  # 5 of the 30, no repeats
    second = Counter(d for d in dst if d != 0)
    assert set(second) == set(into_root) and all(c == 2 for c in second.values())
    # the sampled edges only (the second hop may pick the root again), and just their nodes
    assert g.num_edges == 5 + 5 * 2 and sorted(ids) == sorted({0, *src})


def test_fanout_draws_neighbours_uniformly_and_covers_small_neighbourhoods(tmp_path):
    data = star_of_stars(tmp_path)
    source = load_dataset(data, options={"fanout": [5]}).pretraining
    counts: Counter[int] = Counter()
    for other in range(31, 151):  # 120 different batches, each with the root
        g = source.__getitems__([0, other])["x"]
        ids = torch.tensor(names(g))
        src, dst = ids[g.edge_index]
        counts.update(src[dst == 0].tolist())
    # each of the 30 neighbours: 120 * 5 / 30 = 20 picks expected
    assert set(counts) == set(range(1, 31)) and 8 <= min(counts.values()) and max(counts.values()) <= 35
    # a fanout above every degree gives the whole k-hop neighbourhood
    big = load_dataset(data, options={"fanout": [100, 100]}).pretraining.__getitems__([3, 40])["x"]
    hops = load_dataset(data, options={"hops": 2}).train.__getitems__([3, 40])["x"]
    assert sorted(names(big)) == sorted(names(hops))


def test_a_batch_samples_the_same_neighbourhood_wherever_it_is_read(tmp_path):
    data = star_of_stars(tmp_path)
    source = load_dataset(data, options={"fanout": [3, 3]}).pretraining
    first = source.__getitems__([0, 5, 9])["x"]
    again = source.__getitems__([0, 5, 9])["x"]
    assert torch.equal(first.edge_index, again.edge_index) and torch.equal(first.x, again.x)
    other_order = source.__getitems__([9, 5, 0])["x"]  # another batch (another epoch's order): a new draw
    assert names(other_order) != names(first) or not torch.equal(other_order.edge_index, first.edge_index)
    # a DataLoader worker process reads the same batch the same way
    in_worker = next(iter(torch.utils.data.DataLoader(
        source, batch_sampler=[[0, 5, 9]], num_workers=1, collate_fn=lambda b: b,
    )))["x"]
    assert torch.equal(in_worker.edge_index, first.edge_index) and torch.equal(in_worker.x, first.x)


def test_hops_follow_the_messages_against_the_edge_direction(tmp_path):
    data = write_graph(tmp_path / "path.npz", [(0, 1), (1, 2), (2, 3)], 4)
    directed = load_dataset(data, options={"hops": 1, "directed": True}).train.__getitems__([2])["x"]
    assert sorted(names(directed)) == [1, 2]  # node 2 hears from node 1, not from 3
    sampled = load_dataset(data, options={"fanout": [5, 5], "directed": True}).pretraining.__getitems__([2])["x"]
    assert sorted(names(sampled)) == [0, 1, 2]


def test_bad_sampling_options_are_one_line_errors(tmp_path):
    data = star_of_stars(tmp_path)
    for fanout, words in [([0], "whole numbers >= 1"), ([], "whole numbers >= 1"), ([2.5], "whole numbers >= 1")]:
        with pytest.raises(ConfigError, match=words):
            load_dataset(data, options={"fanout": fanout})
    with pytest.raises(ConfigError, match=r"data.hops=3 and data.fanout=\[5, 5\] disagree"):
        load_dataset(data, options={"fanout": [5, 5], "hops": 3})
    with pytest.raises(ConfigError, match="applies to graphs"):
        load_dataset("digits", options={"fanout": [5]})
    graphs = tmp_path / "set.npz"
    np.savez(graphs, x=np.ones((6, 1), np.float32), edge_index=np.array([[0, 1, 3, 4], [1, 2, 4, 5]]),
             batch=np.array([0, 0, 0, 1, 1, 1]), y=np.array([0, 1]))
    with pytest.raises(ConfigError, match=r"data.fanout batches the nodes of one graph.*set of 2 graphs") as error:
        load_dataset(f"graph:{graphs}", options={"fanout": [5]})
    assert "\n" not in str(error.value)


def test_a_fanout_run_trains_and_evaluates(tmp_path, capsys):
    pytest.importorskip("torch_geometric")
    from selfsup.cli import main

    g = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat_interleave(40)
    same = y[:, None] == y[None, :]
    adj = torch.triu(torch.rand(120, 120, generator=g) < torch.where(same, 0.15, 0.01), diagonal=1)
    x = torch.randn(120, 8, generator=g) + torch.nn.functional.one_hot(y, 8)
    np.savez(tmp_path / "sbm.npz", x=x.numpy(), edge_index=adj.nonzero().T.numpy(), y=y.numpy())
    code = main([
        "pretrain", "--data", f"graph:{tmp_path / 'sbm.npz'}", "--method", "simclr", "--epochs", "2",
        "--batch-size", "32", "-o", str(tmp_path / "run"), "--set", "data.fanout=[4, 4]",
        "--set", "backbone.hidden_dim=16",
    ])
    assert code == 0
    out = capsys.readouterr().out
    assert "pretrained" in out and "raw input" in out
    stored = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert stored["data"]["params"]["fanout"] == [4, 4]  # a resume or an evaluation samples the same way
