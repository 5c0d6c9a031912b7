"""Graphs from disk as PyTorch Geometric objects: :func:`read_graph` -> :class:`GraphData`.

Two kinds of graph data (the two levels of the graph self-supervision literature):

- **node level**: one graph, ``x [N, F]`` float32 node features, ``edge_index [2, E]`` int64,
  optional ``y [N]`` int64 node labels (``-1``: unlabelled) and optional ``train_mask`` /
  ``val_mask`` / ``test_mask [N]`` bool (a public split, e.g. Planetoid's);
- **graph level**: many small graphs in ``graphs`` (a list of PyG ``Data``, each with ``x``,
  ``edge_index`` and ``y [1]``), their labels in ``y [G]``.

Formats, chosen by what ``path`` is:

1. **A folder with ``edges.csv`` and ``nodes.csv``** (node level). Both have a header row.
   ``edges.csv``: columns ``source`` and ``target``, node ids as in ``nodes.csv`` (other columns
   are ignored). ``nodes.csv``: column ``id``; an optional label column named ``label``, ``y``,
   ``class`` or ``target`` (an empty cell: unlabelled, ``-1``; labels that are all non-negative
   integers are kept as numbers, others are class names numbered in sorted order); an optional
   ``split`` column (``train`` / ``val`` / ``test`` / empty) giving the masks; every other
   column is a numeric feature (no feature column: one constant feature 1.0 per node, the GIN
   paper's convention for graphs without attributes).
   **Graph level**: the same folder with a ``graphs.csv`` beside them (columns ``graph`` and a
   label column as above); ``nodes.csv`` and ``edges.csv`` then carry a ``graph`` column, and
   node ids need only be unique within their graph.
2. **An ``.npz`` file** (read without pickle). Node level: ``x [N, F]`` (any numeric or bool
   dtype), ``edge_index [2, E]`` (integer), optional ``y [N]``, ``train_mask`` / ``val_mask`` /
   ``test_mask [N]``, ``node_ids [N]``, ``class_names [C]``, ``feature_names [F]``.
   Graph level, either ``x``, ``edge_index`` (indices into ``x``) and ``batch [N]`` (the graph of
   each node, ``0 .. G-1``) with ``y [G]`` and optional ``graph_ids [G]``; or **subgraphs of the
   node-level graph**: the node-level keys plus ``subgraph_ptr [G + 1]`` and ``subgraph_nodes``
   (graph ``g`` is induced by ``subgraph_nodes[subgraph_ptr[g]:subgraph_ptr[g + 1]]``), optional
   ``subgraph_y [G]`` and ``subgraph_ids [G]``; ``read_graph(path, level="graph")`` reads those
   (the default, ``level=None``, reads the node-level graph). The Debian package graph
   (``benchmarks/data/package_graph.npz``, built by ``scripts/build_package_graph.py``) holds both.
3. **Planetoid raw files** ``ind.NAME.{x,tx,allx,y,ty,ally,graph,test.index}`` (the format of
   Kipf & Welling's GCN repository, Kipf & Welling 2017, arXiv 1609.02907, with the splits of
   Yang et al. 2016, arXiv 1603.08861): ``path`` is their folder or ``FOLDER/ind.NAME``. Read with
   PyTorch Geometric's own reader (``torch_geometric.io.read_planetoid_data``, local files, no
   download), so the public split is PyG's: train = the nodes of ``ind.NAME.y``, val = the 500
   after them, test = ``test.index``; CiteSeer's isolated test nodes get zero features, as in
   PyG. These files are Python pickles: read only files you trust.

Handling of valid but unusual graphs (the same for every format unless said):

- **Self-loops** are kept as given (Planetoid: removed, as PyG's ``Planetoid`` does). PyG's
  ``GCNConv`` adds a self-loop only to nodes that lack one (``add_remaining_self_loops``), so a
  given loop is not doubled; ``GATConv`` removes and re-adds them; ``GINConv`` adds none (its
  ``(1 + eps) x`` term is the node's own share, and a given loop adds the node once more).
- **Duplicate edges** are kept once, with a warning that counts them (a repeated line is more
  often a mistake than a weight). With ``undirected=True`` an edge listed in both directions is
  not a duplicate (that is how undirected graphs are usually written).
- **Isolated nodes** are kept, with their features and label (CiteSeer has 48).
- **Direction**: ``undirected=True`` (the default; the GCN, GAT and GIN papers use undirected
  graphs) adds the reverse of every edge, so ``edge_index`` holds both directions;
  ``undirected=False`` keeps the edges as given. Either way ``edge_index`` is sorted by
  (source, target).

Bad graphs raise a one-line :class:`~selfsup.errors.DataError` naming the culprit: a missing file,
an edge index out of range (the edge's number and the node count), a NaN or infinite feature
(the node and the column), an edge endpoint that is not in ``nodes.csv`` (the id and the line of
``edges.csv``), a non-numeric feature (the line and the column), an empty graph (no nodes; a
node-level graph without edges; a graph-level set without graphs).
"""

from __future__ import annotations

import csv
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch

