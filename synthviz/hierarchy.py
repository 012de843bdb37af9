"""The feature hierarchy: a forest stored as flat arrays, generated and serialized like sae_lens.

A `Forest` keeps, for every feature, its parent (-1 for roots and features outside any tree), its
depth, and for every parent its children in order (CSR layout), whether its children are mutually
exclusive (ME), and whether it rescales its children. Flat arrays make the level-by-level sampling
and the statistics vectorized; `to_dict`/`from_dict` speak `hierarchy.json`.

`hierarchy.json` may hold organizational nodes (no `feature_index`), as sae_lens allows. They are
flattened the way sae_lens's modifier sees them: a feature's parent is its nearest ancestor with a
feature, an ME node's features form one group (a group with no parent feature is always active),
and a feature is scaled when its direct parent node says so. Such a forest keeps its nodes for
writing back; consumers read `me_groups()`, `group_of` and `child_rescale_mask`.

`Forest.index` is the one `ForestIndex` (level order, ME group tables, vectorized compensation)
that sampling, the statistics and the L0 solver share.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from synthviz.config import HierarchyConfig
from synthviz.forest_index import ForestIndex, padded
from synthviz.hierarchy_nodes import MAX_HIERARCHY_NODES, parse_nodes, truncate_nodes

__all__ = ["MAX_HIERARCHY_NODES", "Forest", "OrgNodes", "generate_forest", "groups_above"]


@dataclass(eq=False)
class Forest:
    num_features: int
    roots: list[int]
    children: dict[int, list[int]]  # parent -> children in order (parents with no children may appear)
    me: set[int] = field(default_factory=set)  # parents whose children are mutually exclusive
    rescale: set[int] = field(default_factory=set)  # nodes with scale_children_by_parent
    feature_ids: dict[int, Any] = field(default_factory=dict)  # optional ids kept for round trips
    # set when hierarchy.json has organizational nodes (no feature_index): the nodes as written,
    # the ME groups and the children scaled by their parent (see `_flatten`)
    org: OrgNodes | None = None

    # ------------------------------------------------------------------ derived arrays
    @cached_property
    def parent(self) -> torch.Tensor:
        p = torch.full((self.num_features,), -1, dtype=torch.long)
        pairs = [(par, k) for par, kids in self.children.items() for k in kids]
        if pairs:  # one scatter (a tensor per parent costs ~10 us each, 8k parents at 16k)
            idx = torch.tensor(pairs, dtype=torch.long)
            p[idx[:, 1]] = idx[:, 0]
        return p

    @cached_property
    def depth(self) -> torch.Tensor:
        """Depth of each feature (roots 0); -1 for features outside every tree."""
        d = torch.full((self.num_features,), -1, dtype=torch.long)
        for level, nodes in enumerate(self.levels):
            d[torch.tensor(nodes, dtype=torch.long)] = level
        return d

    @cached_property
    def levels(self) -> list[list[int]]:
        out, frontier = [], list(self.roots)
        while frontier:
            out.append(frontier)
            frontier = [c for f in frontier for c in self.children.get(f, [])]
        return out

    @cached_property
    def csr(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(ptr [N+1], idx): children of f are idx[ptr[f]:ptr[f+1]], in stored order."""
        counts = torch.zeros(self.num_features, dtype=torch.long)
        parents = sorted(self.children)
        if parents:  # one scatter, not a tensor write per parent
            counts[torch.tensor(parents, dtype=torch.long)] = torch.tensor(
                [len(self.children[f]) for f in parents], dtype=torch.long)
        flat = [c for f in parents for c in self.children[f]]
        ptr = torch.zeros(self.num_features + 1, dtype=torch.long)
        ptr[1:] = counts.cumsum(0)
        return ptr, torch.tensor(flat, dtype=torch.long)

    def _mask(self, features: set[int]) -> torch.Tensor:
        m = torch.zeros(self.num_features, dtype=torch.bool)
        if features:
            m[torch.tensor(sorted(features), dtype=torch.long)] = True
        return m

    @cached_property
    def me_mask(self) -> torch.Tensor:
        return self._mask(self.me)

    @cached_property
    def rescale_mask(self) -> torch.Tensor:
        return self._mask(self.rescale)

    @cached_property
    def index(self) -> ForestIndex:
        """The derived tables sampling, statistics and the L0 solver share (built once)."""
        return ForestIndex(self)

    @cached_property
    def tree_root(self) -> torch.Tensor:
        """The root of each feature's tree [N] (-1 outside every tree)."""
        root = torch.full((self.num_features,), -1, dtype=torch.long)
        for depth, level in enumerate(self.levels):
            idx = torch.tensor(level, dtype=torch.long)
            root[idx] = idx if depth == 0 else root[self.parent[idx]]
        return root

    @cached_property
    def in_tree(self) -> torch.Tensor:
        return self.depth >= 0

    @property
    def num_nodes(self) -> int:
        return int(self.in_tree.sum())

    @property
    def max_depth(self) -> int:
        return len(self.levels) - 1

    def me_groups(self) -> list[tuple[int, list[int]]]:
        """(parent, members) of every mutually exclusive group; parent -1 for a group of
        top-level features (made by an organizational node, which is always active)."""
        if self.org is not None:
            return self.org.groups
        return [(p, self.children[p]) for p in sorted(self.me) if len(self.children.get(p, [])) >= 2]

    @cached_property
    def group_of(self) -> torch.Tensor:
        """ME group index of each feature (into `me_groups()`), -1 for none."""
        g = torch.full((self.num_features,), -1, dtype=torch.long)
        pairs = [(i, k) for i, (_, kids) in enumerate(self.me_groups()) for k in kids]
        if pairs:
            idx = torch.tensor(pairs, dtype=torch.long)
            g[idx[:, 1]] = idx[:, 0]
        return g

    @cached_property
    def group_parent(self) -> torch.Tensor:
        return torch.tensor([p for p, _ in self.me_groups()], dtype=torch.long)

    @cached_property
    def child_rescale_mask(self) -> torch.Tensor:
        """Features scaled by parent / mu_parent instead of gated by their parent."""
        if self.org is not None:
            return self._mask(self.org.rescaled)
        par = self.parent
        return (par >= 0) & self.rescale_mask[par.clamp(min=0)]

    @property
    def rescaling_parents(self) -> list[int]:
        """Features whose activation scales at least one child."""
        return sorted(set(self.parent[self.child_rescale_mask].tolist()))

    # ------------------------------------------------------------------ operations
    def truncate(self, n: int) -> Forest:
        """Keep features below n; a parent left with fewer than 2 children loses ME."""
        if self.org is not None:
            return _from_nodes(truncate_nodes(self.org.nodes, n), n)
        kept_children = {p: [c for c in kids if c < n] for p, kids in self.children.items() if p < n}
        roots = [r for r in self.roots if r < n]
        me = {p for p in self.me if p < n and len(kept_children.get(p, [])) >= 2}
        return Forest(num_features=n, roots=roots, children=kept_children, me=me,
                      rescale={p for p in self.rescale if p < n},
                      feature_ids={k: v for k, v in self.feature_ids.items() if k < n})

    def probability_correction(self, base_p: torch.Tensor) -> torch.Tensor:
        """Factors that make each feature's effective rate about its base p (sae_lens's rule).

        A child gets 1 / p_parent; an ME child also gets 1 + (sum of its siblings' p) / p_parent.
        The factors are float64 operations in sae_lens's order (an ME group's p summed left to
        right, as Python's `sum` does), so the result equals sae_lens's bit for bit.
        """
        if self.org is not None:
            return self._org_correction(base_p)
        kid, par, members, valid, group_par = self._correction_plan
        p = base_p.detach().to("cpu", torch.float64)
        pp = p[par]
        ok = pp > 0
        idx, val = kid[ok], 1.0 / pp[ok]
        gp = p[group_par]
        vals = torch.where(valid, p[members], 0.0)
        total = torch.zeros(len(group_par), dtype=torch.float64)
        for j in range(vals.shape[1]):  # left to right: x + 0.0 is x, so padding changes nothing
            total = total + vals[:, j]
        me_val = 1.0 + (total[:, None] - vals).clamp(min=0.0) / gp[:, None]
        use = valid & (gp > 0)[:, None]
        return _correction(base_p, idx, val, members[use], me_val[use])

    @cached_property
    def _correction_plan(self) -> tuple[torch.Tensor, ...]:
        """(children, their parents, ME members [G, K], valid [G, K], group parents) of the
        features in the trees (those below a parent outside them take no factor)."""
        inside = {f for level in self.levels for f in level}
        edges = [(p, kids) for p, kids in self.children.items() if kids and p in inside]
        kid = torch.tensor([c for _, kids in edges for c in kids], dtype=torch.long)
        par = torch.tensor([p for p, kids in edges for _ in kids], dtype=torch.long)
        groups = [(p, kids) for p, kids in edges if p in self.me and len(kids) >= 2]
        members, valid = padded([kids for _, kids in groups])
        return kid, par, members, valid, torch.tensor([p for p, _ in groups], dtype=torch.long)

    def _org_correction(self, base_p: torch.Tensor) -> torch.Tensor:
        """sae_lens's rule with organizational nodes: a node without a feature passes its
        parent's probability (1 at the top) to its children, and its ME group uses it too."""
        p_list = base_p.tolist()
        idx, val, me_idx, me_val = [], [], [], []
        for par, kids in self.children.items():
            pp = p_list[par]
            if pp > 0 and kids:
                idx += kids
                val += [1.0 / pp] * len(kids)
        for par, kids in self.me_groups():
            pp = p_list[par] if par >= 0 else 1.0
            if pp > 0 and len(kids) >= 2:
                total = sum(p_list[c] for c in kids)
                me_idx += kids
                me_val += [1.0 + max(0.0, total - p_list[c]) / pp for c in kids]
        return _correction(base_p, idx, val, me_idx, me_val)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Forest):
            return NotImplemented
        if (self.org is None) != (other.org is None):
            return False
        if self.org is not None:
            return self.num_features == other.num_features and self.org.nodes == other.org.nodes
        norm = lambda f: {p: k for p, k in f.children.items() if k}  # noqa: E731
        return (self.roots == other.roots and norm(self) == norm(other)
                and self.me == other.me and self.rescale == other.rescale
                and self.feature_ids == other.feature_ids)

    # ------------------------------------------------------------------ hierarchy.json
    def to_dict(self) -> dict[str, Any]:
        if self.org is not None:
            return {"roots": copy.deepcopy(self.org.nodes)}

        def node(f: int) -> dict[str, Any]:
            return {
                "feature_index": f,
                "mutually_exclusive_children": f in self.me,
                "scale_children_by_parent": f in self.rescale,
                "feature_id": self.feature_ids.get(f),
                "children": [node(c) for c in self.children.get(f, [])],
            }
        return {"roots": [node(r) for r in self.roots]}

    @classmethod
    def from_dict(cls, d: Any, num_features: int, where: str = "hierarchy.json") -> Forest:
        """Parse and validate as sae_lens reads it: nodes may lack feature_index (organizational
        nodes) and carry fields it ignores; indices must be in range and appear once."""
        return _from_nodes(parse_nodes(d, num_features, where), num_features)


