"""Graph data as sample sources: nodes of one graph, or a set of graphs (``graph:PATH``).

- :class:`NodeSource`: the samples are the nodes of one graph (node-level self-supervision:
  GRACE, BGRL, DGI, GraphMAE). A batch of node indices is the whole graph with those nodes as
  its samples (``GraphBatch.center``), so every message-passing layer sees every neighbour; with
  ``hops=k`` it is the subgraph within ``k`` hops of them (graphs too large for one pass).
- :class:`GraphSetSource`: the samples are small graphs (graph-level: a label per graph).

:func:`load_graph` reads any format of :func:`~selfsup.data.graph.read_graph` and splits it:

- node level, with a public split (``train_mask`` / ``test_mask``, Planetoid's): the probes fit
  on the train nodes and score the test nodes (the Planetoid protocol, Yang et al. 2016, arXiv
  1603.08861), and pretraining reads **every** node (transductive, as GRACE, BGRL, DGI and
  GraphMAE do): ``DatasetSplits.pretrain``. Without masks the probes use the labelled nodes and
  hold out a part of them; unlabelled nodes (``y = -1``) are pretrained on and never probed.
- graph level: every graph is a training sample (the papers' 10-fold protocol splits them at
  evaluation time).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from selfsup.data.base import Batch, DatasetSplits, SampleSource
from selfsup.data.graph import GraphData, read_graph
from selfsup.data.graph_batch import GraphBatch
from selfsup.errors import DataError


def graph_info(graph: GraphData) -> dict[str, Any]:
    """What a run stores about its graph data (JSON-able): the level and the feature count, so new
    graphs are checked against the run's."""
    return {"kind": "graph", "level": graph.level, "num_features": graph.num_features}


class NodeSource(SampleSource):
    """The nodes of one graph as samples (see the module docstring).

    ``source[i]`` is node ``i`` alone (with the whole graph as its context); a batch
    (``__getitems__``) is the graph once, with the batch's nodes as its samples. ``hops``: None
    (the whole graph in every batch) or ``k`` (the subgraph within ``k`` hops of the batch's nodes:
    exact for a ``k``-layer GIN or GAT; GCN's degree normalisation then sees the subgraph's degrees
    at the border).
    """

    in_memory = True
    modality = "graph"

    def __init__(self, graph: GraphData, name: str | None = None, hops: int | None = None) -> None:
        if graph.level != "node":
            raise DataError(f"{graph.name} is a set of graphs; NodeSource takes one node-level graph")
        self.graph = graph
        self.name = name or graph.name
        self.hops = hops
        y = graph.y
        self.labels = None if y is None or bool((y < 0).all()) else y
        self.class_names = graph.class_names
        self.data_info = graph_info(graph)
        self._whole = GraphBatch(graph.x, graph.edge_index)

    def __len__(self) -> int:
        return int(self.graph.x.shape[0])

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (self.graph.num_features,)

    def sample_id(self, index: int) -> str:
        ids = self.graph.node_ids
        return ids[index] if ids is not None else str(index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._batch([int(index)]).fields

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        return self._batch(indices)

    def _batch(self, indices: Sequence[int]) -> Batch:
        index = torch.as_tensor(list(indices), dtype=torch.int64)
        if self.hops is None:
            graph = self._whole.replace(center=index)
        else:
            keep = torch.zeros(len(self), dtype=torch.bool)
            keep[index] = True
            source, target = self.graph.edge_index
            for _ in range(self.hops):
                keep[target[keep[source]]] = True
            graph = self._whole.replace(center=index).induced(keep)
        fields: dict[str, Any] = {"x": graph, "index": index}
        if self.labels is not None:
            fields["y"] = self.labels[index]
        return Batch(fields)


class GraphSetSource(SampleSource):
    """Small graphs as samples, each with its label (graph-level data)."""

    in_memory = True
    modality = "graph"

    def __init__(self, graph: GraphData, name: str | None = None) -> None:
        if graph.level != "graph":
            raise DataError(f"{graph.name} is one node-level graph; GraphSetSource takes a set of graphs")
        self.graph = graph
        self.name = name or graph.name
        self.labels = graph.y
        self.class_names = graph.class_names
        self.data_info = graph_info(graph)
        self._graphs = [GraphBatch(g.x, g.edge_index) for g in graph.graphs]

    def __len__(self) -> int:
        return len(self._graphs)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (self.graph.num_features,)

    def sample_id(self, index: int) -> str:
        ids = self.graph.graph_ids
        return ids[index] if ids is not None else str(index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([int(index)]).fields

    def __getitems__(self, indices: Sequence[int]) -> Batch:
        index = torch.as_tensor(list(indices), dtype=torch.int64)
        graphs = torch.cat([self._graphs[int(i)] for i in index]) if len(index) else None
        fields: dict[str, Any] = {"x": graphs, "index": index, "y": self.labels[index]}
        return Batch(fields)


def load_graph(
    path: str | Path, level: str | None = None, hops: int | None = None, undirected: bool = True,
    reference: dict[str, Any] | None = None,
) -> DatasetSplits:
    """Read a graph (:func:`~selfsup.data.graph.read_graph`) as the splits of the module docstring.

    ``reference``: a trained run's ``data_info``; the graph must have its level and feature count.
    """
    graph = read_graph(path, undirected=undirected, level=level)  # type: ignore[arg-type]
    if reference is not None:
        want = (reference.get("level"), reference.get("num_features"))
        if (graph.level, graph.num_features) != want:
            raise DataError(
                f"{path} is a {graph.level}-level graph with {graph.num_features} node features; the run was trained "
                f"on a {want[0]}-level graph with {want[1]}: give graphs with the training data's features"
            )
    if graph.level == "graph":
        return DatasetSplits(GraphSetSource(graph), None)
    nodes = NodeSource(graph, hops=hops)
    if nodes.labels is None:
        return DatasetSplits(nodes, None)
    labelled = nodes.labels >= 0
    if graph.train_mask is not None and graph.test_mask is not None:
        train = (graph.train_mask & labelled).nonzero().flatten()
        test = (graph.test_mask & labelled).nonzero().flatten()
        if len(train) == 0 or len(test) == 0:
            raise DataError(f"{path}: the train or test mask holds no labelled node; label some nodes of each split")
        return DatasetSplits(nodes.subset(train), nodes.subset(test), pretrain=nodes)
    if bool(labelled.all()):
        return DatasetSplits(nodes, None)
    return DatasetSplits(nodes.subset(labelled.nonzero().flatten()), None, pretrain=nodes)
