"""GraphBatch: graphs in a batch, as one disjoint union that methods handle like a tensor of samples.

The joint-embedding methods are written for tensors: they embed two views in one pass with
``encoder(torch.cat([x1, x2]))`` and count samples with ``x1.shape[0]``. A :class:`GraphBatch`
answers both, so those methods run on graphs unchanged:

- ``torch.cat([g1, g2])`` is the disjoint union (edge indices of ``g2`` offset by the nodes of
  ``g1``): one message-passing pass over both views;
- ``g.shape[0]`` / ``len(g)`` is the number of **samples**, and ``g[i:j]`` / ``g[index]`` selects
  samples (the probes embed in slices, fine-tuning in shuffled minibatches).

What a sample is depends on the level (the graph self-supervision literature has both):

- **graph level** (``center is None``): a sample is a graph; ``node_graph [n]`` says which graph
  each node belongs to, and an encoder pools its nodes into one row per graph;
- **node level** (``center [S]``): a sample is a node of a graph held whole (or a subgraph around
  the sample nodes): ``center`` lists the positions of the ``S`` sample nodes among the ``n``
  nodes, and an encoder returns their rows. Selecting samples keeps the whole graph.

Pure torch (no PyTorch Geometric), so the modality, views and methods layers can name it without
the ``[graph]`` extra; backbones hand ``x`` and ``edge_index`` to PyG's layers.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch


class GraphBatch:
    """One or more graphs as a disjoint union (see the module docstring).

    Attributes:
        x: node features ``[n, F]`` (float32 once the modality made them floats).
        edge_index: ``[2, E]`` int64, source then target, indices into the ``n`` nodes.
        node_graph: ``[n]`` int64, the graph of each node, ``0 .. num_graphs - 1``.
        num_graphs: graphs in the union (a graph may have no nodes left after a node-drop view).
        center: node level: ``[S]`` int64 positions of the sample nodes; ``None``: graph level.
        edge_weight: ``[E]`` float edge weights (a diffusion view's), or ``None`` (all 1).
    """

    def __init__(
        self, x: torch.Tensor, edge_index: torch.Tensor, node_graph: torch.Tensor | None = None,
        num_graphs: int | None = None, center: torch.Tensor | None = None, edge_weight: torch.Tensor | None = None,
    ) -> None:
        n = int(x.shape[0])
        self.x = x
        self.edge_index = edge_index
        self.node_graph = node_graph if node_graph is not None else torch.zeros(n, dtype=torch.int64, device=x.device)
        self.num_graphs = int(num_graphs) if num_graphs is not None else (1 if node_graph is None else _count(node_graph))
        self.center = center
        self.edge_weight = edge_weight

    # -- what a tensor of samples answers ------------------------------------------------------

    @property
    def node_level(self) -> bool:
        return self.center is not None

    @property
    def num_nodes(self) -> int:
        return int(self.x.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.edge_index.shape[1])

    @property
    def num_samples(self) -> int:
        return int(self.center.shape[0]) if self.center is not None else self.num_graphs

    @property
    def shape(self) -> torch.Size:
        """``(samples,)``: the number of samples is all a method reads from a view's shape."""
        return torch.Size([self.num_samples])

    def __len__(self) -> int:
        return self.num_samples

    @property
    def ndim(self) -> int:
        return 1

    @property
    def device(self) -> torch.device:
        return self.x.device

    @property
    def dtype(self) -> torch.dtype:
        return self.x.dtype

    def replace(self, **changes: Any) -> "GraphBatch":
        """The same graphs with some fields changed (views change ``x``, ``edge_index``, ...)."""
        fields = {
            "x": self.x, "edge_index": self.edge_index, "node_graph": self.node_graph, "num_graphs": self.num_graphs,
            "center": self.center, "edge_weight": self.edge_weight,
        }
        fields.update(changes)
        return GraphBatch(**fields)

    def _map(self, fn: Any) -> "GraphBatch":
        def apply(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else fn(t)

        return GraphBatch(
            apply(self.x), apply(self.edge_index), apply(self.node_graph), self.num_graphs, apply(self.center),
            apply(self.edge_weight),
        )

    def to(self, *args: Any, **kwargs: Any) -> "GraphBatch":
        """Every tensor moved to a device (``.to(device)``); a dtype changes the features only."""
        if args and isinstance(args[0], torch.dtype):
            return self.replace(x=self.x.to(*args, **kwargs))
        if "dtype" in kwargs and not args and "device" not in kwargs:
            return self.replace(x=self.x.to(**kwargs))
        return self._map(lambda t: t.to(*args, **kwargs))

    def float(self) -> "GraphBatch":
        return self if self.x.dtype == torch.float32 else self.replace(x=self.x.float())

    def pin_memory(self) -> "GraphBatch":
        return self._map(lambda t: t.pin_memory())

    def detach(self) -> "GraphBatch":
        return self.replace(x=self.x.detach())

    def __repr__(self) -> str:
        level = f"{self.num_samples} nodes of" if self.node_level else f"{self.num_graphs} graphs,"
        return f"GraphBatch({level} {self.num_nodes} nodes, {self.num_edges} edges, {self.x.shape[1]} features)"

    # -- selecting and joining samples ---------------------------------------------------------

    def __getitem__(self, index: int | slice | Sequence[int] | torch.Tensor) -> "GraphBatch":
        """The samples at ``index`` (a slice, an index tensor or a boolean mask over samples), in that order."""
        picked = torch.arange(self.num_samples, device=self.device)[index].reshape(-1)
        if self.center is not None:
            return self.replace(center=self.center[picked])
        return self.select_graphs(picked)

    def select_graphs(self, graphs: torch.Tensor) -> "GraphBatch":
        """Graph level: the graphs ``graphs`` (distinct), renumbered ``0 .. len(graphs) - 1`` in that order."""
        graphs = graphs.to(self.device, torch.int64)
        position = torch.full((self.num_graphs,), -1, dtype=torch.int64, device=self.device)
        position[graphs] = torch.arange(graphs.numel(), device=self.device)
        if int((position >= 0).sum()) != graphs.numel():
            # A sample picked twice: select each on its own and join the copies.
            return cat([self.select_graphs(g.reshape(1)) for g in graphs])
        keep = position[self.node_graph] >= 0
        return self.induced(keep, node_graph=position[self.node_graph[keep]], num_graphs=int(graphs.numel()))

    def induced(self, keep: torch.Tensor, **changes: Any) -> "GraphBatch":
        """The subgraph on the nodes where ``keep [n]`` is true (edges between kept nodes; node
        order kept, ``center`` remapped; a node-level batch must keep its sample nodes)."""
        new_id = torch.cumsum(keep.to(torch.int64), 0) - 1
        ends = keep[self.edge_index[0]] & keep[self.edge_index[1]]
        fields: dict[str, Any] = {
            "x": self.x[keep], "edge_index": new_id[self.edge_index[:, ends]],
            "node_graph": self.node_graph[keep], "num_graphs": self.num_graphs,
            "edge_weight": None if self.edge_weight is None else self.edge_weight[ends],
            "center": None if self.center is None else new_id[self.center],
        }
        fields.update(changes)
        return GraphBatch(**fields)

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.cat and args and all(isinstance(g, GraphBatch) for g in args[0]):
            if kwargs.get("dim", args[1] if len(args) > 1 else 0) != 0:
                raise ValueError("graphs are joined along the sample dimension only (dim=0)")
            return cat(list(args[0]))
        return NotImplemented


def cat(graphs: Sequence[GraphBatch]) -> GraphBatch:
    """The disjoint union of ``graphs`` (all node level or all graph level): samples in order."""
    if not graphs:
        raise ValueError("no graphs to join")
    if len(graphs) == 1:
        return graphs[0]
    levels = {g.node_level for g in graphs}
    if len(levels) != 1:
        raise ValueError("cannot join node-level and graph-level graph batches")
    node_offsets = torch.tensor([0] + [g.num_nodes for g in graphs[:-1]]).cumsum(0).tolist()
    graph_offsets = torch.tensor([0] + [g.num_graphs for g in graphs[:-1]]).cumsum(0).tolist()
    weights = None
    if any(g.edge_weight is not None for g in graphs):
        weights = torch.cat([
            g.edge_weight if g.edge_weight is not None
            else torch.ones(g.num_edges, dtype=g.x.dtype, device=g.device) for g in graphs
        ])
    return GraphBatch(
        x=torch.cat([g.x for g in graphs]),
        edge_index=torch.cat([g.edge_index + off for g, off in zip(graphs, node_offsets)], dim=1),
        node_graph=torch.cat([g.node_graph + off for g, off in zip(graphs, graph_offsets)]),
        num_graphs=sum(g.num_graphs for g in graphs),
        center=torch.cat([g.center + off for g, off in zip(graphs, node_offsets)]) if graphs[0].node_level else None,
        edge_weight=weights,
    )


def _count(node_graph: torch.Tensor) -> int:
    return int(node_graph.max()) + 1 if node_graph.numel() else 0


def pool_graphs(h: torch.Tensor, node_graph: torch.Tensor, num_graphs: int, how: str = "mean") -> torch.Tensor:
    """Node rows ``h [n, D]`` -> one row per graph ``[num_graphs, D]`` (``mean``, ``sum`` or ``max``;
    a graph without nodes gets zeros)."""
    out = torch.zeros(num_graphs, h.shape[1], dtype=h.dtype, device=h.device)
    if how == "max":
        out = out.fill_(float("-inf")).scatter_reduce(0, node_graph[:, None].expand_as(h), h, "amax")
        return torch.where(torch.isinf(out), torch.zeros_like(out), out)
    out = out.index_add(0, node_graph, h)
    if how == "sum":
        return out
    count = torch.zeros(num_graphs, dtype=h.dtype, device=h.device).index_add(0, node_graph, torch.ones_like(h[:, 0]))
    return out / count.clamp(min=1)[:, None]


def sample_rows(g: GraphBatch, h: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """Node rows ``h [n, D]`` of ``g`` -> one row per sample: the sample nodes' rows (node level)
    or the graphs pooled with ``how`` (graph level)."""
    if g.center is not None:
        return h[g.center]
    return pool_graphs(h, g.node_graph, g.num_graphs, how)


def rank_in_groups(group: torch.Tensor, key: torch.Tensor, num_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Items sorted by ``group [m]`` (ints in ``0 .. num_groups - 1``), then by ``key [m]``:
    returns ``(order, rank)``, the permutation and each sorted item's rank within its group (0:
    the smallest key). With random keys, ``order[rank < k]`` is a uniform pick of ``k`` per group."""
    order = torch.argsort(key, stable=True)
    order = order[torch.argsort(group[order], stable=True)]
    count = torch.bincount(group, minlength=num_groups)
    start = torch.cumsum(count, 0) - count
    rank = torch.arange(order.numel(), device=group.device) - start[group[order]]
    return order, rank
