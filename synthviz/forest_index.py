"""One index of a forest's structure, shared by the samplers, the statistics and the L0 solver.

A `ForestIndex` is built once per forest (`Forest.index`) from the forest's flat arrays. It holds:

- the ME groups (`Forest.me_groups()`) in the order the dense sampler resolves them (by their
  parent's position in level order, groups of top-level features first), as padded tables
  `(parents [G], members [G, K], valid [G, K])` per depth of their parent (`me_levels`);
- the tree's features in level order (`nodes`), each depth a contiguous slice (`slices`), with
  parents in those positions (`local_parent`), and the ME groups in buckets of similar size in
  those positions (`rate_buckets`), for the rate recursion of `synthviz.rate_maths`;
- the vectorized compensation rule (`compensate`);
- a memo for tables its users derive from it (`memo`), e.g. the sampler's per-device tensors.

It reads the forest only through its public attributes, so this module imports nothing above torch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

import torch

# ME group sizes that share one padded table in the rate recursion (padding and quadrature stay small)
_BUCKET_BOUNDS = (2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)


def padded(groups: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(members [G, K], valid [G, K]): groups of up to K members, padded with 0 (valid False)."""
    lens = torch.tensor([len(g) for g in groups], dtype=torch.long)
    k = int(lens.max()) if len(groups) else 0
    # one flat tensor and a scatter: a tensor per group costs ~10 us each (8k groups at 16k)
    valid = torch.arange(k).unsqueeze(0) < lens.unsqueeze(1)
    sib = torch.zeros(len(groups), k, dtype=torch.long)
    sib[valid] = torch.tensor([m for g in groups for m in g], dtype=torch.long)
    return sib, valid


class ForestIndex:
    """Derived tables of one forest; see the module docstring."""

    def __init__(self, forest: Any):
        self.forest = forest
        self._memo: dict = {}

    def memo(self, key: Any, make: Callable[[], Any]) -> Any:
        """`make()`, computed once per key for this forest (the forest never changes)."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    # ------------------------------------------------------------------ the ME groups
    @cached_property
    def groups(self) -> list[tuple[int, list[int]]]:
        """(parent, members) of every ME group (parent -1: top-level features), ordered by the
        parent's position in level order, top-level groups first (a stable sort)."""
        f = self.forest
        pos = {q: i for i, q in enumerate(self.nodes.tolist())}
        return sorted(f.me_groups(), key=lambda g: pos[g[0]] if g[0] >= 0 else -1)

    @cached_property
    def me_levels(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None]:
        """Per depth of the forest: (parents, members, valid) of the groups whose parent is at
        that depth (top-level groups at depth 0), or None."""
        f = self.forest
        depth_of = f.depth.tolist()  # read per group: a Python list, not a tensor index each
        by_depth: dict[int, list[tuple[int, list[int]]]] = {}
        for q, kids in self.groups:
            by_depth.setdefault(depth_of[q] if q >= 0 else 0, []).append((q, kids))
        out = []
        for depth in range(len(f.levels)):
            gs = by_depth.get(depth)
            if gs:
                sib, valid = padded([kids for _, kids in gs])
                out.append((torch.tensor([q for q, _ in gs], dtype=torch.long), sib, valid))
            else:
                out.append(None)
        return out

    @cached_property
    def parent_levels(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per depth >= 1: (features, their parents)."""
        out = []
        for nodes in self.forest.levels[1:]:
            feats = torch.tensor(nodes, dtype=torch.long)
            out.append((feats, self.forest.parent[feats]))
        return out

    @cached_property
    def top(self) -> torch.Tensor:
        """Features with no parent feature (roots and features outside every tree)."""
        return (self.forest.parent < 0).nonzero().squeeze(1)

    # ------------------------------------------------------------------ level order
    @cached_property
    def nodes(self) -> torch.Tensor:
        """The tree's features in level order."""
        return torch.tensor([f for level in self.forest.levels for f in level], dtype=torch.long)

    @cached_property
    def local(self) -> torch.Tensor:
        """Position of each feature in `nodes` (-1 outside every tree)."""
        loc = torch.full((self.forest.num_features,), -1, dtype=torch.long)
        loc[self.nodes] = torch.arange(self.nodes.numel())
        return loc

    @cached_property
    def slices(self) -> list[tuple[int, int]]:
        """[start, end) of each depth in `nodes`."""
        out, start = [], 0
        for level in self.forest.levels:
            out.append((start, start + len(level)))
            start += len(level)
        return out

    @cached_property
    def local_parent(self) -> torch.Tensor:
        """Position of each node's parent in `nodes` (roots: 0, unused)."""
        return self.local[self.forest.parent[self.nodes].clamp(min=0)]

    @cached_property
    def rate_buckets(self) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """ME groups in buckets of similar size: (members [G, K], valid, members[valid]), all as
        positions in `nodes`."""
        groups = [[int(self.local[c]) for c in kids] for _, kids in self.forest.me_groups()]
        out, lo = [], 0
        for hi in _BUCKET_BOUNDS + (max((len(g) for g in groups), default=0),):
            members = [g for g in groups if lo < len(g) <= hi]
            lo = max(lo, hi)
            if members:
                sib, valid = padded(members)
                out.append((sib, valid, sib[valid]))
        return out

    @cached_property
    def me_work(self) -> int:
        """Padded members times quadrature nodes over all buckets (sizes the rate recursion)."""
        return sum(int(b[0].numel()) * ((b[0].shape[1] + 1) // 2) for b in self.rate_buckets)

    # ------------------------------------------------------------------ compensation
    def compensate(self, base_p: torch.Tensor) -> torch.Tensor:
        """sae_lens's compensation rule, vectorized (same maths as
        `Forest.probability_correction`, not bit for bit); not clamped."""
        f = self.forest
        parent, group = f.parent, f.group_of
        has = parent >= 0
        corr = torch.ones_like(base_p)
        pp = torch.ones_like(base_p)
        pp[has] = base_p[parent[has]]
        ok = has & (pp > 0)
        corr[ok] = 1.0 / pp[ok]
        me = group >= 0
        if me.any():
            g = group[me]
            gp = f.group_parent[g]
            # an organizational group at the top level sees probability 1
            node_p = torch.where(gp >= 0, base_p[gp.clamp(min=0)], torch.ones_like(base_p[me]))
            sums = torch.zeros(len(f.group_parent), dtype=base_p.dtype).index_add_(
                0, g, base_p[me])
            others = (sums[g] - base_p[me]).clamp(min=0)
            corr[me] = torch.where(node_p > 0, corr[me] * (1.0 + others / node_p.clamp(
                min=1e-300)), corr[me])
        return base_p * corr
