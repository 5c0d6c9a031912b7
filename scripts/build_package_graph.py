"""Build the Debian package graph, a citation-like benchmark graph made offline from apt's lists.

Packages are nodes, ``Depends`` (and ``Pre-Depends``) are edges, the words of each package's
``Description`` are binary bag-of-words features, its ``Section`` is the label: the shape of the
Planetoid citation graphs (Cora: papers, citations, abstract words, topic), built from
``/var/lib/apt/lists/*_Packages`` (``.lz4``, ``.xz``, ``.gz`` or plain) with no download.

Which packages (defaults; each is an option):

1. the packages of the topical sections with at least ``--min-section`` (1,000) packages in the
   index; sections named by a package's role rather than its topic (libs, libdevel, oldlibs, doc,
   debug, metapackages, tasks, misc, localization, introspection) are left out;
2. an edge ``a -> b`` when ``a`` depends on ``b`` (every alternative of an ``a | b`` group;
   version and architecture qualifiers dropped), both in the set, ``a != b``, each pair once;
3. the ``--core`` (2)-core of the undirected graph (leaves removed until every node has two
   neighbours: a package that only depends on ``python3`` says little about its neighbourhood),
   then its largest connected component, then sections with fewer than ``--min-class`` (100)
   packages left dropped (and steps 3 repeated until nothing changes);
4. features: the Description's words (lower case, runs of ``[a-z0-9+#]`` holding a letter, two
   characters or more), without scikit-learn's English stop words, without every word that is a
   package name anywhere in the index or a section name (``python``, ``perl``: the label would
   leak), and without the tokens of the package's own name (``numpy`` for ``python3-numpy``); the
   ``--vocabulary`` (1,500) words with the highest document frequency among the kept packages.
   apt's Packages files carry the one-line synopsis only (the long descriptions live in
   Translation files this machine does not have), so a node has about four words;
5. a public split in the Planetoid manner (Yang et al. 2016, arXiv 1603.08861): ``--train-per-class``
   (20) nodes of each class for training, 500 for validation, 1,000 for test, drawn with ``--seed``;
6. a graph-level set: the 1-hop ego-networks (the centre and its neighbours, with every edge among
   them) of up to ``--ego-per-class`` (100) centres per class, drawn with ``--seed`` among the
   nodes with ``--ego-degree`` (3 to 50) neighbours, each labelled by its centre's Section.

The snapshot (``benchmarks/data/package_graph.npz``, ``numpy.savez_compressed``, read by
:func:`selfsup.data.graph.read_graph`; ``level="graph"`` reads the ego-networks):

- ``x [N, V]`` bool: the bag of words; ``feature_names [V]``: its words;
- ``edge_index [2, E]`` int32: ``edge_index[:, e] = (a, b)`` when package ``a`` depends on ``b``
  (directed; ``read_graph`` makes it undirected unless ``undirected=False``);
- ``y [N]`` int16: the Section's index in ``class_names [C]``; ``node_ids [N]``: package names;
- ``train_mask`` / ``val_mask`` / ``test_mask [N]`` bool: the split of step 5;
- ``subgraph_ptr [G + 1]`` int32, ``subgraph_nodes`` int32 (node indices, the centre first),
  ``subgraph_y [G]`` int16 (the centre's class), ``subgraph_ids [G]`` (the centre's name);
- ``source``: the lists read (their Release date), for provenance.

The script prints the snapshot's size, nodes, edges, classes, homophily (the share of edges
whose two packages share a Section), isolated nodes and the ego-networks' sizes.

    python scripts/build_package_graph.py [--lists /var/lib/apt/lists] [--out benchmarks/data/package_graph.npz]
"""

from __future__ import annotations

import argparse
import collections
import gzip
import lzma
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

ROLE_SECTIONS = frozenset(
    {"libs", "libdevel", "oldlibs", "doc", "debug", "metapackages", "tasks", "misc", "localization", "introspection"}
)
WORD = re.compile(r"[a-z0-9][a-z0-9+#]*")
NAME_TOKEN = re.compile(r"[-.+_]")
VAL_SIZE, TEST_SIZE = 500, 1000
SNAPSHOT = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "package_graph.npz"


def read_text(path: Path) -> str:
    """One Packages file as text: lz4 through python-lz4 when installed, else the lz4 tool."""
    if path.suffix == ".lz4":
        try:
            import lz4.frame
        except ImportError:
            tool = shutil.which("lz4")
            if tool is None:
                sys.exit(f"{path} is lz4-compressed; install the lz4 tool (apt-get install lz4) or pip install lz4")
            return subprocess.run([tool, "-dc", str(path)], check=True, capture_output=True).stdout.decode("utf-8")
        return lz4.frame.decompress(path.read_bytes()).decode("utf-8")
    if path.suffix == ".xz":
        return lzma.decompress(path.read_bytes()).decode("utf-8")
    if path.suffix == ".gz":
        return gzip.decompress(path.read_bytes()).decode("utf-8")
    return path.read_text(encoding="utf-8")


