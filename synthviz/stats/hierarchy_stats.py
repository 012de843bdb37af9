"""Hierarchy structure: a forest summary and per-tree node tables (with measured rates)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from synthviz.errors import ConfigError
from synthviz.hierarchy import Forest


@dataclass
class ForestSummary:
    roots: int  # number of trees
    nodes_per_depth: list[int]  # depth 0 = roots
    me_parents: int  # parents whose children are mutually exclusive (>= 2 children)
    outside: int  # features in no tree
    max_depth: int
    tree_sizes: torch.Tensor  # [roots] nodes per tree, in root order
    num_features: int
    in_trees: int
    root_ids: list[int] = field(default_factory=list)
    me_parents_per_depth: list[int] = field(default_factory=list)  # by the parent's depth
    top_me_groups: int = 0  # ME groups of top-level features (organizational nodes)
    parents: int = 0  # nodes with at least one child
    leaves: int = 0  # tree nodes without children
    rescale_parents: int = 0  # parents that scale their children by their own activation
    mean_branching: float = math.nan  # children per parent
    max_branching: int = 0


def forest_summary(forest: Forest, num_features: int | None = None) -> ForestSummary:
    if forest is None:
        raise ConfigError("this model has no hierarchy")
    n = forest.num_features if num_features is None else num_features
    per_depth = [len(level) for level in forest.levels]
    depth = forest.depth
    me_groups = forest.me_groups()
    me_depth = [0] * len(per_depth)
    for p, _ in me_groups:
        if p >= 0:
            me_depth[int(depth[p])] += 1
    # tree of every node: walk each level, inheriting the parent's tree index
    tree = torch.full((forest.num_features,), -1, dtype=torch.long)
    if forest.roots:
        tree[torch.tensor(forest.roots)] = torch.arange(len(forest.roots))
    for f, par in forest.index.parent_levels:
        tree[f] = tree[par]
    in_tree = tree >= 0
    sizes = torch.bincount(tree[in_tree], minlength=len(forest.roots))
    kids = [len(c) for c in forest.children.values() if c]
    in_trees = int(in_tree.sum())
    return ForestSummary(
        roots=len(forest.roots), nodes_per_depth=per_depth, me_parents=len(me_groups),
        outside=n - in_trees, max_depth=forest.max_depth if per_depth else -1, tree_sizes=sizes,
        num_features=n, in_trees=in_trees, root_ids=list(forest.roots),
        me_parents_per_depth=me_depth, top_me_groups=sum(1 for p, _ in me_groups if p < 0),
        parents=len(kids), leaves=in_trees - len(kids),
        rescale_parents=len(forest.rescaling_parents),
        mean_branching=sum(kids) / len(kids) if kids else math.nan,
        max_branching=max(kids, default=0))


def tree_table(forest: Forest, root: int, rates: torch.Tensor | None = None) -> dict:
    """Node table of the tree (or subtree) under `root`, breadth-first with `root` first.

    Columns (lists of equal length): feature, parent (-1 for the root of the table), depth
    (absolute depth in the forest), me (the node's children are ME), children (count),
    rate (measured rate from `rates`, NaN without it).
    """
    if forest is None:
        raise ConfigError("this model has no hierarchy")
    root = int(root)
    if not 0 <= root < forest.num_features:
        raise ConfigError(f"root {root} out of range for {forest.num_features} features")
    if int(forest.depth[root]) < 0:
        raise ConfigError(f"feature {root} is not in any hierarchy tree")
    if forest.org is not None:
        return _org_tree_table(forest, root, rates)
    nodes, frontier = [], [root]
    while frontier:
        nodes.extend(frontier)
        frontier = [c for f in frontier for c in forest.children.get(f, [])]
    idx = torch.tensor(nodes, dtype=torch.long)
    par = forest.parent[idx].clone()
    par[0] = -1
    me = [f in forest.me and len(forest.children.get(f, [])) >= 2 for f in nodes]
    if rates is not None:
        r = torch.as_tensor(rates).detach().double().cpu()
        rate = r[idx].tolist()
    else:
        rate = [math.nan] * len(nodes)
    return {"feature": nodes, "parent": par.tolist(), "depth": forest.depth[idx].tolist(),
            "me": me, "children": [len(forest.children.get(f, [])) for f in nodes], "rate": rate}


def _node_index(forest: Forest) -> dict:
    """hierarchy.json's nodes with ids: features keep their index, organizational nodes get
    -2, -3, ... in file order (-1 stays "no parent"). Kept in the forest's index."""
    return forest.index.memo("node_index", lambda: _build_node_index(forest))


def _build_node_index(forest: Forest) -> dict:
    kids: dict[int, list[int]] = {}
    me: dict[int, bool] = {}
    label: dict[int, object] = {}
    count = 0
    stack = [(nd, None) for nd in reversed(forest.org.nodes)]
    while stack:
        nd, par = stack.pop()
        if nd["feature_index"] is None:
            count += 1
            nid = -1 - count
        else:
            nid = nd["feature_index"]
        kids[nid] = []
        if par is not None:
            kids[par].append(nid)
        feats = sum(k["feature_index"] is not None for k in nd["children"])
        me[nid] = nd["mutually_exclusive_children"] and feats >= 2
        label[nid] = nd["feature_id"]
        stack.extend((k, nid) for k in reversed(nd["children"]))
    return {"kids": kids, "me": me, "label": label}


def _org_tree_table(forest: Forest, root: int, rates) -> dict:
    """tree_table with organizational nodes as rows of their own (negative ids, rate NaN, depth
    that of the features below them); extra column `label` holds the node's id, if any."""
    ix = _node_index(forest)
    nodes, parents, frontier = [], [], [(root, -1)]
    while frontier:
        nodes += [n for n, _ in frontier]
        parents += [p for _, p in frontier]
        frontier = [(c, n) for n, _ in frontier for c in ix["kids"][n]]
    r = (torch.as_tensor(rates).detach().double().cpu() if rates is not None else None)
    depth: dict[int, int] = {}
    rate = []
    for n, p in zip(nodes, parents):
        if n >= 0:
            depth[n] = int(forest.depth[n])
            rate.append(float(r[n]) if r is not None else math.nan)
        else:
            depth[n] = depth[p] + 1
            rate.append(math.nan)
    return {"feature": nodes, "parent": parents, "depth": [depth[n] for n in nodes],
            "me": [ix["me"][n] for n in nodes], "children": [len(ix["kids"][n]) for n in nodes],
            "rate": rate, "label": [ix["label"][n] for n in nodes]}
