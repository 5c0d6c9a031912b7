"""Views of graphs (:class:`~selfsup.data.graph_batch.GraphBatch`): the corruptions of the graph
contrastive papers, each a function of a batch and a ``torch.Generator``.

- **Edge dropping and feature masking** (GRACE: Zhu et al. 2020, arXiv 2006.04131; also BGRL:
  Thakoor et al. 2022, arXiv 2102.06514): every edge removed with probability ``edge_drop``; every
  feature column zeroed with probability ``feature_mask``, drawn once per graph.
- **Node dropping** (GraphCL: You et al. 2020, arXiv 2010.13902): every node removed with its
  edges with probability ``node_drop``; a node-level batch's sample nodes (``center``) never are.
- **Subgraphs** (GraphCL's): graph level, a connected subgraph grown from one random start node
  per graph until it holds ``subgraph`` of the graph's nodes; node level, the sample nodes grown
  the same way into a random part of their neighbourhood (the same fraction of the batch's nodes).
- **Edge perturbation** and **attribute masking** (GraphCL's other two): ``perturb_edges`` drops
  a fraction of the edges and adds as many random edges inside the same graphs; ``mask_nodes``
  zeroes the whole feature row of a fraction of the nodes.
- **Diffusion** (MVGRL: Hassani & Khasahmadi 2020, arXiv 2006.05582): the graph replaced by its
  personalized-PageRank matrix ``S = alpha (I - (1 - alpha) T)^-1``, ``T = D^-1/2 (A + I) D^-1/2``,
  sparsified (Klicpera et al. 2019, "Diffusion improves graph learning", arXiv 1911.05485): the
  view's edges are S's kept entries and its ``edge_weight`` their values.

Every random choice is made per graph and drawn from the generator passed in, in a fixed order:
the same generator state gives the same views, a graph-level batch gets its own feature mask, node
set, subgraph and GraphCL augmentation per graph, and a node-level batch (one graph) one of each.

Three registered view generators use them: ``graph`` (every corruption as an option, a rate per
view, GRACE's setting by default), ``graphcl`` (one of GraphCL's four augmentations picked per
graph per view) and ``mvgrl`` (view 0 the graph itself, view 1 its diffusion).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Annotated, Any

import torch

from selfsup.config import NonNegativeInt, OneOf, Range
from selfsup.config_checks import check_not_empty, coerce_optional
from selfsup.data.graph_batch import GraphBatch, rank_in_groups
from selfsup.views.base import Views, register_views

Rate = Annotated[float, Range(ge=0, lt=1)]
KeepFraction = Annotated[float, Range(gt=0, le=1)]
RateLike = float | torch.Tensor  # one rate for every graph, or a rate per graph [G]


# ------------------------------------------------------------------------------------ helpers


def _per_graph(rate: RateLike, g: GraphBatch) -> torch.Tensor:
    """``rate`` as a float tensor ``[G]`` on the batch's device (one value per graph)."""
    if isinstance(rate, torch.Tensor):
        return rate.to(g.device, torch.float32).reshape(g.num_graphs)
    return torch.full((g.num_graphs,), float(rate), device=g.device)


def _is_zero(rate: RateLike) -> bool:
    return bool((rate == 0).all()) if isinstance(rate, torch.Tensor) else rate == 0


