"""Graph data as sample sources: nodes of one graph, or a set of graphs (``graph:PATH``).

- :class:`NodeSource`: the samples are the nodes of one graph (node-level self-supervision:
  GRACE, BGRL, DGI, GraphMAE). A batch of node indices is the whole graph with those nodes as
  its samples (``GraphBatch.center``), so every message-passing layer sees every neighbour; with
  ``hops=k`` it is the subgraph within ``k`` hops of them, and with ``fanout=[f1, f2, ...]`` a
  sampled neighbourhood, at most ``f_h`` neighbours per node at hop ``h`` (GraphSAGE's neighbour
  sampling, Hamilton et al. 2017, arXiv 1706.02216): graphs too large for one pass.
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

import hashlib
from pathlib import Path
from typing import Any, Sequence

import torch

from selfsup.data.base import Batch, DatasetSplits, SampleSource
from selfsup.data.graph import GraphData, read_graph
from selfsup.data.graph_batch import GraphBatch, rank_in_groups
from selfsup.errors import ConfigError, DataError


def graph_info(graph: GraphData) -> dict[str, Any]:
    """What a run stores about its graph data (JSON-able): the level and the feature count, so new
    graphs are checked against the run's."""
    return {"kind": "graph", "level": graph.level, "num_features": graph.num_features}


class NodeSource(SampleSource):
    """The nodes of one graph as samples (see the module docstring).

    ``source[i]`` is node ``i`` alone (with the whole graph as its context); a batch
    (``__getitems__``) is the graph once, with the batch's nodes as its samples. ``hops``: None
    (the whole graph in every batch) or ``k`` (the subgraph within ``k`` hops of the batch's nodes,
    hops taken against the edges' direction, towards the nodes that send messages: exact for a
    ``k``-layer GIN or GAT; GCN's degree normalisation then sees the subgraph's degrees at the
    border). ``fanout``: ``[f1, ..., fk]``, a sampled ``k``-hop neighbourhood instead: at hop
    ``h`` each node reached at hop ``h - 1`` (the batch's nodes first) keeps at most ``f_h`` of its
    incoming edges, drawn uniformly without replacement, and the batch holds the sampled edges
    only (each node aggregates at most ``f_h`` messages), as GraphSAGE and PyG's
    ``NeighborLoader`` do.

    **Where a batch's randomness comes from.** The neighbours sampled for a batch are a function
    of the batch's node indices, in order (a hash of them seeds the draw), and of nothing else: a
    batch read in a DataLoader worker, on another process, or again after a resume samples the
    same neighbourhoods, with no generator state to carry or save. The training order
    (:class:`~selfsup.data.sampler.EpochBatchSampler`: a function of the run's seed and the epoch)
    makes the batches, and so the samples, new every epoch; embedding for the probes reads fixed
    batches, so its neighbourhoods, and the features, are the same on every read.
    """

    in_memory = True
    modality = "graph"

    def __init__(
        self, graph: GraphData, name: str | None = None, hops: int | None = None,
        fanout: Sequence[int] | None = None,
    ) -> None:
        if graph.level != "node":
            raise DataError(f"{graph.name} is a set of graphs; NodeSource takes one node-level graph")
        self.graph = graph
        self.name = name or graph.name
        self.fanout = check_fanout(fanout, hops)
        self.hops = hops if self.fanout is None else len(self.fanout)
        y = graph.y
        self.labels = None if y is None or bool((y < 0).all()) else y
        self.class_names = graph.class_names
        self.data_info = graph_info(graph)
        self._whole = GraphBatch(graph.x, graph.edge_index)
        if self.fanout is not None:
            # Incoming edges by target (CSR): node v's are positions in_ptr[v] .. in_ptr[v + 1].
            source, target = graph.edge_index
            order = torch.argsort(target, stable=True)
            self._in_source, self._in_target = source[order], target[order]
            counts = torch.bincount(target, minlength=len(self))
            self._in_ptr = torch.cat([torch.zeros(1, dtype=torch.int64), torch.cumsum(counts, 0)])

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
        if self.fanout is not None:
            graph = self._sampled(index)
        elif self.hops is None:
            graph = self._whole.replace(center=index)
        else:
            keep = torch.zeros(len(self), dtype=torch.bool)
            keep[index] = True
            source, target = self.graph.edge_index
            for _ in range(self.hops):
                keep[source[keep[target]]] = True  # the nodes that send messages to kept nodes
            graph = self._whole.replace(center=index).induced(keep)
        fields: dict[str, Any] = {"x": graph, "index": index}
        if self.labels is not None:
            fields["y"] = self.labels[index]
        return Batch(fields)

    def _sampled(self, index: torch.Tensor) -> GraphBatch:
        """The batch's sampled neighbourhood (class docstring), its nodes in the graph's order."""
        generator = torch.Generator().manual_seed(batch_seed(index))
        keep = torch.zeros(len(self), dtype=torch.bool)
        keep[index] = True
        frontier = torch.unique(index)
        picked = []
        for limit in self.fanout or ():
            edges = self._sample_incoming(frontier, limit, generator)
            picked.append(edges)
            senders = self._in_source[edges]
            frontier = torch.unique(senders[~keep[senders]])
            keep[frontier] = True
        edges = torch.cat(picked)
        new_id = torch.cumsum(keep.to(torch.int64), 0) - 1
        edge_index = new_id[torch.stack([self._in_source[edges], self._in_target[edges]])]
        return GraphBatch(self.graph.x[keep], edge_index, center=new_id[index])

    def _sample_incoming(self, nodes: torch.Tensor, limit: int, generator: torch.Generator) -> torch.Tensor:
        """Positions (in the by-target order) of at most ``limit`` incoming edges of each of
        ``nodes``, uniformly without replacement: all of them for a node with at most ``limit``."""
        start = self._in_ptr[nodes]
        degree = self._in_ptr[nodes + 1] - start
        owner = torch.repeat_interleave(torch.arange(nodes.numel()), degree)
        first = torch.cumsum(degree, 0) - degree
        position = start[owner] + torch.arange(owner.numel()) - first[owner]
        # A random key per candidate edge; each node keeps its `limit` smallest keys.
        key = torch.rand(owner.numel(), generator=generator)
        order, rank = rank_in_groups(owner, key, nodes.numel())
        return position[order[rank < limit]]