def _correction(base_p: torch.Tensor, idx, val, me_idx, me_val) -> torch.Tensor:
    """Correction factors: float64 `val` at `idx` (every child has one parent, so no index
    repeats), then float64 ME factors multiplied in, as sae_lens applies them (lists or
    tensors)."""
    corr = torch.ones(base_p.shape[0], dtype=base_p.dtype)
    if len(idx):
        corr[torch.as_tensor(idx)] = torch.as_tensor(val, dtype=torch.float64).to(corr.dtype)
    if len(me_idx):
        corr[torch.as_tensor(me_idx)] *= torch.as_tensor(me_val, dtype=torch.float64).to(corr.dtype)
    return corr


@dataclass(eq=False)
class OrgNodes:
    nodes: list[dict[str, Any]]  # normalized hierarchy.json roots, as written back
    groups: list[tuple[int, list[int]]]
    rescaled: set[int]
    # top-level feature -> its path of organizational nodes (built by `groups_above`)
    paths: dict[Any, tuple] = field(default_factory=dict)


def _from_nodes(nodes: list[dict[str, Any]], num_features: int) -> Forest:
    """The feature-level forest of a node tree, as sae_lens's modifier sees it: a feature's
    parent is its nearest ancestor with a feature (none: top level); it is scaled when its
    direct parent node (feature or not) has scale_children_by_parent; an ME node's features
    among its children form one group, whose parent is that nearest feature (or none)."""
    roots: list[int] = []
    children: dict[int, list[int]] = {}
    me: set[int] = set()
    rescale: set[int] = set()
    ids: dict[int, Any] = {}
    groups: list[tuple[int, list[int]]] = []
    rescaled: set[int] = set()
    has_org = False
    stack = [(nd, -1, False) for nd in reversed(nodes)]
    while stack:
        nd, eff, scaled = stack.pop()
        f = nd["feature_index"]
        kids = nd["children"]
        if f is None:
            has_org = True
            below = eff
        else:
            below = f
            if eff < 0:
                roots.append(f)
            else:
                children.setdefault(eff, []).append(f)
                if scaled:
                    rescaled.add(f)
            if kids:
                children.setdefault(f, [])
            if nd["mutually_exclusive_children"]:
                me.add(f)
            if nd["scale_children_by_parent"]:
                rescale.add(f)
            if nd["feature_id"] is not None:
                ids[f] = nd["feature_id"]
        feats = [k["feature_index"] for k in kids if k["feature_index"] is not None]
        if nd["mutually_exclusive_children"] and len(feats) >= 2:
            groups.append((below, feats))
        # pushed reversed so nodes are visited, and children stored, in order
        stack.extend((k, below, nd["scale_children_by_parent"]) for k in reversed(kids))
    org = OrgNodes(nodes, groups, rescaled) if has_org else None
    return Forest(num_features=num_features, roots=roots, children=children, me=me,
                  rescale=rescale, feature_ids=ids, org=org)