def _layout(g: GraphBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(order, start, count)``: the node ids sorted by graph, where each graph's run starts in
    ``order`` and its node count (``[n]``, ``[G]``, ``[G]``)."""
    count = torch.bincount(g.node_graph, minlength=g.num_graphs)
    order = torch.argsort(g.node_graph, stable=True)
    start = torch.cumsum(count, 0) - count
    return order, start, count


def _random_node_of(graphs: torch.Tensor, g: GraphBatch, generator: torch.Generator) -> torch.Tensor:
    """One uniformly random node id of each graph in ``graphs`` (each must have nodes)."""
    order, start, count = _layout(g)
    u = torch.rand(graphs.numel(), generator=generator, device=g.device)
    offset = (u * count[graphs]).long().clamp(max=count[graphs] - 1)
    return order[start[graphs] + offset]


# ------------------------------------------------------------------------------ corruptions


def drop_edges(g: GraphBatch, p: RateLike, generator: torch.Generator) -> GraphBatch:
    """Each edge removed with probability ``p`` (a directed edge and its reverse on their own, as
    GRACE's code does); ``p``: one rate, or a rate per graph ``[G]`` (the graph of the edge's source)."""
    if _is_zero(p) or g.num_edges == 0:
        return g
    rate = _per_graph(p, g)[g.node_graph[g.edge_index[0]]]
    keep = torch.rand(g.num_edges, generator=generator, device=g.device) >= rate
    weight = None if g.edge_weight is None else g.edge_weight[keep]
    return g.replace(edge_index=g.edge_index[:, keep], edge_weight=weight)


def mask_features(g: GraphBatch, p: RateLike, generator: torch.Generator) -> GraphBatch:
    """Each feature column zeroed with probability ``p``, drawn once per graph (all of a graph's
    nodes lose the same columns; each graph of a batch its own)."""
    if _is_zero(p):
        return g
    rate = _per_graph(p, g)[:, None]
    masked = torch.rand(g.num_graphs, g.x.shape[1], generator=generator, device=g.device) < rate
    return g.replace(x=g.x.masked_fill(masked[g.node_graph], 0.0))


def mask_nodes(g: GraphBatch, p: RateLike, generator: torch.Generator) -> GraphBatch:
    """GraphCL's attribute masking: each node's whole feature row zeroed with probability ``p``.
    (GraphCL's code writes Gaussian noise there; zeros keep sparse count features sparse.)"""
    if _is_zero(p):
        return g
    rate = _per_graph(p, g)[g.node_graph]
    masked = torch.rand(g.num_nodes, generator=generator, device=g.device) < rate
    return g.replace(x=g.x.masked_fill(masked[:, None], 0.0))


def drop_nodes(g: GraphBatch, p: RateLike, generator: torch.Generator) -> GraphBatch:
    """Each node removed, with its edges, with probability ``p``; a node-level batch's sample
    nodes (``center``) are always kept. A graph may lose every node (it then pools to zeros)."""
    if _is_zero(p) or g.num_nodes == 0:
        return g
    rate = _per_graph(p, g)[g.node_graph]
    keep = torch.rand(g.num_nodes, generator=generator, device=g.device) >= rate
    if g.center is not None:
        keep[g.center] = True
    return g.induced(keep)


def perturb_edges(g: GraphBatch, p: RateLike, generator: torch.Generator) -> GraphBatch:
    """GraphCL's edge perturbation: each edge removed with probability ``p``, and as many edges
    added between uniformly random nodes of the same graphs (one added per removed edge, in the
    removed edge's graph; weight 1 where the batch has weights)."""
    if _is_zero(p) or g.num_edges == 0:
        return g
    graph_of_edge = g.node_graph[g.edge_index[0]]
    rate = _per_graph(p, g)[graph_of_edge]
    drop = torch.rand(g.num_edges, generator=generator, device=g.device) < rate
    graphs = graph_of_edge[drop]
    added = torch.stack([_random_node_of(graphs, g, generator), _random_node_of(graphs, g, generator)])
    edge_index = torch.cat([g.edge_index[:, ~drop], added], dim=1)
    weight = None
    if g.edge_weight is not None:
        weight = torch.cat([g.edge_weight[~drop], torch.ones(added.shape[1], dtype=g.edge_weight.dtype, device=g.device)])
    return g.replace(edge_index=edge_index, edge_weight=weight)


def grow_subgraph(
    g: GraphBatch, seeds: torch.Tensor, target: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """The nodes of a connected random subgraph grown from ``seeds``: a keep mask ``[n]``.

    A randomised breadth-first growth: each round, the frontier (nodes joined by an edge, either
    way, to a kept node) is shuffled and each graph takes as many of its frontier nodes as it
    still needs, until it holds ``target [G]`` nodes or its seeds' components are exhausted.
    Every kept node is connected to a seed of its graph.
    """
    inside = torch.zeros(g.num_nodes, dtype=torch.bool, device=g.device)
    inside[seeds] = True
    need = target - torch.bincount(g.node_graph[inside], minlength=g.num_graphs)
    both = torch.cat([g.edge_index, g.edge_index.flip(0)], dim=1)
    while True:
        frontier = torch.zeros_like(inside)
        frontier[both[1][inside[both[0]]]] = True
        frontier &= ~inside & (need[g.node_graph] > 0)
        candidates = frontier.nonzero().flatten()
        if candidates.numel() == 0:
            return inside
        key = torch.rand(candidates.numel(), generator=generator, device=g.device)
        group = g.node_graph[candidates]
        order, rank = rank_in_groups(group, key, g.num_graphs)
        take = candidates[order][rank < need[group[order]]]
        inside[take] = True
        need = need - torch.bincount(g.node_graph[take], minlength=g.num_graphs)


def subgraph(g: GraphBatch, keep: RateLike, generator: torch.Generator) -> GraphBatch:
    """GraphCL's subgraph view: ``keep`` (a fraction, or one per graph ``[G]``; 1 leaves a graph
    whole) of each graph's nodes, connected (:func:`grow_subgraph`).

    Graph level: grown from one uniformly random start node per graph (GraphCL's random walk
    start). Node level: grown from the sample nodes (``center``), so the view holds them and a
    random part of their neighbourhood, at least the sample nodes.
    A graph whose start node's component is smaller than the asked size keeps that component.
    """
    fraction = _per_graph(keep, g)
    if bool((fraction >= 1).all()) or g.num_nodes == 0:
        return g
    _, _, count = _layout(g)
    target = torch.where(fraction >= 1, count, torch.round(fraction * count).long().clamp(min=1))
    if g.center is not None:
        seeds = g.center
    else:
        graphs = (count > 0).nonzero().flatten()
        seeds = _random_node_of(graphs, g, generator)
    inside = grow_subgraph(g, seeds, target, generator)
    return g.induced(inside)


# -------------------------------------------------------------------------------- diffusion


@dataclass
class Diffusion:
    """Personalized-PageRank diffusion (MVGRL's view; the sparsification of Klicpera et al. 2019).

    ``alpha``: the teleport (restart) probability (MVGRL: 0.2). The view keeps, for each node
    (column of S, the edge's source), its ``top_k`` largest entries (None: all), and only entries
    at least ``eps`` (None: no threshold). A graph of at most ``dense_max_nodes`` nodes (each graph
    of a graph-level batch on its own) is inverted exactly; a larger one is the power series
    ``alpha sum_k ((1 - alpha) T)^k`` in sparse products, each term's entries below ``series_tol``
    pruned (keep it below ``eps``).
    """

    alpha: Annotated[float, Range(gt=0, lt=1)] = 0.2
    top_k: Annotated[int, Range(ge=1)] | None = 64
    eps: Annotated[float, Range(gt=0, lt=1)] | None = None
    dense_max_nodes: NonNegativeInt = 1024
    series_tol: Annotated[float, Range(gt=0, lt=1)] = 1e-3

    def __post_init__(self) -> None:
        coerce_optional(self, "top_k", "eps")


def _normalised_adjacency(
    edge_index: torch.Tensor, edge_weight: torch.Tensor | None, num_nodes: int, nodes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``T = D^-1/2 (A + I) D^-1/2`` as (target, source, value) triples, ``A[target, source]`` the
    edge weights (1 without weights), self-loops added on ``nodes``; ``D``: the row sums of ``A + I``."""
    device = edge_index.device
    weight = torch.ones(edge_index.shape[1], device=device) if edge_weight is None else edge_weight.float()
    source = torch.cat([edge_index[0], nodes])
    target = torch.cat([edge_index[1], nodes])
    value = torch.cat([weight, torch.ones(nodes.numel(), device=device)])
    degree = torch.zeros(num_nodes, device=device).index_add_(0, target, value)
    scale = torch.where(degree > 0, degree.clamp(min=1e-12).rsqrt(), torch.zeros_like(degree))
    return target, source, value * scale[target] * scale[source]


def _sparsify(
    target: torch.Tensor, source: torch.Tensor, value: torch.Tensor, num_nodes: int, config: Diffusion
) -> tuple[torch.Tensor, torch.Tensor]:
    """Entries of S -> the view's ``(edge_index [2, E], edge_weight [E])``: per source node its
    ``top_k`` largest entries, those at least ``eps`` (and above round-off)."""
    keep = value > 1e-10
    if config.eps is not None:
        keep &= value >= config.eps
    target, source, value = target[keep], source[keep], value[keep]
    if config.top_k is not None and value.numel():
        order, rank = rank_in_groups(source, -value, num_nodes)
        chosen = order[rank < config.top_k]
        target, source, value = target[chosen], source[chosen], value[chosen]
    return torch.stack([source, target]), value


def _ppr_dense(g: GraphBatch, graphs: torch.Tensor, config: Diffusion) -> tuple[torch.Tensor, ...]:
    """S's entries of the graphs ``graphs`` (each small), inverted exactly, several graphs at once
    in padded blocks; returns (target, source, value) in the batch's node ids."""
    order, start, count = _layout(g)
    position = torch.empty(g.num_nodes, dtype=torch.int64, device=g.device)
    position[order] = torch.arange(g.num_nodes, device=g.device) - start[g.node_graph[order]]
    graphs = graphs[torch.argsort(count[graphs], stable=True)]
    sizes = count[graphs].tolist()
    parts: list[tuple[torch.Tensor, ...]] = []
    i = 0
    while i < graphs.numel():
        # A chunk of graphs of similar size (sorted): at most ~4M matrix entries at once.
        j = i + 1
        while j < graphs.numel() and (j - i + 1) * sizes[j] ** 2 <= 1 << 22:
            j += 1
        parts.append(_ppr_dense_chunk(g, graphs[i:j], sizes[j - 1], position, count, config))
        i = j
    if not parts:
        empty = torch.empty(0, dtype=torch.int64, device=g.device)
        return empty, empty, torch.empty(0, device=g.device)
    return tuple(torch.cat([p[k] for p in parts]) for k in range(3))


def _ppr_dense_chunk(
    g: GraphBatch, chunk: torch.Tensor, m: int, position: torch.Tensor, count: torch.Tensor, config: Diffusion,
) -> tuple[torch.Tensor, ...]:
    """S of the graphs ``chunk`` (at most ``m`` nodes each), one padded ``[m, m]`` block each;
    ``position``: each node's place in its graph. Returns (target, source, value)."""
    C = chunk.numel()
    slot = torch.full((g.num_graphs,), -1, dtype=torch.int64, device=g.device)
    slot[chunk] = torch.arange(C, device=g.device)
    real = torch.arange(m, device=g.device)[None, :] < count[chunk][:, None]  # [C, m]
    node_at = torch.zeros(C, m, dtype=torch.int64, device=g.device)
    member = slot[g.node_graph] >= 0
    node_at[slot[g.node_graph[member]], position[member]] = member.nonzero().flatten()
    # A [C, m, m]: A[c, target, source] = weight, plus I on the real nodes.
    src, tgt = g.edge_index
    in_chunk = slot[g.node_graph[src]] >= 0
    weight = torch.ones(g.num_edges, device=g.device) if g.edge_weight is None else g.edge_weight.float()
    A = torch.zeros(C, m, m, device=g.device)
    A.index_put_(
        (slot[g.node_graph[src[in_chunk]]], position[tgt[in_chunk]], position[src[in_chunk]]), weight[in_chunk],
        accumulate=True,
    )
    eye = torch.eye(m, device=g.device).expand(C, m, m)
    A = A + eye * real[:, :, None]
    degree = A.sum(-1)
    scale = torch.where(degree > 0, degree.clamp(min=1e-12).rsqrt(), torch.zeros_like(degree))
    T = scale[:, :, None] * A * scale[:, None, :]
    # Padding rows and columns of T are zero, so M is the identity there and stays invertible.
    S = config.alpha * torch.linalg.inv(eye - (1 - config.alpha) * T)
    c, i, j = (S.abs() > 0).logical_and(real[:, :, None] & real[:, None, :]).nonzero(as_tuple=True)
    return node_at[c, i], node_at[c, j], S[c, i, j]


def _ppr_series(g: GraphBatch, nodes: torch.Tensor, config: Diffusion) -> tuple[torch.Tensor, ...]:
    """S's entries among ``nodes`` (the nodes of the large graphs) by the pruned power series;
    returns (target, source, value)."""
    n = g.num_nodes
    member = torch.zeros(n, dtype=torch.bool, device=g.device)
    member[nodes] = True
    keep_edge = member[g.edge_index[0]] & member[g.edge_index[1]]
    weight = None if g.edge_weight is None else g.edge_weight[keep_edge]
    target, source, value = _normalised_adjacency(g.edge_index[:, keep_edge], weight, n, nodes)
    step = 1 - config.alpha
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        T = torch.sparse_coo_tensor(torch.stack([target, source]), step * value, (n, n)).coalesce().to_sparse_csr()
        term_index = torch.stack([nodes, nodes])
        term_value = torch.ones(nodes.numel(), device=g.device)
        parts_index, parts_value = [term_index], [config.alpha * term_value]
        for _ in range(10_000):  # (1 - alpha)^k falls below any tolerance long before
            term = torch.sparse_coo_tensor(term_index, term_value, (n, n)).to_sparse_csr()
            product = torch.sparse.mm(T, term).to_sparse_coo().coalesce()
            kept = product.values() >= config.series_tol
            term_index, term_value = product.indices()[:, kept], product.values()[kept]
            if term_value.numel() == 0:
                break
            parts_index.append(term_index)
            parts_value.append(config.alpha * term_value)
        S = torch.sparse_coo_tensor(torch.cat(parts_index, 1), torch.cat(parts_value), (n, n)).coalesce()
    return S.indices()[0], S.indices()[1], S.values()


def ppr_diffusion(g: GraphBatch, config: Diffusion) -> GraphBatch:
    """The graph replaced by its sparsified personalized-PageRank matrix (see :class:`Diffusion`):
    ``edge_index`` from each node to the nodes it keeps, ``edge_weight`` ``S[target, source]``.
    Nodes, features and ``center`` are unchanged; the diffusion stays inside each graph."""
    if g.num_nodes == 0:
        return g.replace(edge_weight=torch.empty(0, device=g.device))
    _, _, count = _layout(g)
    small = count <= config.dense_max_nodes
    parts = [_ppr_dense(g, small.nonzero().flatten(), config)]
    if not bool(small.all()):
        large_nodes = (~small[g.node_graph]).nonzero().flatten()
        parts.append(_ppr_series(g, large_nodes, config))
    target, source, value = (torch.cat([p[k] for p in parts]) for k in range(3))
    edge_index, edge_weight = _sparsify(target, source, value, g.num_nodes, config)
    return g.replace(edge_index=edge_index, edge_weight=edge_weight.to(g.x.dtype if g.x.is_floating_point() else torch.float32))


class DiffusionCache:
    """The diffusion of a graph is deterministic: kept for the last few graphs, keyed on copies of
    their structure tensors (``edge_index``, ``edge_weight``, ``node_graph``, compared by value, not
    by identity), so a full-graph node-level run diffuses its graph once. A changed graph (another
    batch, an edge-dropped view) is a miss, never a stale hit."""

    def __init__(self, config: Diffusion, size: int = 2) -> None:
        self.config = config
        self.size = size
        self.entries: list[tuple[tuple[Any, ...], GraphBatch]] = []

    @staticmethod
    def _key(g: GraphBatch) -> tuple[Any, ...]:
        return (g.num_nodes, g.num_graphs, g.edge_index, g.edge_weight, g.node_graph)

    @staticmethod
    def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
        if a[:2] != b[:2]:
            return False
        for x, y in zip(a[2:], b[2:]):
            if (x is None) != (y is None):
                return False
            if x is not None and (x.shape != y.shape or x.device != y.device or not torch.equal(x, y)):
                return False
        return True

    def __call__(self, g: GraphBatch) -> GraphBatch:
        key = self._key(g)
        for stored, diffused in self.entries:
            if self._same(stored, key):
                # The features and centres are this batch's; only the structure is reused.
                return g.replace(edge_index=diffused.edge_index, edge_weight=diffused.edge_weight)
        diffused = ppr_diffusion(g, self.config)
        copy = tuple(k.clone() if isinstance(k, torch.Tensor) else k for k in key)
        self.entries = [(copy, diffused), *self.entries][: self.size]
        return diffused


# ------------------------------------------------------------------------------ generators


def _cycled(values: tuple[Any, ...], k: int) -> Any:
    return values[k % len(values)]


@dataclass
class GraphViewsConfig:
    """Per-view settings (lists give one value per view, cycled). GRACE's Cora setting by default:
    edges 0.2 / 0.4, features 0.3 / 0.4; nothing else.

    ``node_drop``: probability a node is removed; ``subgraph``: the fraction of each graph's nodes a
    connected subgraph keeps (1: off); ``diffusion``: true replaces that view's edges by the PPR
    diffusion (``ppr``'s settings), after the structural corruptions and before feature masking.
    Order in a view: node dropping, subgraph, edge dropping, diffusion, feature masking.
    """

    edge_drop: tuple[Rate, ...] = (0.2, 0.4)
    feature_mask: tuple[Rate, ...] = (0.3, 0.4)
    node_drop: tuple[Rate, ...] = (0.0,)
    subgraph: tuple[KeepFraction, ...] = (1.0,)
    diffusion: tuple[bool, ...] = (False,)
    ppr: Diffusion = field(default_factory=Diffusion)

    def __post_init__(self) -> None:
        for key in ("edge_drop", "feature_mask", "node_drop", "subgraph", "diffusion"):
            value = getattr(self, key)
            setattr(self, key, (value,) if isinstance(value, (int, float, bool)) else tuple(value))
            check_not_empty(self, key)


def _check_graphs(batch: Any) -> None:
    if not isinstance(batch, GraphBatch):
        raise ValueError(f"graph views take graphs (graph:PATH data), not {type(batch).__name__} samples")


@register_views("graph")
class GraphViews:
    """``GraphBatch -> Views`` of corrupted copies (module docstring; :class:`GraphViewsConfig`)."""

    Config = GraphViewsConfig

    def __init__(self, config: GraphViewsConfig) -> None:
        self.config = config
        self.diffuse = DiffusionCache(config.ppr)

    def view(self, g: GraphBatch, k: int, generator: torch.Generator) -> GraphBatch:
        c = self.config
        g = drop_nodes(g, _cycled(c.node_drop, k), generator)
        g = subgraph(g, _cycled(c.subgraph, k), generator)
        g = drop_edges(g, _cycled(c.edge_drop, k), generator)
        if _cycled(c.diffusion, k):
            g = self.diffuse(g)
        return mask_features(g, _cycled(c.feature_mask, k), generator)

    def __call__(
        self, batch: GraphBatch, generator: torch.Generator, num_views: int = 2, num_local_views: int = 0
    ) -> Views:
        _check_graphs(batch)
        return Views(
            [self.view(batch, k, generator) for k in range(num_views)],
            [self.view(batch, num_views + k, generator) for k in range(num_local_views)],
        )


GRAPHCL_AUGMENTATIONS = ("node_drop", "subgraph", "edge_perturb", "attribute_mask")


@dataclass
class GraphCLConfig:
    """GraphCL's augmentation pool and strengths. Its paper's default strength is 20%; its
    unsupervised TU code drops/perturbs/masks 10% and keeps 20% of the nodes in a subgraph.

    ``augmentations``: the pool each graph of each view draws one from, uniformly (GraphCL's
    ``random4``; ``[node_drop, subgraph]`` is its ``random2``); ``node_drop``, ``edge_perturb``,
    ``attribute_mask``: the fraction of nodes / edges / feature rows changed; ``subgraph``: the
    fraction of nodes the subgraph keeps.
    """

    augmentations: tuple[Annotated[str, OneOf(*GRAPHCL_AUGMENTATIONS)], ...] = GRAPHCL_AUGMENTATIONS
    node_drop: Rate = 0.2
    subgraph: KeepFraction = 0.2
    edge_perturb: Rate = 0.2
    attribute_mask: Rate = 0.2

    def __post_init__(self) -> None:
        if isinstance(self.augmentations, str):
            self.augmentations = (self.augmentations,)
        self.augmentations = tuple(dict.fromkeys(self.augmentations))
        check_not_empty(self, "augmentations")


@register_views("graphcl")
class GraphCLViews:
    """GraphCL (You et al. 2020, arXiv 2010.13902): each view of each graph is one augmentation
    drawn uniformly from the pool (node dropping, subgraph, edge perturbation, attribute masking).
    A node-level batch is one graph: one draw per view."""

    Config = GraphCLConfig

    def __init__(self, config: GraphCLConfig) -> None:
        self.config = config

    def view(self, g: GraphBatch, generator: torch.Generator) -> GraphBatch:
        c = self.config
        pool = c.augmentations
        pick = torch.randint(len(pool), (g.num_graphs,), generator=generator, device=g.device)

        def chosen(name: str, rate: float, off: float = 0.0) -> torch.Tensor:
            """``rate`` for the graphs that drew augmentation ``name``, ``off`` (no change) for the rest."""
            on = pick == pool.index(name) if name in pool else torch.zeros_like(pick, dtype=torch.bool)
            return torch.where(on, rate, off).float()

        g = drop_nodes(g, chosen("node_drop", c.node_drop), generator)
        g = subgraph(g, chosen("subgraph", c.subgraph, off=1.0), generator)
        g = perturb_edges(g, chosen("edge_perturb", c.edge_perturb), generator)
        return mask_nodes(g, chosen("attribute_mask", c.attribute_mask), generator)

    def __call__(
        self, batch: GraphBatch, generator: torch.Generator, num_views: int = 2, num_local_views: int = 0
    ) -> Views:
        _check_graphs(batch)
        return Views(
            [self.view(batch, generator) for _ in range(num_views)],
            [self.view(batch, generator) for _ in range(num_local_views)],
        )


@dataclass
class MVGRLConfig:
    """MVGRL's second view: the PPR diffusion (``alpha`` 0.2 as in its paper)."""

    ppr: Diffusion = field(default_factory=Diffusion)


@register_views("mvgrl")
class MVGRLViews:
    """MVGRL (Hassani & Khasahmadi 2020, arXiv 2006.05582): view 0 is the graph itself (its
    adjacency), view 1 its diffusion; further views alternate. Deterministic (the generator is not
    used); the diffusion of a graph seen again is reused (:class:`DiffusionCache`)."""

    Config = MVGRLConfig

    def __init__(self, config: MVGRLConfig) -> None:
        self.config = config
        self.diffuse = DiffusionCache(config.ppr)

    def __call__(
        self, batch: GraphBatch, generator: torch.Generator, num_views: int = 2, num_local_views: int = 0
    ) -> Views:
        _check_graphs(batch)
        views = [self.diffuse(batch) if k % 2 else batch for k in range(num_views + num_local_views)]
        return Views(views[:num_views], views[num_views:])