def read_packages(lists: Path) -> tuple[dict[str, dict[str, str]], str]:
    """Package name -> its fields (the first stanza of a name wins), and the lists' provenance."""
    files = sorted(p for p in lists.glob("*_Packages*") if p.suffix in ("", ".lz4", ".xz", ".gz"))
    if not files:
        sys.exit(f"no *_Packages files in {lists}; run apt-get update first")
    packages: dict[str, dict[str, str]] = {}
    for path in files:
        for stanza in read_text(path).split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                if line and not line[0].isspace() and ":" in line:
                    key, _, value = line.partition(":")
                    fields[key] = value.strip()
            if "Package" in fields:
                packages.setdefault(fields["Package"], fields)
    dates = []
    for release in sorted(lists.glob("*Release")):
        date = re.search(r"^Date: (.+)$", release.read_text(errors="replace"), re.M)
        dates.append(f"{release.name} ({date.group(1) if date else 'no date'})")
    source = "; ".join(p.name for p in files) + " | " + "; ".join(dates)
    return packages, source


def section(fields: dict[str, str]) -> str:
    return fields.get("Section", "").rsplit("/", 1)[-1]


def dependencies(fields: dict[str, str]) -> list[str]:
    names = []
    for key in ("Pre-Depends", "Depends"):
        for group in fields.get(key, "").split(","):
            for alternative in group.split("|"):
                name = alternative.strip().split(" ")[0].split(":")[0]
                if name:
                    names.append(name)
    return names


def largest_component(nodes: set[str], neighbours: dict[str, set[str]]) -> set[str]:
    seen: set[str] = set()
    best: set[str] = set()
    for start in sorted(nodes):
        if start in seen:
            continue
        component, stack = {start}, [start]
        seen.add(start)
        while stack:
            for v in neighbours[stack.pop()] & nodes:
                if v not in seen:
                    seen.add(v)
                    component.add(v)
                    stack.append(v)
        if len(component) > len(best):
            best = component
    return best


def select(packages: dict[str, dict[str, str]], args: argparse.Namespace) -> tuple[list[str], list[tuple[str, str]]]:
    """Steps 1-3 of the module docstring: the kept packages (sorted) and their Depends edges."""
    counts = collections.Counter(section(f) for f in packages.values())
    topical = {s for s, c in counts.items() if c >= args.min_section and s and s not in ROLE_SECTIONS}
    nodes = {name for name, f in packages.items() if section(f) in topical}
    depends = {(a, b) for a in nodes for b in dependencies(packages[a]) if b in nodes and b != a}
    neighbours: dict[str, set[str]] = collections.defaultdict(set)
    for a, b in depends:
        neighbours[a].add(b)
        neighbours[b].add(a)
    while True:
        before = len(nodes)
        core = True
        while core:  # peel nodes with fewer than args.core neighbours
            weak = {v for v in nodes if len(neighbours[v] & nodes) < args.core}
            nodes -= weak
            core = bool(weak)
        nodes = largest_component(nodes, neighbours)
        sizes = collections.Counter(section(packages[v]) for v in nodes)
        nodes = {v for v in nodes if sizes[section(packages[v])] >= args.min_class}
        if len(nodes) == before:
            break
    kept = sorted(nodes)
    return kept, sorted((a, b) for a, b in depends if a in nodes and b in nodes)


def bag_of_words(
    packages: dict[str, dict[str, str]], kept: list[str], size: int,
) -> tuple[np.ndarray, list[str]]:
    """Step 4: binary features [N, V] and the vocabulary."""
    banned = set(ENGLISH_STOP_WORDS) | set(packages) | {section(f) for f in packages.values()}
    words = []
    for name in kept:
        own = set(NAME_TOKEN.split(name))
        found = {
            w for w in WORD.findall(packages[name].get("Description", "").lower())
            if len(w) > 1 and re.search("[a-z]", w) and w not in banned and w not in own
        }
        words.append(found)
    frequency = collections.Counter(w for found in words for w in found)
    vocabulary = [w for w, _ in sorted(frequency.items(), key=lambda item: (-item[1], item[0]))[:size]]
    column = {w: j for j, w in enumerate(vocabulary)}
    x = np.zeros((len(kept), len(vocabulary)), dtype=bool)
    for i, found in enumerate(words):
        x[i, [column[w] for w in found if w in column]] = True
    return x, vocabulary