def groups_above(forest: Forest | None, feature: int,
                 rates: torch.Tensor | None = None) -> list[dict[str, Any]]:
    """The organizational nodes above a top-level feature, outermost first (empty when it has
    none). Each: `label` (its id), `me` (its feature children form an ME group, as sae_lens
    counts them: at least 2), `features` (its feature children, in order), `positions` (theirs
    among all its children), `rates` (theirs, from `rates`, NaN without), `child` (the position
    among its children of the next node down toward `feature`). For the tree view: such nodes
    can make roots mutually exclusive, which a table starting at the root cannot show."""
    if forest is None or forest.org is None:
        return []
    cache = forest.org.paths
    if not cache:  # every top-level feature's path of organizational nodes, one walk
        stack = [(nd, ()) for nd in reversed(forest.org.nodes)]
        while stack:
            nd, path = stack.pop()
            if nd["feature_index"] is not None:
                if path:
                    cache[nd["feature_index"]] = path
                continue  # organizational nodes below a feature are the tree table's rows
            kids = nd["children"]
            stack.extend((k, path + ((nd, i),)) for i, k in reversed(list(enumerate(kids))))
        cache[None] = ()  # marks the cache as built
    r = None if rates is None else torch.as_tensor(rates).detach().double().cpu()
    out = []
    for nd, i in cache.get(int(feature), ()):
        feats = [k["feature_index"] for k in nd["children"] if k["feature_index"] is not None]
        out.append({"label": nd["feature_id"], "child": i, "features": feats,
                    "me": bool(nd["mutually_exclusive_children"]) and len(feats) >= 2,
                    "positions": [j for j, k in enumerate(nd["children"])
                                  if k["feature_index"] is not None],
                    "rates": [float(r[f]) if r is not None else float("nan") for f in feats]})
    return out