from selfsup.core.io import write_atomic
from selfsup.errors import ConfigError, DataError

try:
    from torch_geometric.data import Data
    from torch_geometric.io.planetoid import read_file as read_planetoid_file
    from torch_geometric.io.planetoid import read_planetoid_data
    from torch_geometric.utils import coalesce, to_undirected
except ImportError as _error:  # the [graph] extra is optional
    raise ConfigError(
        f"reading graphs needs PyTorch Geometric ({_error}); install it with pip install 'selfsup[graph]'"
    ) from None

LABEL_COLUMNS: tuple[str, ...] = ("label", "y", "class", "target")
SPLITS: tuple[str, ...] = ("train", "val", "test")
PLANETOID_PARTS: tuple[str, ...] = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")
# PyG's Planetoid reader takes the 500 nodes after the training nodes as the validation split.
PLANETOID_VAL_SIZE = 500
Level = Literal["node", "graph"]


@dataclass
class GraphData:
    """A node-level graph or a graph-level set (see the module docstring).

    Node level: ``x [N, F]`` float32, ``edge_index [2, E]`` int64, ``y [N]`` int64 (``-1``
    unlabelled) or ``None``, masks ``[N]`` bool or ``None``, ``node_ids`` (the ids as in the
    files). Graph level: ``graphs`` (PyG ``Data`` each with ``x``, ``edge_index``, ``y [1]``),
    ``y [G]``, ``graph_ids``; ``x`` / ``edge_index`` / masks / ``node_ids`` are ``None``.
    """

    name: str
    x: torch.Tensor | None = None
    edge_index: torch.Tensor | None = None
    y: torch.Tensor | None = None
    train_mask: torch.Tensor | None = None
    val_mask: torch.Tensor | None = None
    test_mask: torch.Tensor | None = None
    node_ids: list[str] | None = None
    class_names: list[str] | None = None
    feature_names: list[str] | None = None
    graphs: list[Data] | None = None
    graph_ids: list[str] | None = None

    @property
    def level(self) -> Level:
        return "graph" if self.graphs is not None else "node"

    @property
    def num_features(self) -> int:
        x = self.x if self.graphs is None else self.graphs[0].x
        return int(x.shape[1])

    @property
    def num_classes(self) -> int | None:
        if self.class_names is not None:
            return len(self.class_names)
        return None if self.y is None else int(self.y.max()) + 1

    def to_pyg(self) -> Data | list[Data]:
        """Node level: one ``torch_geometric.data.Data`` (``x``, ``edge_index``, ``y`` and the masks
        when present). Graph level: the list of graphs (a PyG ``DataLoader`` batches it)."""
        if self.graphs is not None:
            return self.graphs
        data = Data(x=self.x, edge_index=self.edge_index, num_nodes=int(self.x.shape[0]))
        for key in ("y", "train_mask", "val_mask", "test_mask"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        return data

    @classmethod
    def from_pyg(cls, data: Data | Sequence[Data], name: str = "pyg", undirected: bool = True) -> GraphData:
        """A ``Data`` (node level) or a sequence of ``Data`` with a ``y`` each (graph level), checked
        and handled as files are (module docstring)."""
        if isinstance(data, Data):
            masks = {key: _mask(data[key], int(data.num_nodes), f"{name}.{key}") for key in _mask_keys(data)}
            x, edge_index = _node_features(data, name), data.edge_index
            _check_graph(x, edge_index, name, _number_node)
            return GraphData(
                name=name, x=x, edge_index=_handle_edges(edge_index, x.shape[0], undirected, name),
                y=None if data.y is None else _labels(data.y, x.shape[0], name), **masks,
                node_ids=[str(i) for i in range(x.shape[0])],
            )
        graphs = []
        for g, item in enumerate(data):
            where = f"{name}[{g}]"
            x = _node_features(item, where)
            _check_graph(x, item.edge_index, where, _number_node, allow_no_edges=True)
            if item.y is None or item.y.numel() != 1:
                raise DataError(f"{where} has no graph label (y with one value); give every graph of the set its label")
            edge_index = _handle_edges(item.edge_index, x.shape[0], undirected, where)
            graphs.append(_graph(x, edge_index, int(item.y.reshape(-1)[0])))
        return _graph_set(name, graphs, [str(g) for g in range(len(graphs))], None)


def read_graph(path: str | Path, *, undirected: bool = True, level: Level | None = None) -> GraphData:
    """Read a graph or a set of graphs from ``path`` (the formats and the handling are in the
    module docstring). ``level`` picks the level of an ``.npz`` that holds both (``None``: node)."""
    p = Path(path)
    if level not in (None, "node", "graph"):
        raise ConfigError(f"level must be 'node', 'graph' or None (the file's own), not {level!r}")
    if p.suffix.lower() == ".npz":
        if not p.is_file():
            raise DataError(f"{p} does not exist (looked for {p.absolute()}); pass an .npz graph file")
        return _read_npz(p, undirected, level)
    prefix = _planetoid_prefix(p)
    if prefix is not None:
        found = _read_planetoid(*prefix, undirected)
    elif p.is_dir():
        found = _read_csv_folder(p, undirected)
    elif p.exists():
        raise DataError(
            f"{p} is not a graph: pass a folder with edges.csv and nodes.csv, an .npz file, or Planetoid files "
            "(a folder with ind.NAME.x, ..., or FOLDER/ind.NAME)"
        )
    else:
        raise DataError(f"{p} does not exist (looked for {p.absolute()}); pass a folder, an .npz file or FOLDER/ind.NAME")
    if level is not None and level != found.level:
        raise ConfigError(f"{p} holds a {found.level}-level graph set, not a {level}-level one; drop level={level!r}")
    return found


def save_graph(data: GraphData | Data | Sequence[Data], path: str | Path, *, undirected: bool = True) -> Path:
    """Write a graph held in Python as an ``.npz`` that ``graph:PATH`` reads, and return the path.

    ``data``: a :class:`GraphData`; a PyTorch Geometric ``Data`` (node level: ``x``, ``edge_index``,
    optional ``y`` and ``train_mask`` / ``val_mask`` / ``test_mask``); or a sequence of ``Data``
    with one label each (graph level: a list, or an ``InMemoryDataset`` such as PyG's TUDataset).
    A dataset of one graph with a label per node (PyG's ``Planetoid``) is node level. The graph is
    checked and handled as a file would be (module docstring), so a bad graph fails here, in one
    line. Runs read their data from a path (a resume and ``selfsup evaluate`` read it again), so
    Python objects go through a file: ``save_graph(dataset, "cora.npz")``, then
    ``--data graph:cora.npz``.
    """
    if not isinstance(data, GraphData):
        if not isinstance(data, Data) and len(data) == 1:
            only = data[0]
            if only.y is not None and only.y.numel() == only.num_nodes and only.num_nodes != 1:
                data = only  # one graph with node labels: node level
        data = GraphData.from_pyg(data, name=Path(path).stem, undirected=undirected)
    arrays: dict[str, np.ndarray] = {}
    if data.graphs is None:
        arrays.update(x=data.x.numpy(), edge_index=data.edge_index.numpy())
        for key in ("y", "train_mask", "val_mask", "test_mask"):
            if getattr(data, key) is not None:
                arrays[key] = getattr(data, key).numpy()
        if data.node_ids is not None:
            arrays["node_ids"] = np.array(data.node_ids)
    else:
        counts = [int(g.num_nodes) for g in data.graphs]
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        arrays.update(
            x=torch.cat([g.x for g in data.graphs]).numpy(),
            edge_index=np.concatenate([g.edge_index.numpy() + o for g, o in zip(data.graphs, offsets)], axis=1),
            batch=np.repeat(np.arange(len(counts)), counts), y=data.y.numpy(),
        )
        if data.graph_ids is not None:
            arrays["graph_ids"] = np.array(data.graph_ids)
    if data.class_names is not None:
        arrays["class_names"] = np.array(data.class_names)
    if data.feature_names is not None:
        arrays["feature_names"] = np.array(data.feature_names)
    target = Path(path)
    if target.suffix.lower() != ".npz":
        raise ConfigError(f"save_graph writes an .npz file; give a path ending in .npz, not {target.name}")
    write_atomic(target, lambda tmp: np.savez_compressed(tmp, **arrays))
    return target


# ----------------------------------------------------------------------------- checks and handling


def _number_node(i: int) -> str:
    return f"node {i}"


def _check_graph(
    x: torch.Tensor, edge_index: Any, where: str, node_name: Callable[[int], str], allow_no_edges: bool = False,
) -> None:
    """The checks every format shares: a graph with nodes (and edges, unless ``allow_no_edges``),
    ``edge_index [2, E]`` of integers within ``0 .. N-1``, finite features."""
    n = int(x.shape[0])
    if n == 0:
        raise DataError(f"{where} is an empty graph (no nodes); give it at least one node with its features")
    if not isinstance(edge_index, torch.Tensor) or edge_index.dim() != 2 or edge_index.shape[0] != 2:
        shape = tuple(edge_index.shape) if hasattr(edge_index, "shape") else type(edge_index).__name__
        raise DataError(f"{where}: edge_index has shape {shape}, not [2, E] (a row of sources, a row of targets)")
    if edge_index.dtype.is_floating_point or edge_index.dtype == torch.bool:
        raise DataError(f"{where}: edge_index holds {edge_index.dtype} values; node indices must be integers")
    if edge_index.shape[1] == 0 and not allow_no_edges:
        raise DataError(f"{where} has no edges; a node-level graph needs edges (for features alone use a table)")
    bad = ((edge_index < 0) | (edge_index >= n)).any(dim=0).nonzero()
    if len(bad):
        e = int(bad[0])
        source, target = (int(v) for v in edge_index[:, e])
        raise DataError(
            f"{where}: edge {e} (edge_index[:, {e}] = {source} -> {target}) is out of range; the graph has {n} nodes "
            f"(indices 0 .. {n - 1})"
        )
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        i, j = (int(v) for v in (~finite).nonzero()[0])
        raise DataError(
            f"{where}: {node_name(i)} has feature {x[i, j].item()} in column {j}; features must be finite numbers"
        )


def _handle_edges(edge_index: torch.Tensor, num_nodes: int, undirected: bool, where: str) -> torch.Tensor:
    """Duplicates kept once (with a warning that counts them), then, with ``undirected``, the
    reverse of every edge added; sorted by (source, target). Self-loops are kept."""
    edge_index = edge_index.long()
    unique = coalesce(edge_index, num_nodes=num_nodes)
    duplicates = edge_index.shape[1] - unique.shape[1]
    if duplicates:
        warnings.warn(f"{where} lists {duplicates} edge(s) more than once; each edge is kept once", stacklevel=4)
    return to_undirected(unique, num_nodes=num_nodes) if undirected else unique


def _labels(values: Any, count: int, where: str) -> torch.Tensor:
    y = torch.as_tensor(np.asarray(values)).reshape(-1)
    if y.numel() != count:
        raise DataError(f"{where}: {y.numel()} labels for {count} nodes/graphs; give one label each")
    if y.dtype.is_floating_point:
        if not bool(torch.isfinite(y).all()) or not bool((y == y.round()).all()):
            raise DataError(f"{where}: labels must be integers (-1 for unlabelled)")
    return y.long()


def _mask(values: Any, count: int, where: str) -> torch.Tensor:
    mask = torch.as_tensor(np.asarray(values)).reshape(-1)
    if mask.numel() != count or not bool(((mask == 0) | (mask == 1)).all()):
        raise DataError(f"{where} must hold {count} values, each true/false (or 1/0), one per node")
    return mask.bool()


def _mask_keys(data: Any) -> list[str]:
    return [f"{split}_mask" for split in SPLITS if f"{split}_mask" in data]


def _node_features(data: Data, where: str) -> torch.Tensor:
    if data.x is None:
        raise DataError(f"{where} has no node features (x); give x [N, F]")
    x = torch.as_tensor(data.x)
    if x.dim() != 2:
        raise DataError(f"{where}: x has shape {tuple(x.shape)}, not [N, F]")
    return x.float()


def _graph(x: torch.Tensor, edge_index: torch.Tensor, label: int) -> Data:
    return Data(x=x, edge_index=edge_index, y=torch.tensor([label], dtype=torch.long), num_nodes=int(x.shape[0]))


def _graph_set(name: str, graphs: list[Data], ids: list[str], class_names: list[str] | None) -> GraphData:
    if not graphs:
        raise DataError(f"{name} is an empty graph set (no graphs); give it at least one graph")
    y = torch.cat([g.y for g in graphs])
    return GraphData(name=name, y=y, class_names=class_names, graphs=graphs, graph_ids=ids)


def _class_numbers(cells: Sequence[str]) -> tuple[list[int], list[str]]:
    """Label cells -> class numbers (``-1`` for an empty cell) and class names: labels that are all
    non-negative integers keep their value; any other labels are names numbered in sorted order."""
    present = sorted({c for c in cells if c != ""})
    if all(c.isdigit() for c in present):
        top = max((int(c) for c in present), default=-1)
        return [int(c) if c else -1 for c in cells], [str(k) for k in range(top + 1)]
    number = {c: k for k, c in enumerate(present)}
    return [number[c] if c else -1 for c in cells], present


# ----------------------------------------------------------------------------- CSV folders


@dataclass
class _Table:
    path: Path
    header: list[str]
    rows: list[list[str]]
    lines: list[int]  # the file line of each row (1-based; the header is line 1)

    def column(self, name: str) -> int | None:
        lowered = [h.lower() for h in self.header]
        return lowered.index(name) if name in lowered else None

    def require(self, name: str, what: str) -> int:
        index = self.column(name)
        if index is None:
            raise DataError(f"{self.path} has no {name!r} column ({what}); its columns: {', '.join(self.header)}")
        return index

    def label_column(self) -> int | None:
        found = [name for name in LABEL_COLUMNS if self.column(name) is not None]
        if len(found) > 1:
            raise DataError(f"{self.path} has {len(found)} label columns ({', '.join(found)}); keep one")
        return None if not found else self.column(found[0])


def _read_table(path: Path) -> _Table:
    if not path.is_file():
        raise DataError(
            f"{path} does not exist; a graph folder needs edges.csv and nodes.csv (graph level: graphs.csv too)"
        )
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: a BOM is not a header
            reader = csv.reader(handle, skipinitialspace=True)
            header: list[str] | None = None
            rows, lines = [], []
            for row in reader:
                if not row or all(not cell.strip() for cell in row):
                    continue
                row = [cell.strip() for cell in row]
                if header is None:
                    header = row
                    continue
                if len(row) != len(header):
                    raise DataError(
                        f"{path}, line {reader.line_num}: {len(row)} cells for {len(header)} columns ({', '.join(header)})"
                    )
                rows.append(row)
                lines.append(reader.line_num)
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not a UTF-8 text file ({error}); save it as UTF-8 CSV") from None
    except csv.Error as error:
        raise DataError(f"{path} is not a readable CSV file ({error})") from None
    if header is None:
        raise DataError(f"{path} is empty; it needs a header row and one row per {path.stem[:-1]}")
    lowered = [h.lower() for h in header]
    repeated = sorted({h for h in lowered if lowered.count(h) > 1})
    if repeated:
        raise DataError(f"{path} has two columns named {repeated[0]!r}; give every column its own name")
    return _Table(path, header, rows, lines)


def _features(table: _Table, columns: list[int], rows: Sequence[int], node_name: Callable[[int], str]) -> torch.Tensor:
    """The feature cells of ``rows`` as float32 ``[len(rows), len(columns)]``: a non-numeric or
    empty cell, NaN or infinity is an error naming the line, the node and the column."""
    if not columns:
        return torch.ones(len(rows), 1)
    cells = [[table.rows[r][c] for c in columns] for r in rows]
    try:
        values = np.asarray(cells, dtype=np.float64)
    except ValueError:
        for k, r in enumerate(rows):
            for c in columns:
                try:
                    float(table.rows[r][c])
                except ValueError:
                    cell = table.rows[r][c]
                    what = "empty" if cell == "" else f"{cell!r}, not a number"
                    raise DataError(
                        f"{table.path}, line {table.lines[r]} ({node_name(k)}), column {table.header[c]!r}: the feature is "
                        f"{what}; features must be numbers"
                    ) from None
        raise
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        k, j = (int(v) for v in bad[0])
        raise DataError(
            f"{table.path}, line {table.lines[rows[k]]}: {node_name(k)} has feature {values[k, j]} in column "
            f"{table.header[columns[j]]!r}; features must be finite numbers"
        )
    return torch.from_numpy(values.astype(np.float32))


def _edge_pairs(
    table: _Table, rows: Sequence[int], index: dict[str, int], nodes_path: Path, graph: str | None,
) -> torch.Tensor:
    source = table.require("source", "the edges' source node ids")
    target = table.require("target", "the edges' target node ids")
    pairs = np.empty((2, len(rows)), dtype=np.int64)
    for e, r in enumerate(rows):
        for side, column in enumerate((source, target)):
            node = table.rows[r][column]
            found = index.get(node)
            if found is None:
                within = "" if graph is None else f" for graph {graph!r}"
                raise DataError(
                    f"{table.path}, line {table.lines[r]}: node {node!r} ({table.header[column]}) is not in "
                    f"{nodes_path.name}{within}; add it to {nodes_path.name} or remove the edge"
                )
            pairs[side, e] = found
    return torch.from_numpy(pairs)


def _node_index(table: _Table, rows: Sequence[int], id_column: int, graph: str | None) -> dict[str, int]:
    index: dict[str, int] = {}
    for k, r in enumerate(rows):
        node = table.rows[r][id_column]
        if node == "":
            raise DataError(f"{table.path}, line {table.lines[r]}: the node id is empty; give every node an id")
        if node in index:
            within = "" if graph is None else f" in graph {graph!r}"
            raise DataError(
                f"{table.path}, line {table.lines[r]}: node {node!r}{within} is listed twice (first on line "
                f"{table.lines[rows[index[node]]]}); give each node one row"
            )
        index[node] = k
    return index


def _read_csv_folder(folder: Path, undirected: bool) -> GraphData:
    if (folder / "graphs.csv").is_file():
        return _read_csv_graph_set(folder, undirected)
    nodes, edges = _read_table(folder / "nodes.csv"), _read_table(folder / "edges.csv")
    id_column = nodes.require("id", "the node ids that edges.csv refers to")
    if nodes.column("graph") is not None:
        raise DataError(
            f"{nodes.path} has a 'graph' column but {folder} has no graphs.csv; add graphs.csv (graph, label) for a "
            "graph-level set"
        )
    label, split = nodes.label_column(), nodes.column("split")
    features = [c for c in range(len(nodes.header)) if c not in (id_column, label, split)]
    rows = range(len(nodes.rows))
    if not nodes.rows:
        raise DataError(f"{nodes.path} lists no nodes; an empty graph cannot be read")
    index = _node_index(nodes, rows, id_column, None)
    ids = list(index)
    x = _features(nodes, features, rows, lambda k: f"node {ids[k]!r}")
    edge_index = _edge_pairs(edges, range(len(edges.rows)), index, nodes.path, None)
    _check_graph(x, edge_index, str(edges.path), lambda i: f"node {ids[i]!r}")
    y, class_names = None, None
    if label is not None:
        numbers, class_names = _class_numbers([row[label] for row in nodes.rows])
        y = torch.tensor(numbers, dtype=torch.long) if any(n >= 0 for n in numbers) else None
        class_names = class_names if y is not None else None
    masks: dict[str, torch.Tensor] = {}
    if split is not None:
        cells = [row[split].lower() for row in nodes.rows]
        for k, cell in enumerate(cells):
            if cell not in ("", *SPLITS):
                raise DataError(
                    f"{nodes.path}, line {nodes.lines[k]}: split {nodes.rows[k][split]!r} is not train, val, test or empty"
                )
        masks = {f"{s}_mask": torch.tensor([c == s for c in cells]) for s in SPLITS}
    return GraphData(
        name=folder.name, x=x, edge_index=_handle_edges(edge_index, len(ids), undirected, str(edges.path)), y=y,
        **masks, node_ids=ids, class_names=class_names,
        feature_names=[nodes.header[c] for c in features] if features else None,
    )


def _group(table: _Table, column: int, known: dict[str, int], graphs_path: Path) -> dict[str, list[int]]:
    """Row numbers of ``table`` by graph id; a graph id missing from graphs.csv is an error."""
    groups: dict[str, list[int]] = {g: [] for g in known}
    for r, row in enumerate(table.rows):
        graph = row[column]
        if graph not in groups:
            raise DataError(
                f"{table.path}, line {table.lines[r]}: graph {graph!r} is not in {graphs_path.name}; add it there with "
                "its label"
            )
        groups[graph].append(r)
    return groups


def _read_csv_graph_set(folder: Path, undirected: bool) -> GraphData:
    graphs_table = _read_table(folder / "graphs.csv")
    nodes, edges = _read_table(folder / "nodes.csv"), _read_table(folder / "edges.csv")
    graph_column = graphs_table.require("graph", "the graph ids")
    label = graphs_table.label_column()
    if label is None:
        raise DataError(f"{graphs_table.path} has no label column ({', '.join(LABEL_COLUMNS)}); give every graph its label")
    if nodes.label_column() is not None:
        raise DataError(
            f"{nodes.path} has a label column, but {folder} is a graph-level set; graph labels go in graphs.csv"
        )
    ids = [row[graph_column] for row in graphs_table.rows]
    if not ids:
        raise DataError(f"{graphs_table.path} lists no graphs; an empty graph set cannot be read")
    known: dict[str, int] = {}
    for r, graph in enumerate(ids):
        if graph in known:
            raise DataError(
                f"{graphs_table.path}, line {graphs_table.lines[r]}: graph {graph!r} is listed twice (first on line "
                f"{graphs_table.lines[known[graph]]}); give each graph one row"
            )
        known[graph] = r
    numbers, class_names = _class_numbers([row[label] for row in graphs_table.rows])
    for r, number in enumerate(numbers):
        if number < 0:
            raise DataError(
                f"{graphs_table.path}, line {graphs_table.lines[r]}: graph {ids[r]!r} has no label; give every graph its label"
            )
    id_column = nodes.require("id", "the node ids that edges.csv refers to")
    node_graph = nodes.require("graph", "the graph of each node")
    edge_graph = edges.require("graph", "the graph of each edge")
    features = [c for c in range(len(nodes.header)) if c not in (id_column, node_graph)]
    node_rows = _group(nodes, node_graph, known, graphs_table.path)
    edge_rows = _group(edges, edge_graph, known, graphs_table.path)
    graphs = []
    for graph, number in zip(ids, numbers):
        rows = node_rows[graph]
        if not rows:
            raise DataError(
                f"graph {graph!r} of {graphs_table.path} has no nodes in {nodes.path.name}; it is an empty graph"
            )
        index = _node_index(nodes, rows, id_column, graph)
        names = list(index)
        x = _features(nodes, features, rows, lambda k: f"node {names[k]!r} of graph {graph!r}")
        edge_index = _edge_pairs(edges, edge_rows[graph], index, nodes.path, graph)
        _check_graph(x, edge_index, f"graph {graph!r}", lambda i: f"node {names[i]!r}", allow_no_edges=True)
        edge_index = _handle_edges(edge_index, len(names), undirected, f"graph {graph!r} in {edges.path}")
        graphs.append(_graph(x, edge_index, number))
    found = _graph_set(folder.name, graphs, ids, class_names)
    found.feature_names = [nodes.header[c] for c in features] if features else None
    return found


# ----------------------------------------------------------------------------- .npz files


def _strings(archive: Any, key: str, count: int | None, path: Path) -> list[str] | None:
    if key not in archive:
        return None
    values = [str(v) for v in np.asarray(archive[key]).reshape(-1)]
    if count is not None and len(values) != count:
        raise DataError(f"{path}: {key} has {len(values)} entries for {count}; give one each")
    return values


def _read_npz(path: Path, undirected: bool, level: Level | None) -> GraphData:
    try:
        archive = dict(np.load(path, allow_pickle=False))
    except ValueError as error:
        raise DataError(
            f"{path} is not a readable .npz of arrays ({str(error).splitlines()[0]}); save it with numpy.savez"
        ) from None
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise DataError(f"{path} is not a readable .npz file ({error})") from None
    for key in ("x", "edge_index"):
        if key not in archive:
            raise DataError(
                f"{path} has no {key!r} array (it has {', '.join(sorted(archive)) or 'none'}); a graph .npz needs x and "
                "edge_index"
            )
    x_values = archive["x"]
    if x_values.dtype.kind not in "biuf":
        raise DataError(f"{path}: x holds {x_values.dtype} values; node features must be numbers")
    if x_values.ndim != 2:
        raise DataError(f"{path}: x has shape {x_values.shape}, not [N, F] (one row of features per node)")
    x = torch.from_numpy(x_values.astype(np.float32))
    edge_index = torch.from_numpy(np.asarray(archive["edge_index"]))
    has_batch, has_subgraphs = "batch" in archive, "subgraph_ptr" in archive
    class_names = _strings(archive, "class_names", None, path)
    if has_batch:
        if level == "node":
            raise ConfigError(f"{path} holds a graph-level set (a batch array), not a node-level graph; drop level='node'")
        return _read_npz_batched(path, archive, x, edge_index, undirected, class_names)
    _check_graph(x, edge_index, str(path), _number_node)
    n = int(x.shape[0])
    masks = {key: _mask(archive[key], n, f"{path}: {key}") for key in _mask_keys(archive)}
    node = GraphData(
        name=path.stem, x=x, edge_index=_handle_edges(edge_index, n, undirected, str(path)),
        y=_labels(archive["y"], n, f"{path}: y") if "y" in archive else None, **masks,
        node_ids=_strings(archive, "node_ids", n, path) or [str(i) for i in range(n)],
        class_names=class_names, feature_names=_strings(archive, "feature_names", x.shape[1], path),
    )
    if level != "graph":
        return node
    if not has_subgraphs:
        raise ConfigError(f"{path} holds a node-level graph without subgraph_ptr / subgraph_nodes; drop level='graph'")
    return _subgraph_set(path, archive, node)


def _read_npz_batched(
    path: Path, archive: dict[str, np.ndarray], x: torch.Tensor, edge_index: torch.Tensor, undirected: bool,
    class_names: list[str] | None,
) -> GraphData:
    """The ``x`` / ``edge_index`` / ``batch`` / ``y [G]`` layout of a graph-level set."""
    _check_graph(x, edge_index, str(path), _number_node, allow_no_edges=True)
    batch = torch.from_numpy(np.asarray(archive["batch"])).long().reshape(-1)
    n = int(x.shape[0])
    if batch.numel() != n or bool((batch < 0).any()):
        raise DataError(f"{path}: batch must give each of the {n} nodes its graph's index (0 .. G-1)")
    num_graphs = int(batch.max()) + 1
    if "y" not in archive:
        raise DataError(f"{path} has no y; a graph-level set needs one label per graph (y [G])")
    y = _labels(archive["y"], num_graphs, f"{path}: y")
    crossing = (batch[edge_index[0]] != batch[edge_index[1]]).nonzero()
    if len(crossing):
        e = int(crossing[0])
        s, t = (int(v) for v in edge_index[:, e])
        raise DataError(
            f"{path}: edge {e} ({s} -> {t}) joins graph {int(batch[s])} to graph {int(batch[t])}; an edge stays in its graph"
        )
    ids = _strings(archive, "graph_ids", num_graphs, path) or [str(g) for g in range(num_graphs)]
    order = torch.argsort(batch, stable=True)
    counts = torch.bincount(batch, minlength=num_graphs)
    local = torch.empty(n, dtype=torch.long)
    starts = torch.cumsum(counts, 0) - counts
    local[order] = torch.arange(n) - torch.repeat_interleave(starts, counts)
    edge_graph = batch[edge_index[0]]
    graphs = []
    for g in range(num_graphs):
        if counts[g] == 0:
            raise DataError(f"{path}: graph {ids[g]!r} (index {g}) has no nodes; it is an empty graph")
        nodes = order[starts[g]: starts[g] + counts[g]]
        edges = local[edge_index[:, edge_graph == g]]
        edges = _handle_edges(edges, int(counts[g]), undirected, f"{path}: graph {ids[g]!r}")
        graphs.append(_graph(x[nodes], edges, int(y[g])))
    found = _graph_set(path.stem, graphs, ids, class_names)
    found.feature_names = _strings(archive, "feature_names", x.shape[1], path)
    return found


def _subgraph_set(path: Path, archive: dict[str, np.ndarray], node: GraphData) -> GraphData:
    """The graphs induced by ``subgraph_nodes[subgraph_ptr[g]:subgraph_ptr[g + 1]]`` in the (handled)
    node-level graph, labelled by ``subgraph_y`` (default: the label of each subgraph's first node)."""
    if "subgraph_nodes" not in archive:
        raise DataError(f"{path} has subgraph_ptr but no subgraph_nodes; give both")
    ptr = np.asarray(archive["subgraph_ptr"]).astype(np.int64).reshape(-1)
    members = np.asarray(archive["subgraph_nodes"]).astype(np.int64).reshape(-1)
    n = int(node.x.shape[0])
    if len(ptr) < 2 or ptr[0] != 0 or ptr[-1] != len(members) or bool((np.diff(ptr) <= 0).any()):
        raise DataError(
            f"{path}: subgraph_ptr must rise from 0 to len(subgraph_nodes) = {len(members)}, each subgraph non-empty"
        )
    outside = np.flatnonzero((members < 0) | (members >= n))
    if len(outside):
        raise DataError(
            f"{path}: subgraph_nodes[{outside[0]}] = {members[outside[0]]} is out of range; the graph has {n} nodes"
        )
    num_graphs = len(ptr) - 1
    if "subgraph_y" in archive:
        y = _labels(archive["subgraph_y"], num_graphs, f"{path}: subgraph_y").numpy()
    elif node.y is not None:
        y = node.y.numpy()[members[ptr[:-1]]]
    else:
        raise DataError(f"{path} has no subgraph_y and no node labels y; give each subgraph a label")
    ids = _strings(archive, "subgraph_ids", num_graphs, path) or [str(g) for g in range(num_graphs)]
    # Compressed rows of the node-level graph: the neighbours of node i are col[rowptr[i]:rowptr[i + 1]].
    source, col = node.edge_index.numpy()
    rowptr = np.concatenate([[0], np.cumsum(np.bincount(source, minlength=n))])
    local = np.full(n, -1, dtype=np.int64)
    graphs = []
    for g in range(num_graphs):
        nodes = members[ptr[g]: ptr[g + 1]]
        if len(np.unique(nodes)) != len(nodes):
            raise DataError(f"{path}: subgraph {ids[g]!r} (index {g}) lists a node twice in subgraph_nodes; list each once")
        local[nodes] = np.arange(len(nodes))
        sources = np.repeat(np.arange(len(nodes)), rowptr[nodes + 1] - rowptr[nodes])
        targets = local[np.concatenate([col[rowptr[i]: rowptr[i + 1]] for i in nodes])]
        keep = targets >= 0
        edges = coalesce(torch.from_numpy(np.stack([sources[keep], targets[keep]])), num_nodes=len(nodes))
        graphs.append(_graph(node.x[torch.from_numpy(nodes)], edges, int(y[g])))
        local[nodes] = -1
    found = _graph_set(path.stem, graphs, ids, node.class_names)
    found.feature_names = node.feature_names
    return found


# ----------------------------------------------------------------------------- Planetoid files


def _planetoid_prefix(path: Path) -> tuple[Path, str] | None:
    """``(folder, NAME)`` when ``path`` is ``FOLDER/ind.NAME`` or a folder of ``ind.NAME.*`` files."""
    if path.name.startswith("ind.") and not path.exists():
        return path.parent, path.name[len("ind."):]
    if not path.is_dir():
        return None
    names = sorted({f.name[len("ind."):].rsplit(".", 1)[0] for f in path.glob("ind.*.x")})
    if len(names) > 1:
        raise DataError(f"{path} holds Planetoid files of {', '.join(names)}; pass {path}/ind.NAME to pick one")
    return (path, names[0]) if names else None


def _read_planetoid(folder: Path, name: str, undirected: bool) -> GraphData:
    """PyG's reader (a local read, no download), after checks it does not make: every file there,
    enough nodes for its 500-node validation split, neighbour lists within the node count."""
    if name != name.lower():
        raise DataError(
            f"{folder}/ind.{name}.*: PyG's Planetoid reader reads lower-case names; rename them ind.{name.lower()}.*"
        )
    for part in PLANETOID_PARTS:
        if not (folder / f"ind.{name}.{part}").is_file():
            raise DataError(
                f"{folder / f'ind.{name}.{part}'} does not exist; Planetoid data needs ind.{name}."
                + "{" + ",".join(PLANETOID_PARTS) + "}"
            )
    where = f"{folder}/ind.{name}"
    try:
        graph = read_planetoid_file(str(folder), name, "graph")
        num_train = int(read_planetoid_file(str(folder), name, "y").shape[0])
    except Exception as error:  # a damaged pickle raises anything
        raise DataError(f"{where}.graph or .y is not a readable Planetoid file ({type(error).__name__}: {error})") from None
    if not hasattr(graph, "items"):
        raise DataError(f"{where}.graph holds a {type(graph).__name__}, not a dict of neighbour lists")
    if len(graph) < num_train + PLANETOID_VAL_SIZE:
        raise DataError(
            f"{where}.graph has {len(graph)} nodes, fewer than the {num_train} training nodes + the {PLANETOID_VAL_SIZE} "
            "validation nodes of the Planetoid split; use the edges.csv/nodes.csv or .npz format for a smaller graph"
        )
    try:
        data = read_planetoid_data(str(folder), name)
    except Exception as error:
        raise DataError(f"{where}.* are not readable Planetoid files ({type(error).__name__}: {error})") from None
    n = int(data.num_nodes)
    for source, neighbours in graph.items():
        for target in (source, *neighbours):
            if not 0 <= int(target) < n:
                raise DataError(
                    f"{where}.graph: node {target} (in the neighbour list of node {source}) is out of range; "
                    f"the features list {n} nodes (0 .. {n - 1})"
                )
    x = torch.as_tensor(data.x).float()
    _check_graph(x, data.edge_index, where, _number_node)
    return GraphData(
        name=name, x=x, edge_index=_handle_edges(data.edge_index, n, undirected, where), y=data.y.long(),
        train_mask=data.train_mask, val_mask=data.val_mask, test_mask=data.test_mask,
        node_ids=[str(i) for i in range(n)],
    )