def planetoid_split(y: np.ndarray, per_class: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Step 5: ``per_class`` training nodes of each class, then 500 validation and 1,000 test nodes."""
    order = rng.permutation(len(y))
    train = np.concatenate([order[y[order] == c][:per_class] for c in range(int(y.max()) + 1)])
    rest = np.setdiff1d(order, train, assume_unique=True)
    rest = rest[rng.permutation(len(rest))]
    masks = {name: np.zeros(len(y), dtype=bool) for name in ("train_mask", "val_mask", "test_mask")}
    masks["train_mask"][train] = True
    masks["val_mask"][rest[:VAL_SIZE]] = True
    masks["test_mask"][rest[VAL_SIZE: VAL_SIZE + TEST_SIZE]] = True
    return masks


def ego_networks(
    adjacency: list[np.ndarray], y: np.ndarray, per_class: int, degree: tuple[int, int], rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step 6: ``subgraph_ptr``, ``subgraph_nodes`` (centre first, then its neighbours) and the centres."""
    degrees = np.array([len(a) for a in adjacency])
    eligible = (degrees >= degree[0]) & (degrees <= degree[1])
    centres = []
    for c in range(int(y.max()) + 1):
        candidates = np.flatnonzero(eligible & (y == c))
        centres.extend(sorted(rng.choice(candidates, size=min(per_class, len(candidates)), replace=False)))
    members = [np.concatenate([[v], adjacency[v]]) for v in centres]
    ptr = np.concatenate([[0], np.cumsum([len(m) for m in members])])
    return ptr.astype(np.int32), np.concatenate(members).astype(np.int32), np.array(centres)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lists", type=Path, default=Path("/var/lib/apt/lists"))
    parser.add_argument("--out", type=Path, default=SNAPSHOT)
    parser.add_argument("--min-section", type=int, default=1000)
    parser.add_argument("--min-class", type=int, default=100)
    parser.add_argument("--core", type=int, default=2)
    parser.add_argument("--vocabulary", type=int, default=1500)
    parser.add_argument("--train-per-class", type=int, default=20)
    parser.add_argument("--ego-per-class", type=int, default=100)
    parser.add_argument("--ego-degree", type=int, nargs=2, default=(3, 50))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    packages, source = read_packages(args.lists)
    kept, depends = select(packages, args)
    index = {name: i for i, name in enumerate(kept)}
    class_names = sorted({section(packages[v]) for v in kept})
    y = np.array([class_names.index(section(packages[v])) for v in kept], dtype=np.int16)
    x, vocabulary = bag_of_words(packages, kept, args.vocabulary)
    edge_index = np.array([[index[a] for a, _ in depends], [index[b] for _, b in depends]], dtype=np.int32)
    rng = np.random.default_rng(args.seed)
    masks = planetoid_split(y, args.train_per_class, rng)
    pairs = {tuple(sorted(p)) for p in edge_index.T.tolist()}  # undirected edges, each once
    adjacency: list[list[int]] = [[] for _ in kept]
    for a, b in sorted(pairs):
        adjacency[a].append(b)
        adjacency[b].append(a)
    ptr, members, centres = ego_networks([np.array(a, dtype=np.int64) for a in adjacency], y, args.ego_per_class,
                                         tuple(args.ego_degree), rng)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out, x=x, feature_names=np.array(vocabulary), edge_index=edge_index, y=y,
        class_names=np.array(class_names), node_ids=np.array(kept), **masks, subgraph_ptr=ptr, subgraph_nodes=members, subgraph_y=y[centres],
        subgraph_ids=np.array([kept[c] for c in centres]), source=np.array(source),
    )

    same = sum(y[a] == y[b] for a, b in pairs)
    sizes = np.diff(ptr)
    counts = collections.Counter(class_names[c] for c in y)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) from {source}")
    words = x.sum(1)
    print(f"nodes {len(kept)}, edges {len(pairs)} undirected ({edge_index.shape[1]} Depends), classes {len(class_names)}, "
          f"features {len(vocabulary)} words (mean {words.mean():.2f} per node, {int((words == 0).sum())} nodes with none)")
    print(f"homophily {same / len(pairs):.3f} (edges whose packages share a Section), isolated nodes "
          f"{sum(1 for a in adjacency if not a)}, mean degree {2 * len(pairs) / len(kept):.2f}")
    print("classes: " + ", ".join(f"{name} {n}" for name, n in counts.most_common()))
    print("split: " + ", ".join(f"{key[:-5]} {int(mask.sum())}" for key, mask in masks.items()))
    print(f"ego-networks: {len(sizes)} graphs, nodes per graph {sizes.min()}-{sizes.max()} (mean {sizes.mean():.1f}), "
          f"classes {len(set(y[centres].tolist()))}")


if __name__ == "__main__":
    main()