def generate_forest(num_features: int, cfg: HierarchyConfig, seed: int | None) -> Forest:
    """Breadth-first generation with the same random stream as sae_lens (Python `random`)."""
    rng = random.Random(seed)
    lo, hi = cfg.branching_range
    roots = list(range(min(cfg.total_root_nodes, num_features)))
    next_idx = len(roots)
    parents: list[tuple[int, int]] = [(r, 0) for r in roots]  # every parent-type node, in order
    children: dict[int, list[int]] = {r: [] for r in roots}
    frontier = list(parents)
    while frontier:
        nxt: list[tuple[int, int]] = []
        for node, depth in frontier:
            if depth >= cfg.max_depth:
                continue
            # a fixed int consumes no randomness; a [min, max] pair draws even when min == max
            k = lo if isinstance(cfg.branching_factor, int) else rng.randint(lo, hi)
            kids: list[int] = []
            for _ in range(k):
                if next_idx >= num_features:
                    break
                c = next_idx
                next_idx += 1
                if depth + 1 < cfg.max_depth:
                    nxt.append((c, depth + 1))
                    parents.append((c, depth + 1))
                    children[c] = []
                kids.append(c)
            children[node] = kids
        frontier = nxt
    hi_depth = cfg.mutually_exclusive_max_depth
    eligible = [n for n, d in parents
                if d >= cfg.mutually_exclusive_min_depth and (hi_depth is None or d <= hi_depth)
                and len(children[n]) >= 2]
    n_me = int(len(eligible) * cfg.mutually_exclusive_portion)
    me = {eligible[i] for i in rng.sample(range(len(eligible)), n_me)} if n_me > 0 else set()
    rescale = {n for n, _ in parents} if cfg.scale_children_by_parent else set()
    return Forest(num_features=num_features, roots=roots, children=children, me=me, rescale=rescale)