def batch_seed(index: torch.Tensor) -> int:
    """A seed that is a function of a batch's node indices, in order (NodeSource's docstring)."""
    digest = hashlib.blake2b(index.to(torch.int64).numpy().tobytes(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def check_fanout(fanout: Sequence[int] | None, hops: int | None) -> tuple[int, ...] | None:
    """``data.fanout`` checked: None, or a non-empty list of whole numbers >= 1 (one per hop,
    as many as ``data.hops`` when both are given)."""
    if fanout is None:
        return None
    values = [fanout] if isinstance(fanout, int) else list(fanout)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ConfigError(
            f"data.fanout must be a list of whole numbers >= 1, the neighbours sampled per node at each hop "
            f"(e.g. [10, 10]); got {fanout!r}"
        )
    if hops is not None and hops != len(values):
        raise ConfigError(
            f"data.hops={hops} and data.fanout={values} disagree: fanout samples one hop per entry; "
            f"leave data.hops out or give {hops} fanout entries"
        )
    return tuple(values)


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
    reference: dict[str, Any] | None = None, fanout: Sequence[int] | None = None,
) -> DatasetSplits:
    """Read a graph (:func:`~selfsup.data.graph.read_graph`) as the splits of the module docstring.

    ``reference``: a trained run's ``data_info``; the graph must have its level and feature count.
    ``hops`` / ``fanout``: node level only (:class:`NodeSource`).
    """
    check_fanout(fanout, hops)
    graph = read_graph(path, undirected=undirected, level=level)  # type: ignore[arg-type]
    if graph.level == "graph" and (hops is not None or fanout is not None):
        option = "fanout" if fanout is not None else "hops"
        raise ConfigError(
            f"data.{option} batches the nodes of one graph, and {path} is a set of {len(graph.graphs)} graphs "
            f"(graph level, whole graphs per batch); leave data.{option} out, or pass data.level=node if the file "
            "also holds a node-level graph"
        )
    if reference is not None:
        want = (reference.get("level"), reference.get("num_features"))
        if (graph.level, graph.num_features) != want:
            raise DataError(
                f"{path} is a {graph.level}-level graph with {graph.num_features} node features; the run was trained "
                f"on a {want[0]}-level graph with {want[1]}: give graphs with the training data's features"
            )
    if graph.level == "graph":
        return DatasetSplits(GraphSetSource(graph), None)
    nodes = NodeSource(graph, hops=hops, fanout=fanout)
    # Sampled neighbourhoods are a training-time approximation: the probes, embed and the monitor
    # read every neighbour (GraphSAGE's practice; exact ``hops`` batches are kept).
    probed = NodeSource(graph, hops=hops) if fanout is not None else nodes
    pretrain = nodes if probed is not nodes else None
    if nodes.labels is None:
        return DatasetSplits(probed, None, pretrain=pretrain)
    labelled = nodes.labels >= 0
    if graph.train_mask is not None and graph.test_mask is not None:
        train = (graph.train_mask & labelled).nonzero().flatten()
        test = (graph.test_mask & labelled).nonzero().flatten()
        if len(train) == 0 or len(test) == 0:
            raise DataError(f"{path}: the train or test mask holds no labelled node; label some nodes of each split")
        return DatasetSplits(probed.subset(train), probed.subset(test), pretrain=nodes)
    if bool(labelled.all()):
        return DatasetSplits(probed, None, pretrain=pretrain)
    return DatasetSplits(probed.subset(labelled.nonzero().flatten()), None, pretrain=nodes)
