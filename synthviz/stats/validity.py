"""Hierarchy validity counters measured on samples: ME violations and orphan children.

Both must be zero for any model synthviz builds: an ME parent keeps at most one active child, and
a child is never active while its parent is inactive.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from synthviz.hierarchy import Forest


def validity_counts(forest: Forest | None, rows: torch.Tensor, cols: torch.Tensor, n: int
                    ) -> tuple[int, int]:
    """(me_violations, orphan_children) for one batch of active entries.

    me_violations: (sample, ME group) pairs with more than one active member.
    orphan_children: (sample, child) pairs active while the parent is inactive.
    """
    if forest is None or rows.numel() == 0:
        return 0, 0
    dev = rows.device
    parent = forest.parent.to(dev)[cols]
    has_parent = parent >= 0
    keys = torch.sort(rows * n + cols).values
    r, par = rows[has_parent], parent[has_parent]
    want = r * n + par
    pos = torch.searchsorted(keys, want).clamp(max=keys.numel() - 1)
    orphans = int((keys[pos] != want).sum())
    # ME groups by index, so groups of top-level features (organizational parents) count too
    g = forest.group_of.to(dev)[cols]
    ing = g >= 0
    groups = rows[ing] * max(1, len(forest.me_groups())) + g[ing]
    if groups.numel() == 0:
        return 0, orphans
    _, counts = torch.unique(groups, return_counts=True)
    return int((counts > 1).sum()), orphans


@dataclass
class ValidityStats:
    me_violations: int
    orphan_children: int
    samples: int


class ValidityAccumulator:
    """Streams `validity_counts` over batches (bind or pass the forest and feature count)."""

    def __init__(self, forest: Forest | None = None, num_features: int | None = None):
        self.forest, self.n = forest, num_features
        self.me_violations = self.orphan_children = self.samples = 0

    def bind(self, model) -> None:
        self.forest, self.n = model.forest, model.num_features

    def update(self, rows, cols, values, batch_size: int) -> None:
        n = self.n if self.n is not None else (int(cols.max()) + 1 if cols.numel() else 1)
        a, b = validity_counts(self.forest, rows, cols, n)
        self.me_violations += a
        self.orphan_children += b
        self.samples += batch_size

    def result(self) -> ValidityStats:
        return ValidityStats(self.me_violations, self.orphan_children, self.samples)
